#!/usr/bin/env bash
# One GPU call: train EVC-LL for the time the call has, bring back fp16 weights, logs and a summary in OUT.
#   run(command="bash scripts/gpu/train.sh $OUT", carry=[".whl", ".gpu-pack"], timeout_s=540)
# Settings: environment variables (docs/gpu-runs.md). Everything printed also goes to OUT/train.log, so
# the log comes back even when the call is cut off.
set -euo pipefail
OUT=${1:?usage: scripts/gpu/train.sh OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export KIT_START=${KIT_START:-$(date +%s.%N)}
{
  echo "kit: train.sh on $(hostname) at $(date -u +%FT%TZ)"
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
  "$PYTHON" scripts/gpu/kit.py train "$OUT"
} 2>&1 | tee -a "$OUT/train.log"
