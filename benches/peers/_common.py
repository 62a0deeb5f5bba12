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
