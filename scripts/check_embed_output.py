#!/usr/bin/env python3
"""Reads what `protfam embed --output` and the embedding cache write, with the
plain `safetensors` + numpy packages, to show (and check) that the formats are
usable without protfam.

Usage:
  python3 scripts/check_embed_output.py out.safetensors            # --output file
  python3 scripts/check_embed_output.py --cache data/cache [--fasta in.fa]

For an --output file: prints N x D and the first ids, checks one id per row.
For a cache: for every model directory, loads the shards listed in index.json,
verifies the per-tensor SHA-256 checksums, and (with --fasta) looks up each
sequence of the FASTA file by its SHA-256 and reports how many are cached.
"""
import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def check_output(path):
    with safe_open(path, "np") as f:
        meta = f.metadata()
        x = f.get_tensor("embeddings")
    ids = json.loads(meta["ids"])
    assert x.dtype == np.float32 and x.ndim == 2, (x.dtype, x.shape)
    assert len(ids) == x.shape[0], (len(ids), x.shape)
    print(f"{path}: {x.shape[0]} x {x.shape[1]} float32, model {meta.get('model')}, ids {ids[:3]}...")


def fasta_sequences(path):
    seqs, cur = [], []
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        elif line:
            cur.append(line.rstrip("*"))
    if cur:
        seqs.append("".join(cur))
    return seqs


def check_cache(root, fasta):
    root = pathlib.Path(root)
    for model_dir in sorted(p for p in root.iterdir() if (p / "index.json").is_file()):
        index = json.loads((model_dir / "index.json").read_text())
        vectors = {}
        for shard in index["shards"]:
            t = load_file(model_dir / shard["file"])
            for name in ("embeddings", "sequence_sha256"):
                digest = hashlib.sha256(t[name].tobytes()).hexdigest()
                assert digest == shard["sha256"][name], f"{shard['file']}: {name} checksum mismatch"
            for h, v in zip(t["sequence_sha256"], t["embeddings"]):
                vectors.setdefault(bytes(h), v)
        line = f"{model_dir.name}: {len(vectors)} vectors of dim {index['dim']} in {len(index['shards'])} shards"
        if fasta:
            seqs = fasta_sequences(fasta)
            hits = sum(hashlib.sha256(s.upper().encode()).digest() in vectors for s in seqs)
            line += f"; {hits}/{len(seqs)} sequences of {fasta} cached"
        print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("output", nargs="?")
    ap.add_argument("--cache")
    ap.add_argument("--fasta")
    args = ap.parse_args()
    if args.output:
        check_output(args.output)
    if args.cache:
        check_cache(args.cache, args.fasta)
    if not args.output and not args.cache:
        sys.exit("give an --output file or --cache DIR")


if __name__ == "__main__":
    main()
