#!/usr/bin/env bash
# Recipe pilots for the CPU campaign (issue 19, item 4): short legs from the same weights at equal wall
# time, one after the other in the background, each with its own warm-up and cosine over MINUTES.
# Compare them on the validation split afterwards (docs/training.md, "Recipe pilots").
#
#   EVC_INIT_WEIGHTS=PATH scripts/pilots.sh [MINUTES] [PILOT ...]   # default 30 minutes, every pilot
#
# Pilots (one factor changed from "base", the low-compute recipe as it was until 2026-12-03):
#   base    16 x 128 px, lr 1e-3, anchors uniform
#   crop256  4 x 256 px (the same pixels per step), lr 1e-3, anchors uniform
#   lr3e-4  16 x 128 px, lr 3e-4, anchors uniform
#   high    16 x 128 px, lr 1e-3, anchors drawn 1:1:2:2 (the high-rate end twice as often)
# Output: $EVC_PILOTS/<pilot>/ (train.log, train.csv, export/), FINISHED in each when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
shift || true
PILOTS=("$@")
[ ${#PILOTS[@]} -gt 0 ] || PILOTS=(base crop256 lr3e-4 high)
INIT=${EVC_INIT_WEIGHTS:-src/evc/weights/EVC-SS}
OUT=${EVC_PILOTS:-$HOME/evc-runs/pilots-$(date -u +%Y%m%d-%H%M)}
DATA=${EVC_DATA:-../shared/data/train}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"

commands=()
for pilot in "${PILOTS[@]}"; do
    case $pilot in
        base) recipe=(--batch-size 16 --crop 128 --lr 1e-3) ;;
        crop256) recipe=(--batch-size 4 --crop 256 --lr 1e-3) ;;
        lr3e-4) recipe=(--batch-size 16 --crop 128 --lr 3e-4) ;;
        high) recipe=(--batch-size 16 --crop 128 --lr 1e-3 --anchor-weights 1,1,2,2) ;;
        *) echo "unknown pilot $pilot (base, crop256, lr3e-4, high)" >&2; exit 2 ;;
    esac
    args=(-m evc train --model EVC-SS --data "$DATA" --out "$OUT/$pilot" --init-weights "$INIT"
          --device cpu --workers 0 "${recipe[@]}" --rate-lr-factor 10 --warmup-steps 100
          --time-limit-minutes "$MINUTES" --checkpoint-every 200 --log-every 50
          --val-every 1000000 --val-images 0)
    mkdir -p "$OUT/$pilot"
    commands+=("$(printf '%q ' "$PY" "${args[@]}") >> $(printf '%q' "$OUT/$pilot/train.log") 2>&1 && touch $(printf '%q' "$OUT/$pilot/FINISHED")")
done
# One session for the whole chain (kill -STOP -- -PID pauses it), weighted up against other sessions.
script="echo -10 > /proc/self/autogroup 2> /dev/null || true"
for c in "${commands[@]}"; do script+="; $c"; done
setsid bash -c "$script" < /dev/null > "$OUT/chain.log" 2>&1 &
pid=$!
echo "$pid" > "$OUT/PID"
echo "pilots ${PILOTS[*]} from $INIT, $MINUTES min each, in $OUT; PID $pid (pause: kill -STOP -- -$pid)"
