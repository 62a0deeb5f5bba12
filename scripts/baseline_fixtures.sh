#!/usr/bin/env bash
# Makes the baseline test fixtures under tests/data/baseline/ from the bundled
# data (real Pfam-labelled UniProt domains) and the real tools:
#   tiny/clustered_split/{train,dev,test}/data-00000-of-00001
#       nine families, some of them easily confused (three methyltransferase
#       and three TPR families), every row copied verbatim;
#   hmmscan.tbl, hmmsearch.tbl   real HMMER --tblout of the tiny test set
#                                against the tiny training profiles;
#   blastp.outfmt6               real blastp -outfmt 6 of the tiny test set
#                                against the tiny training sequences;
#   check.txt                    scripts/baseline_check.sh's error counts.
#
#   scripts/baseline_fixtures.sh [data_root]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-${PROTFAM_DATA:-$(dirname "$0")/../../shared/data/pfam35-uniprot20k}}
out="$here/tests/data/baseline"
mkdir -p "$out"
python3 - "$root" "$out/tiny" <<'PY'
import csv, glob, os, sys
root, out = sys.argv[1:3]
families = {"PF08241", "PF08242", "PF13649", "PF00515", "PF07719", "PF13181", "PF00126", "PF00163", "PF00407"}
header = ["family_id", "sequence_name", "family_accession", "aligned_sequence", "sequence"]
for part in ["train", "dev", "test"]:
    os.makedirs(os.path.join(out, "clustered_split", part), exist_ok=True)
    with open(os.path.join(out, "clustered_split", part, "data-00000-of-00001"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for path in sorted(glob.glob(os.path.join(root, "clustered_split", part, "data-*"))):
            with open(path, newline="") as shard:
                for row in csv.DictReader(shard):
                    if row["family_accession"].split(".")[0] in families:
                        w.writerow([row[h] for h in header])
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/scripts/baseline_check.sh" "$out/tiny" clustered_split "$work" 1 > "$out/check.txt"
cp "$work/hmm.tbl" "$out/hmmscan.tbl"
hmmsearch --cpu 0 -E 1000 --domE 1000 --noali -o /dev/null --tblout "$out/hmmsearch.tbl" "$work/all.hmm" "$work/test.fasta"
cp "$work/blast.tsv" "$out/blastp.outfmt6"
cp "$work/test_labels.tsv" "$out/test_labels.tsv"
cp "$work/train_labels.tsv" "$out/train_labels.tsv"
cat "$out/check.txt"
