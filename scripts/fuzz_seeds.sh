#!/usr/bin/env bash
# Builds the seed corpora of the cargo-fuzz targets (fuzz/corpus/<target>/) from
# the files the repository already has (tests/data, the bundled Pfam split when
# present, a cache shard and classifier directories examples/fuzz_seeds.rs makes).
# Nothing here is committed: rerun it on a fresh clone (make fuzz does).
#
# Usage: scripts/fuzz_seeds.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/pfam35-uniprot20k}"
c=fuzz/corpus
mkdir -p $c/fasta $c/stockholm $c/pfam_csv $c/cache_shard $c/cache_dir $c/classifier_dir $c/npz $c/safetensors

cp tests/data/io/*.fa $c/fasta/
printf '>a desc\nMKVL\nAAG\n>b\nmkvlXBZ*\n' > $c/fasta/two.fa
cp tests/data/io/*.sto $c/stockholm/
printf '# STOCKHOLM 1.0\n#=GF ID fam\n#=GF AC PF00001.1\nseq1/1-4 MK.VL\nseq2/3-6 MKAV-\n//\n' > $c/stockholm/one.sto
cp tests/data/io/*.csv $c/pfam_csv/
i=0
for f in tests/data/io/mini/*/*/data-* tests/data/baseline/tiny/*/*/data-*; do
    cp "$f" $c/pfam_csv/mini-$i; i=$((i + 1))
done
if [ -d "$data/clustered_split/train" ]; then
    head -c 4000 "$data/clustered_split/train/data-00000-of-00004" > $c/pfam_csv/bundled-head
fi

# safetensors checkpoints the model tests use (small ones only).
for f in tests/data/models/esm2_tiny/model.safetensors tests/data/t5_tiny_enc/model.safetensors tests/data/bert_tiny_base/model.safetensors; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200000 ] && cp "$f" $c/safetensors/"$(basename "$(dirname "$f")")".safetensors
done
find tests/data -name '*.safetensors' -size -64k | head -4 | while read -r f; do cp "$f" $c/safetensors/; done

# A tiny .npz (zip of .npy files), written without numpy.
python3 - "$c/npz/tiny.npz" <<'PY'
import struct, sys, zipfile
def npy(shape, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{s}," for s in shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(f"<{len(values)}f", *values)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("w.npy", npy((2, 2), [1, 2, 3, 4]))
    z.writestr("b.npy", npy((2,), [0.5, -0.5]))
PY

# Real classifier directories and cache files, made by the library itself.
"${CARGO:-cargo}" run --quiet --release --example fuzz_seeds -- "$c"
# classifier_dir inputs: byte 0 picks the file (0 classifier.json, 1 labels.json,
# 2 weights.safetensors, 3 train_ids.txt) and the template (knn, ensemble, mlp).
printf '\000{"format_version":1}' > $c/classifier_dir/json
printf '\001[]' > $c/classifier_dir/labels
printf '\003a\nb\n' > $c/classifier_dir/ids
for s in $c/safetensors/*; do { printf '\002'; cat "$s"; } > $c/classifier_dir/w-"$(basename "$s")"; done
for t in $c/*; do echo "$(basename "$t"): $(ls "$t" | wc -l) seeds"; done
