#!/bin/bash
# Submits a residue search split over the store: an array of SHARDS search tasks,
# then the merge + scoring once every task succeeded (--dependency=afterok).
# Prints the two job ids. --gpu: the tasks on CUDA devices (protfam built with
# --features cuda); the merge needs none.
#   SHARDS=8 DATA=data/pfam35-uniprot20k STORE=data/residue HITS=work/hits \
#     SEARCH_ARGS="--residue-index exact" contrib/slurm/submit_residue_search.sh [--gpu] [extra sbatch options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
array_script="$here/residue_search_array.sbatch"
if [[ "${1:-}" == --gpu ]]; then array_script="$here/residue_search_array_gpu.sbatch"; shift; fi
: "${SHARDS:?set SHARDS}" "${STORE:?set STORE}" "${DATA:?set DATA}" "${HITS:?set HITS}"
export SHARDS STORE DATA HITS
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$@" "$array_script")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" "$here/residue_search_merge.sbatch")
echo "residue search array job $array, merge job $merge"
