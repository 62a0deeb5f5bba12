"""Shared helpers for the Python benchmark peers: which sequences, and how to report."""
import csv
import glob
import json
import os
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def data_root(arg=None) -> Path:
    for cand in (arg, os.environ.get("PROTFAM_DATA"), REPO.parent / "shared/data/pfam35-uniprot20k", REPO / "data/pfam35-uniprot20k"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("pfam35-uniprot20k not found: pass --data or set PROTFAM_DATA")


def load_sequences(root: Path, n: int, split: str = "clustered_split", part: str = "test"):
    """The first `n` domains of `<root>/<split>/<part>` in shard order (the same ones the Rust bench takes)."""
    seqs = []
    for shard in sorted(glob.glob(str(root / split / part / "data-*"))):
        with open(shard, newline="") as f:
            for row in csv.DictReader(f):
                seqs.append(row["sequence"])
                if len(seqs) == n:
                    return seqs
    return seqs


def report(peer: str, seqs, seconds: float, **extra):
    residues = sum(len(s) for s in seqs)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peer": peer, "sequences": len(seqs), "residues": residues, "seconds": round(seconds, 4),
           "residues_per_s": residues / seconds, "peak_rss_mb": peak_kb / 1024.0}
    out.update(extra)
    print(json.dumps(out))


def length_sorted_batches(seqs, toks_per_batch, extra_tokens):
    """fair-esm's get_batch_indices: sort by length, fill each batch up to toks_per_batch padded
    tokens (a sequence takes its residues plus `extra_tokens` special tokens)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out, buf, max_len = [], [], 0
    for i in order:
        size = len(seqs[i]) + extra_tokens
        if buf and max(size, max_len) * (len(buf) + 1) > toks_per_batch:
            out.append(buf)
            buf, max_len = [], 0
        max_len = max(max_len, size)
        buf.append(i)
    if buf:
        out.append(buf)
    return out


def embed_timed(model, seqs, batches, encode, offset, bf16):
    """Runs a transformers encoder on every batch (`encode(batch)` gives input ids and attention
    mask) in inference mode, under `torch.autocast("cpu", dtype=torch.bfloat16)` with `bf16`,
    after one warm-up batch; each sequence's pooled vector is the mean of its last hidden state
    over its residues, which start at position `offset`. Returns (pooled vectors in input order,
    seconds)."""
    import contextlib
    import time

    import torch

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        ids, mask = encode([0])
        model(input_ids=ids, attention_mask=mask)  # warm-up
        start = time.perf_counter()
        pooled = [None] * len(seqs)
        for batch in batches:
            ids, mask = encode(batch)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            for row, i in enumerate(batch):
                pooled[i] = hidden[row, offset : offset + len(seqs[i])].float().mean(0)
        seconds = time.perf_counter() - start
    return pooled, seconds


def save_pooled(pooled, path):
    """Pooled vectors as raw little-endian f32, one row per sequence."""
    import torch

    torch.stack(pooled).to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def torch_peer_arguments(n_default):
    """The command line the PyTorch peers share: which domains, batching, threads, seed, and
    where the model and the pooled vectors go."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=n_default)
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="clustered_split")
    ap.add_argument("--toks-per-batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-model", default=None)
    ap.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16)")
    ap.add_argument("--save-pooled", default=None)
    return ap
