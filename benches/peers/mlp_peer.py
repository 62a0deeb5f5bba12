#!/usr/bin/env python3
"""scikit-learn peer of protfam's MLP bench.

Usage: mlp_peer.py DIR EPOCHS BATCH HIDDEN ACTIVATION SEEDS
DIR holds train_x.npy (f32), train_y.npy (i64), test_x.npy, test_y.npy. Trains
MLPClassifier with the same architecture, solver (Adam, lr 1e-3, alpha 1e-4,
betas 0.9/0.999, eps 1e-8), batch size and number of epochs as protfam (no early
stopping), one `partial_fit` pass per epoch so that each epoch is timed on its
own (the RNG is a RandomState instance, so every pass reshuffles as `fit` does),
once for each seed 0..SEEDS, and prints one JSON line: per seed, the seconds of
every epoch and the test error.
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
    seeds = int(sys.argv[6])
    hidden = tuple(int(h) for h in hidden.split(","))
    train_x = np.load(os.path.join(d, "train_x.npy"))
    train_y = np.load(os.path.join(d, "train_y.npy"))
    test_x = np.load(os.path.join(d, "test_x.npy"))
    test_y = np.load(os.path.join(d, "test_y.npy"))
    classes = np.unique(train_y)
    runs = []
    for seed in range(seeds):
        clf = MLPClassifier(hidden_layer_sizes=hidden, activation=activation, solver="adam", alpha=1e-4,
                            batch_size=batch, learning_rate_init=1e-3, shuffle=True,
                            random_state=np.random.RandomState(seed), early_stopping=False)
        epoch_seconds = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(epochs):
                t0 = time.perf_counter()
                clf.partial_fit(train_x, train_y, classes=classes)
                epoch_seconds.append(time.perf_counter() - t0)
        error = float(np.mean(clf.predict(test_x) != test_y))
        runs.append({"seed": seed, "epoch_seconds": epoch_seconds, "test_error": error,
                     "coef_dtype": str(clf.coefs_[0].dtype)})
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
