#!/usr/bin/env bash
# The CPU training campaign for EVC-SS: one time-limited leg per session, in the background.
#
#   scripts/train_cpu.sh [MINUTES]          # default 150: exports well inside a 3-hour session
#   scripts/train_cpu.sh --until TIME       # train until TIME (any `date -d` time: "10:15", "+170 min"),
#                                           # exported a minute or two after it; give it the session's end
#                                           # less the margin for evaluation and commit
#   EVC_CAMPAIGN=/path scripts/train_cpu.sh # where legs live (default ~/evc-runs/campaign-EVC-SS)
#   EVC_INIT_WEIGHTS=RUN/export scripts/train_cpu.sh   # a new leg starts from these weights
#   EVC_DRY_RUN=1 scripts/train_cpu.sh ...  # print the training command, start nothing
#
# - A leg whose checkpoint exists but which did not finish (the session was stopped) is resumed: its
#   time budget counts the minutes it already trained, so it ends where it would have.
# - Otherwise a new leg starts from the newest leg's export (a leg stopped before its first checkpoint
#   has none and is passed over), else from the shipped weights (src/evc/weights/EVC-SS), else from
#   scratch, with a fresh warm-up and a cosine over MINUTES.
# - Checkpoint and export every 200 steps (a few minutes), validation on 4 Kodak images at the end.
# - The recipe is docs/training.md's low-compute recipe (chosen by measured pilots: scripts/pilots.sh).
# Output: LEG/train.log, LEG/train.csv, LEG/val.csv, LEG/export/. Prints the leg folder and the PID.
set -euo pipefail
cd "$(dirname "$0")/.."
DEADLINE=
if [ "${1:-}" = --until ]; then
    [ -n "${2:-}" ] || { echo "--until needs a time, e.g. --until 10:15 or --until '+150 min'" >&2; exit 2; }
    DEADLINE=$(date -d "$2" +%s) || { echo "--until: not a time date understands: $2" >&2; exit 2; }
    # A clock time already past today ("--until 00:10" at 21:40) means its next occurrence, tomorrow.
    if [ "$DEADLINE" -le "$(date +%s)" ]; then
        DEADLINE=$(date -d "tomorrow $2" +%s 2> /dev/null || echo "$DEADLINE")
    fi
    # A minute goes to start-up (reading the weights, caching the images) before the clock of the leg runs.
    MINUTES=$(( (DEADLINE - $(date +%s)) / 60 - 1 ))
    [ "$MINUTES" -ge 5 ] || { echo "--until $2 leaves less than 5 minutes of training" >&2; exit 2; }
else
    MINUTES=${1:-150}
    [[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "MINUTES must be a number, got $MINUTES (or --until TIME)" >&2; exit 2; }
fi
MODEL=${EVC_MODEL:-EVC-SS}
CAMPAIGN=${EVC_CAMPAIGN:-$HOME/evc-runs/campaign-$MODEL}
DATA=${EVC_DATA:-../shared/data/train}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$CAMPAIGN"

# Beside each leg (new or resumed): a weight average, exported as LEG/export-ema/, and a copy of the exports
# every 2,000 steps (about 30 minutes on the AMD EPYC) in LEG/exports/step-N/; the validation split
# chooses among them (docs/training.md, "Free gains").
keep=(--ema-decay 0.999 --keep-exports-every 2000)

last_leg=$(ls -td "$CAMPAIGN"/leg-* 2>/dev/null | head -n 1 || true)  # the most recently written
# A new leg continues the newest export, which a leg stopped before its first checkpoint does not have.
last_export=$(for d in $(ls -td "$CAMPAIGN"/leg-* 2>/dev/null); do
    [ -d "$d/export" ] && { echo "$d/export"; break; }; done || true)
if [ -n "$last_leg" ] && [ -f "$last_leg/checkpoint.pt" ] && [ ! -f "$last_leg/FINISHED" ]; then
    leg=$last_leg
    args=(--out "$leg" --resume "${keep[@]}")
    echo "resuming the unfinished leg $leg"
    if [ -n "$DEADLINE" ]; then
        # Its own budget counts the minutes it already trained; if that ends after the deadline, the
        # budget is cut so that it ends at the deadline (the cosine then decays faster from here on).
        limit=$("$PY" - "$leg" "$MINUTES" <<'PYEOF'
import re, sys, torch
leg, left = sys.argv[1], float(sys.argv[2])
done = float(torch.load(f"{leg}/checkpoint.pt", map_location="cpu", weights_only=False).get("elapsed_s", 0.0)) / 60
own = float(re.search(r"^time_limit_minutes = (\S+)", open(f"{leg}/config.toml").read(), re.M).group(1))
print(f"{min(own, done + left):.1f}" if own > 0 else f"{done + left:.1f}")
PYEOF
)
        args+=(--time-limit-minutes "$limit")
        echo "its time budget: $limit minutes in all (deadline $(date -d "@$DEADLINE"))"
    fi
else
    leg="$CAMPAIGN/leg-$(date -u +%Y%m%d-%H%M)"
    init=()
    if [ -n "${EVC_INIT_WEIGHTS:-}" ]; then
        init=(--init-weights "$EVC_INIT_WEIGHTS")
    elif [ -n "$last_export" ]; then
        init=(--init-weights "$last_export")
    elif ls "src/evc/weights/$MODEL"/*.safetensors > /dev/null 2>&1; then
        init=(--init-weights "src/evc/weights/$MODEL")
    fi
    # From trained weights, lr 3e-4: the pilots of 2026-12-03 (docs/training.md) found 1e-3 undoing
    # 28 minutes of training on a model that is no longer new; from scratch, 1e-3 (the first pilots).
    lr=1e-3
    [ ${#init[@]} -eq 0 ] || lr=3e-4
    args=(--model "$MODEL" --data "$DATA" --out "$leg" "${init[@]}" --device cpu --workers 0
          --batch-size 16 --crop 128 --lr "$lr" --rate-lr-factor 10 --warmup-steps 100
          --time-limit-minutes "$MINUTES" --checkpoint-every 200 --log-every 50
          --val-every 1000000 --val-images 4 "${keep[@]}")
    echo "new leg $leg (${init[*]:-from scratch}), $MINUTES minutes"
fi
if [ -n "${EVC_DRY_RUN:-}" ]; then  # print what would run, start nothing
    echo "$PY -m evc train ${args[*]}"
    exit 0
fi
mkdir -p "$leg"
# The leg runs in a session of its own, so that one signal pauses all of it (kill -STOP -- -PID).
# Processes of other sessions share these cores by session group ("autogroup"), whatever their nice
# value: give this group more weight where the kernel allows it (root only).
setsid bash -c 'echo -10 > /proc/self/autogroup 2> /dev/null || true
"$0" -m evc train "${@:2}" >> "$1/train.log" 2>&1 && touch "$1/FINISHED"' "$PY" "$leg" "${args[@]}" \
    < /dev/null >> "$leg/train.log" 2>&1 &  # its own output too: a pipe (| tail, | tee) would wait for the leg
pid=$!
echo "$pid" > "$leg/PID"
echo "leg $leg, PID $pid (pause: kill -STOP -- -$pid; go on: kill -CONT -- -$pid; stop with a checkpoint: kill -TERM -- -$pid); log: $leg/train.log"
