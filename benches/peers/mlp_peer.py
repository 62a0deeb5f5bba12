#!/usr/bin/env python3
"""scikit-learn peer of protfam's MLP bench.

Usage: mlp_peer.py DIR EPOCHS BATCH HIDDEN ACTIVATION
DIR holds train_x.npy (f32), train_y.npy (i64), test_x.npy, test_y.npy. Trains
MLPClassifier with the same architecture, solver (Adam, lr 1e-3, alpha 1e-4,
betas 0.9/0.999, eps 1e-8), batch size and number of epochs as protfam (no early
stopping, tol disabled so exactly EPOCHS epochs run) and prints one JSON line:
seconds per epoch and test error.
"""
import json
import sys
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier


def main():
    d, epochs, batch, hidden, activation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    hidden = tuple(int(h) for h in hidden.split(","))
    train_x = np.load(os.path.join(d, "train_x.npy"))
    train_y = np.load(os.path.join(d, "train_y.npy"))
    test_x = np.load(os.path.join(d, "test_x.npy"))
    test_y = np.load(os.path.join(d, "test_y.npy"))
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation=activation, solver="adam", alpha=1e-4,
                        batch_size=batch, learning_rate_init=1e-3, max_iter=epochs, shuffle=True,
                        random_state=0, tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(train_x, train_y)
        seconds = time.perf_counter() - t0
    error = float(np.mean(clf.predict(test_x) != test_y))
    print(json.dumps({"epochs": int(clf.n_iter_), "seconds_per_epoch": seconds / clf.n_iter_, "test_error": error,
                      "coef_dtype": str(clf.coefs_[0].dtype)}))


if __name__ == "__main__":
    main()
