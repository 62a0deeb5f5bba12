#!/bin/bash
# Submits a sharded embed: an array of SHARDS tasks, then the cache merge once
# every task succeeded (--dependency=afterok). Prints the two job ids.
#   SHARDS=8 MODEL=unirep1900 DATA=data/pfam35-uniprot20k WORK=work/embed CACHE=data/cache \
#     contrib/slurm/submit_embed.sh [--gpu] [extra sbatch options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
array_script="$here/embed_array.sbatch"
if [[ "${1:-}" == --gpu ]]; then array_script="$here/embed_array_gpu.sbatch"; shift; fi
: "${SHARDS:?set SHARDS}" "${WORK:?set WORK}" "${CACHE:?set CACHE}"
export SHARDS WORK CACHE
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$@" "$array_script")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" "$here/cache_merge.sbatch")
echo "embed array job $array, merge job $merge"
