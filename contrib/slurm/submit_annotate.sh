#!/bin/bash
# Submits a sharded annotate: an array of SHARDS tasks, then the merge once
# every task succeeded (--dependency=afterok). Prints the two job ids.
#   SHARDS=8 CLASSIFIER=clf/ INPUT=proteome.fa.gz PART_DIR=work/annotate.parts OUTPUT=annotations.tsv \
#     contrib/slurm/submit_annotate.sh [--gpu] [extra sbatch options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
array_script="$here/annotate_array.sbatch"
if [[ "${1:-}" == --gpu ]]; then array_script="$here/annotate_array_gpu.sbatch"; shift; fi
: "${SHARDS:?set SHARDS}" "${CLASSIFIER:?set CLASSIFIER}" "${INPUT:?set INPUT}" "${PART_DIR:?set PART_DIR}" "${OUTPUT:?set OUTPUT}"
export SHARDS CLASSIFIER INPUT PART_DIR OUTPUT
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$@" "$array_script")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" "$here/annotate_merge.sbatch")
echo "annotate array job $array, merge job $merge"
