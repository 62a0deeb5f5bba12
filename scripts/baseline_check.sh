#!/usr/bin/env bash
# Independent check of `protfam baseline hmm|blast`: the same recipe run with the
# raw HMMER / BLAST+ tools and a few lines of Python, sharing no code with protfam.
#
#   scripts/baseline_check.sh <data_root> <split> [work_dir] [threads]
#
# Prints one line per baseline: `<kind> n=<n> errors=<e> error_rate=<r>`.
# Recipe (see src/baseline/mod.rs for why):
#   HMM:   per family, the training aligned_sequence rows as aligned FASTA
#          (protfam writes Stockholm); hmmbuild --amino (default --fast,
#          symfrac 0.5); hmmpress; hmmscan -E 1000 --domE 1000 --tblout (protfam
#          runs hmmsearch: same bit scores); predict the family with the highest
#          full-sequence bit score (ties: lower E-value, then smaller accession).
#   BLAST: makeblastdb -dbtype prot on the training sequences; blastp -outfmt 6
#          -max_target_seqs 50 (default E-value 10); predict the family of the
#          highest bit score (ties: lower E-value, then BLAST's output order).
# A test sequence without any hit counts as an error.
set -euo pipefail
root=${1:?usage: baseline_check.sh <data_root> <split> [work_dir] [threads]}
split=${2:?usage: baseline_check.sh <data_root> <split> [work_dir] [threads]}
work=${3:-$(mktemp -d)}
threads=${4:-$(nproc)}
for tool in hmmbuild hmmpress hmmscan makeblastdb blastp python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install hmmer ncbi-blast+ python3)" >&2; exit 2; }
done
mkdir -p "$work/afa" "$work/hmm"

python3 - "$root" "$split" "$work" <<'PY'
import csv, glob, os, sys
root, split, work = sys.argv[1:4]
def rows(part):
    for path in sorted(glob.glob(os.path.join(root, split, part, "data-*"))):
        with open(path, newline="") as f:
            yield from csv.DictReader(f)
fams = {}
with open(os.path.join(work, "train.fasta"), "w") as db, open(os.path.join(work, "train_labels.tsv"), "w") as lab:
    for i, r in enumerate(rows("train")):
        acc = r["family_accession"].split(".")[0]
        fams.setdefault(acc, []).append(r)
        db.write(f">t{i}\n{r['sequence']}\n")
        lab.write(f"t{i}\t{acc}\n")
for acc, members in fams.items():
    with open(os.path.join(work, "afa", acc + ".afa"), "w") as out:
        for j, r in enumerate(members):
            out.write(f">s{j}\n{r['aligned_sequence'].replace('.', '-')}\n")
with open(os.path.join(work, "test.fasta"), "w") as q, open(os.path.join(work, "test_labels.tsv"), "w") as lab:
    for i, r in enumerate(rows("test")):
        q.write(f">q{i}\n{r['sequence']}\n")
        lab.write(f"q{i}\t{r['family_accession'].split('.')[0]}\n")
PY

# --- HMM ---------------------------------------------------------------
ls "$work/afa" | sed 's/\.afa$//' | xargs -P "$threads" -I{} \
  hmmbuild --amino --informat afa -n {} -o /dev/null "$work/hmm/{}.hmm" "$work/afa/{}.afa"
cat "$work"/hmm/*.hmm > "$work/all.hmm"
hmmpress -f "$work/all.hmm" >/dev/null
hmmscan --cpu "$threads" -E 1000 --domE 1000 --noali -o /dev/null --tblout "$work/hmm.tbl" \
  "$work/all.hmm" "$work/test.fasta"

# --- BLAST -------------------------------------------------------------
makeblastdb -dbtype prot -in "$work/train.fasta" -out "$work/train" >/dev/null
blastp -query "$work/test.fasta" -db "$work/train" -outfmt 6 -max_target_seqs 50 \
  -num_threads "$threads" > "$work/blast.tsv"

python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
truth = dict(l.split() for l in open(os.path.join(work, "test_labels.tsv")))
train = dict(l.split() for l in open(os.path.join(work, "train_labels.tsv")))
def report(kind, best):
    errors = sum(1 for q, fam in truth.items() if best.get(q, (None, None))[1] != fam)
    print(f"{kind} n={len(truth)} errors={errors} error_rate={errors / len(truth):.4f}")
best = {}
for line in open(os.path.join(work, "hmm.tbl")):
    if line.startswith("#"):
        continue
    f = line.split()
    key = (-float(f[5]), float(f[4]), f[0])  # score, E-value, model (= accession)
    if f[2] not in best or key < best[f[2]][0]:
        best[f[2]] = (key, f[0])
report("hmm", best)
best = {}
for line in open(os.path.join(work, "blast.tsv")):
    f = line.rstrip("\n").split("\t")
    key = (-float(f[11]), float(f[10]))  # bit score, E-value; earlier rows win remaining ties
    if f[0] not in best or key < best[f[0]][0]:
        best[f[0]] = (key, train[f[1]])
report("blast", best)
PY
