#!/usr/bin/env bash
# Downloads the public Pfam 32 seed splits of Bileschi et al. (2022) into
# DEST/{random_split,clustered_split}/{train,dev,test}/data-NNNNN-of-NNNNN,
# the layout `protfam data stats` and the other commands read.
#
#   scripts/fetch_pfam32_splits.sh data/pfam32 [random_split|clustered_split ...]
#
# Shards: random_split 80/10/10 (train/dev/test), clustered_split 100/10/10.
# Source: the public Google Cloud bucket brain-genomics-public (no account
# needed over HTTPS). Existing complete shards are kept, so the script can be
# re-run after an interruption.
set -euo pipefail

DEST=${1:?usage: $0 DEST [split ...]}
shift || true
SPLITS=("$@")
[ ${#SPLITS[@]} -gt 0 ] || SPLITS=(random_split clustered_split)
BASE=${PFAM_SPLIT_URL:-https://storage.googleapis.com/brain-genomics-public/research/proteins/pfam}

shards() { # split part -> number of shards
  case "$1/$2" in
    random_split/train) echo 80 ;;
    clustered_split/train) echo 100 ;;
    */dev|*/test) echo 10 ;;
    *) echo "unknown split $1" >&2; exit 2 ;;
  esac
}

for split in "${SPLITS[@]}"; do
  for part in train dev test; do
    n=$(shards "$split" "$part")
    mkdir -p "$DEST/$split/$part"
    for ((i = 0; i < n; i++)); do
      name=$(printf 'data-%05d-of-%05d' "$i" "$n")
      out="$DEST/$split/$part/$name"
      [ -s "$out" ] && continue
      echo "fetching $split/$part/$name" >&2
      curl -fsSL --retry 3 -o "$out.part" "$BASE/$split/$part/$name"
      mv "$out.part" "$out"
    done
  done
done
echo "done: $DEST (check with: protfam data stats --data $DEST --split clustered_split)" >&2
