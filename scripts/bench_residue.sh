#!/usr/bin/env bash
# `make bench` part for residue-knn: search throughput, peak memory and store /
# index size on the bundled clustered test split with NEAR, printed beside the
# HMM baseline's search time on the same test set (from the baseline report
# `data/reports/baseline-hmm-<split>.json` written by `protfam baseline hmm`),
# and the HNSW index's recall against exact search.
set -euo pipefail
BIN=${BIN:-target/release/protfam}
SPLIT=${SPLIT:-clustered_split}
MODEL=${MODEL:-near}
REPORTS=${REPORTS:-data/reports}
DATA_ARGS=()
if [ -n "${DATA:-}" ]; then DATA_ARGS=(--data "$DATA"); fi

echo "== residue-knn ($MODEL, $SPLIT/test, exact search, tuned defaults)"
"$BIN" residue evaluate --model "$MODEL" --split "$SPLIT" "${DATA_ARGS[@]}" --output "$REPORTS"

hmm_report="$REPORTS/baseline-hmm-$SPLIT.json"
residue_report="$REPORTS/residue-knn-$MODEL-$SPLIT-test.json"
if [ -f "$hmm_report" ]; then
  hmm_s=$(grep -o '"predict_seconds": *[0-9.eE+-]*' "$hmm_report" | head -1 | sed 's/.*: *//')
  ours_s=$(grep -o '"predict_seconds": *[0-9.eE+-]*' "$residue_report" | head -1 | sed 's/.*: *//')
  awk -v h="$hmm_s" -v r="$ours_s" 'BEGIN { printf "HMM baseline search on the same test set: %.1f s; residue-knn predict: %.1f s; residue-knn/HMM speed ratio %.2f\n", h, r, h / r }'
else
  echo "HMM baseline report $hmm_report not found: run \`protfam baseline hmm --split $SPLIT\` first for the side-by-side time"
fi

echo "== HNSW recall against exact search (100 test sequences)"
"$BIN" residue recall --model "$MODEL" --split "$SPLIT" "${DATA_ARGS[@]}" --queries 100 --k 10 --ef 50,100,200
