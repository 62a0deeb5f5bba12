#!/usr/bin/env python3
"""Does `annotate`'s dev-calibrated abstention hold on test, with a real embedder?

Protocol (the same as tests/annotate_cli.rs, at full size): every 5th family of
the test part (by accession) is removed from train and dev of a copy of the
split; a classifier is trained on that copy with `protfam train` (which
calibrates its threshold on the copy's dev part for --min-precision); then
every test domain is annotated as a user's FASTA. Printed:

- the dev-calibrated precision and coverage (from the classifier's calibration);
- on test, for families the classifier knows: precision and coverage of the
  confident answers;
- on test, for the removed families: the share flagged `no confident family`.

The embedding cache is content-addressed by sequence, so the copy reuses every
vector `make embed` computed. Usage:

    python3 scripts/calibration_check.py --model unirep1900 [--classifier knn]
        [--min-precision 0.95] [--data ROOT] [--split clustered_split]
        [--protfam target/release/protfam] [--work data/calibration-check]
"""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _split import REPO, data_root, read_rows  # noqa: E402


def write_rows(dst, split, part, header, rows):
    d = dst / split / part
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "data-00000-of-00001", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="unirep1900")
    ap.add_argument("--classifier", default="knn")
    ap.add_argument("--min-precision", type=float, default=0.95)
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="clustered_split")
    ap.add_argument("--protfam", default=str(REPO / "target/release/protfam"))
    ap.add_argument("--cache", default=str(REPO / "data/cache"))
    ap.add_argument("--work", default=str(REPO / "data/calibration-check"))
    args = ap.parse_args()
    root, work = data_root(args.data), Path(args.work)
    header, test = read_rows(root, args.split, "test")
    acc = header.index("family_accession")
    families = sorted({r[acc] for r in test})
    removed = set(families[::5])
    copy = work / "data"
    for part in ("train", "dev"):
        h, rows = read_rows(root, args.split, part)
        write_rows(copy, args.split, part, h, [r for r in rows if r[acc] not in removed])
    write_rows(copy, args.split, "test", header, test)

    clf = work / f"{args.model}-{args.classifier}"
    subprocess.run([args.protfam, "train", "--data", str(copy), "--split", args.split, "--model", args.model,
                    "--classifier", args.classifier, "--cache", args.cache, "--output", str(clf),
                    "--min-precision", str(args.min_precision)], check=True)
    fasta = work / "test.fasta"
    name, seq = header.index("sequence_name"), header.index("sequence")
    fasta.write_text("".join(f">{r[name]}\n{r[seq]}\n" for r in test))
    out = work / "test.tsv"
    subprocess.run([args.protfam, "annotate", "--classifier", str(clf), "--cache", args.cache, str(fasta),
                    "-o", str(out)], check=True)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == len(test), "one row per input"
    # annotate prints accessions without the Pfam version (PF01391, not PF01391.21)
    truth = {r[name]: r[acc].split(".")[0] for r in test}
    removed = {a.split(".")[0] for a in removed}
    known = [r for r in rows if truth[r["id"]] not in removed]
    unknown = [r for r in rows if truth[r["id"]] in removed]
    confident = [r for r in known if r["confident"] == "yes"]
    correct = sum(r["family_accession"] == truth[r["id"]] for r in confident)
    cal = json.load(open(clf / "calibration.json"))
    report = {
        "model": args.model, "classifier": args.classifier, "target_precision": args.min_precision,
        "calibration": f"{cal['statistic']} threshold {cal['threshold']}",
        "dev_precision": cal["dev_precision"], "dev_coverage": cal["dev_coverage"],
        "test_known_families": len(known),
        "test_precision": correct / len(confident) if confident else None,
        "test_coverage": len(confident) / len(known) if known else None,
        "test_removed_families": len(unknown),
        "removed_flagged_no_confident_family": sum(r["confident"] != "yes" for r in unknown) / max(1, len(unknown)),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
