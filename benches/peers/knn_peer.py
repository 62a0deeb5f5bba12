#!/usr/bin/env python3
"""scikit-learn peer of protfam's 1-NN bench.

Usage: knn_peer.py DIR [REPEATS]
DIR holds train_x.npy (f32, n x d), train_y.npy (i64), test_x.npy (f32). Fits
KNeighborsClassifier(n_neighbors=1, algorithm="brute"), times predict (best of
REPEATS), writes DIR/sklearn_pred.npy (predicted class of every test row) and
DIR/sklearn_neighbour.npy (index of the nearest training row), and prints one
JSON line with the timings.
"""
import json
import os
import sys
import time

import numpy as np
import sklearn
from sklearn.neighbors import KNeighborsClassifier


def main():
    d = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    train_x = np.load(os.path.join(d, "train_x.npy"))
    train_y = np.load(os.path.join(d, "train_y.npy"))
    test_x = np.load(os.path.join(d, "test_x.npy"))
    t0 = time.perf_counter()
    clf = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train_x, train_y)
    fit_s = time.perf_counter() - t0
    best = float("inf")
    pred = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred = clf.predict(test_x)
        best = min(best, time.perf_counter() - t0)
    neighbour = clf.kneighbors(test_x, n_neighbors=1, return_distance=False)[:, 0]
    np.save(os.path.join(d, "sklearn_pred.npy"), pred.astype(np.int64))
    np.save(os.path.join(d, "sklearn_neighbour.npy"), neighbour.astype(np.int64))
    print(json.dumps({"sklearn": sklearn.__version__, "fit_seconds": fit_s, "predict_seconds": best,
                      "train_dtype": str(train_x.dtype), "threads": os.environ.get("OMP_NUM_THREADS", "")}))


if __name__ == "__main__":
    main()
