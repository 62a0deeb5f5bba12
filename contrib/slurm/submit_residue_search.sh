#!/bin/bash
# Submits a residue search split over the store: an array of SHARDS search tasks,
# then the merge + scoring once every task succeeded (--dependency=afterok).
# Prints the two job ids. On GPUs (protfam built with --features cuda):
# DEVICE=cuda and --gres=gpu:1 among the extra sbatch options.
#   SHARDS=8 DATA=data/pfam35-uniprot20k STORE=data/residue HITS=work/hits \
#     SEARCH_ARGS="--residue-index exact" contrib/slurm/submit_residue_search.sh [extra sbatch options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${SHARDS:?set SHARDS}" "${STORE:?set STORE}" "${DATA:?set DATA}" "${HITS:?set HITS}"
export SHARDS STORE DATA HITS
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$@" "$here/residue_search_array.sbatch")
array=${array%%;*}
# The merge needs no GPU: drop a --gres option given for the tasks.
merge_opts=()
for o in "$@"; do [[ "$o" == --gres=* ]] || merge_opts+=("$o"); done
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "${merge_opts[@]}" \
  "$here/residue_search_merge.sbatch")
echo "residue search array job $array, merge job $merge"
