#!/usr/bin/env bash
# Remake docs/screenshots/*.png: a small regularization sweep in a temporary store, `lit-d2l report`,
# `lit-d2l ui` on that store, and headless Chromium (Debian's `chromium`) driven over its DevTools
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
# experiments/ablations/regularization.yaml, shortened: 6 arms x 2 seeds of 40 epochs (about a minute).
cat > regularization.yaml <<SPEC
name: regularization
base: $REPO/experiments/weight_decay.yaml
grid:
  model.l2: [0.0, 0.01, 0.1, 1.0, 3.0, 10.0]
seeds: [0, 1]
overrides: {trainer.max_epochs: 40, trainer.check_val_every_n_epoch: 2}
metrics: [train/loss_epoch, val/loss, weight_norm/w]
SPEC
$LIT_D2L ablate regularization.yaml --workers 2 > ablate.log
grep -E "^(sweep|report)" ablate.log
SWEEP=$(sed -n 's/^sweep \([^:]*\): parent run.*/\1/p' ablate.log | head -1)
$LIT_D2L report "$SWEEP" > /dev/null   # the report once more, as a user would (it replaces the logged one)

$LIT_D2L ui --port "$PORT" > ui.log 2>&1 &
UI_PID=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
mkdir -p "$OUT"
node --experimental-websocket --no-warnings "$REPO/docs/screenshots.mjs" "http://127.0.0.1:$PORT" "$OUT" "$SWEEP"
ls -l "$OUT"
