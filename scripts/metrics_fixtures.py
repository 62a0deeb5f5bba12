#!/usr/bin/env python3
"""Expected classification metrics from scikit-learn, for tests/classify_metrics.rs.

Writes tests/data/metrics/<case>.json, each with the true labels, the predicted
labels (null = no prediction: no hit / abstained) and scikit-learn's error rate
and weighted precision / recall / F1 (zero_division=0). A missing prediction is
passed to scikit-learn as a label that never occurs in the truth, which is how
protfam's metrics define it (an error, and a prediction of no real class).

Run from the repository root:  python3 scripts/metrics_fixtures.py
"""
import json
import os
import random

import sklearn
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "metrics")
NONE = "<no prediction>"


def case(name, truth, predicted, note):
    pred_sk = [NONE if p is None else p for p in predicted]
    p, r, f, _ = precision_recall_fscore_support(truth, pred_sk, average="weighted", zero_division=0)
    acc = accuracy_score(truth, pred_sk)
    errors = sum(1 for t, q in zip(truth, predicted) if q != t)
    doc = {
        "name": name,
        "note": note,
        "sklearn_version": sklearn.__version__,
        "truth": truth,
        "predicted": predicted,
        "expected": {
            "n": len(truth),
            "errors": errors,
            "error_rate": 1.0 - acc,
            "precision": p,
            "recall": r,
            "f1": f,
        },
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    case("small", ["a", "a", "b", "c", "c", "c"], ["a", "b", "b", "c", "a", "c"], "plain multi-class")
    case("absent_predictions", ["a", "a", "b", "c"], ["a", None, "b", None], "no hit counts as an error")
    case(
        "predicted_only_classes",
        ["PF1", "PF1", "PF2", "PF3"],
        ["PF9", "PF1", "PF8", "PF3"],
        "classes that are predicted but never true lower precision only",
    )
    case("all_wrong", ["x", "y", "z"], ["y", "z", "x"], "zero_division=0 everywhere")
    case("all_right", ["x", "y", "y"], ["x", "y", "y"], "perfect")
    rng = random.Random(1234)
    families = [f"PF{i:05d}" for i in range(60)]
    weights = [1.0 / (i + 1) for i in range(60)]  # uneven family sizes, as in Pfam
    truth = rng.choices(families, weights=weights, k=700)
    predicted = []
    for t in truth:
        u = rng.random()
        if u < 0.6:
            predicted.append(t)
        elif u < 0.9:
            predicted.append(rng.choice(families + ["PF99998", "PF99999"]))
        else:
            predicted.append(None)
    case("random_uneven", truth, predicted, "700 items, 60 families with Zipf sizes, 10% no prediction")


if __name__ == "__main__":
    main()
