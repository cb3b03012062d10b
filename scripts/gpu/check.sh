#!/usr/bin/env bash
# The second GPU call (same warm machine, at most 3 minutes): CUDA coding speed, cross-device files, CUDA tests.
#   run(command="bash scripts/gpu/check.sh $OUT", carry=[".whl", ".gpu-stash/src/evc/weights/EVC-SS"], timeout_s=180)
#   (the carry list pack.py prints)
# Writes OUT/check.log, OUT/summary.md and OUT/crossdev-gpu.json (files made on the GPU, to decode at home).
set -euo pipefail
OUT=${1:?usage: scripts/gpu/check.sh OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export KIT_START=${KIT_START:-$(date +%s.%N)}
{
  echo "kit: check.sh on $(hostname) at $(date -u +%FT%TZ)"
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
  "$PYTHON" scripts/gpu/kit.py check "$OUT"
} 2>&1 | tee -a "$OUT/check.log"
