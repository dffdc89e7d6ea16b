#!/usr/bin/env bash
# Remake docs/screenshots/*.png from the three shipped suites, run in full in a temporary store
# (experiments/ablations/{regularization,overfitting,initialization}.yaml, about 10 minutes on 2 cores),
# then `lit-d2l ui` on that store and headless Chromium (Debian's `chromium`) driven over its DevTools
# protocol by docs/screenshots.mjs (Node >= 20, no packages).
#   bash docs/make_screenshots.sh            # with lit-d2l on PATH
#   LIT_D2L="python -m lit_d2l" bash docs/make_screenshots.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
LIT_D2L=${LIT_D2L:-lit-d2l}
PORT=${PORT:-5077}
OUT=${OUT:-$REPO/docs/screenshots}
WORK=$(mktemp -d)
UI_PID=
cleanup() {
  if [ -n "$UI_PID" ]; then kill "$UI_PID" 2>/dev/null || true; wait "$UI_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cd "$WORK"
SWEEPS=()
for suite in regularization overfitting initialization; do
  $LIT_D2L ablate "$REPO/experiments/ablations/$suite.yaml" --workers 2 > "$suite.log"
  grep -E "^(sweep|report|verdict)" "$suite.log" || true
  SWEEPS+=("$(sed -n 's/^sweep \([^:]*\): .*parent run .*/\1/p' "$suite.log" | head -1)")
done

$LIT_D2L ui --port "$PORT" > ui.log 2>&1 &
UI_PID=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
mkdir -p "$OUT"
node --experimental-websocket --no-warnings "$REPO/docs/screenshots.mjs" "http://127.0.0.1:$PORT" "$OUT" "${SWEEPS[@]}"
ls -l "$OUT"
