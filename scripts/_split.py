"""Shared by the scripts that read the bundled Pfam split: where it is, and its CSV shards."""
import csv
import glob
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_root(arg=None):
    """`arg`, else $PROTFAM_DATA, else the bundled data next to the checkout."""
    for cand in (arg, os.environ.get("PROTFAM_DATA"), REPO.parent / "shared/data/pfam35-uniprot20k", REPO / "data/pfam35-uniprot20k"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("dataset not found: pass --data or set PROTFAM_DATA")


def read_rows(root, split, part):
    """Header and rows of every CSV shard of `<root>/<split>/<part>`, in shard order."""
    header, rows = None, []
    for shard in sorted(glob.glob(str(Path(root) / split / part / "data-*"))):
        with open(shard, newline="") as f:
            r = csv.reader(f)
            header = next(r)
            rows.extend(r)
    return header, rows
