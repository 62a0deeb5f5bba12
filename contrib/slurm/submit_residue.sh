#!/bin/bash
# Submits a sharded residue store build: an array of SHARDS tasks, then the merge
# once every task succeeded (--dependency=afterok). Prints the two job ids.
#   SHARDS=8 DATA=data/pfam35-uniprot20k STORE=data/residue \
#     contrib/slurm/submit_residue.sh [--gpu] [extra sbatch options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
array_script="$here/residue_build_array.sbatch"
if [[ "${1:-}" == --gpu ]]; then array_script="$here/residue_build_array_gpu.sbatch"; shift; fi
: "${SHARDS:?set SHARDS}" "${STORE:?set STORE}" "${DATA:?set DATA}"
export SHARDS STORE DATA
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$@" "$array_script")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" "$here/residue_merge.sbatch")
echo "residue build array job $array, merge job $merge"
