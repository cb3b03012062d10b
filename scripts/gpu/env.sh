# Sourced by train.sh and check.sh: the repo root, Python, evc from source, constriction from the wheels.
# The GPU machine's python3 (3.12, torch 2.11) has no constriction; .whl/ (carried) holds its cp312 wheel.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ! "$PYTHON" -c "import constriction" 2>/dev/null; then
  shopt -s nullglob
  wheels=(.whl/*.whl)
  shopt -u nullglob
  if (( ${#wheels[@]} == 0 )); then
    echo "kit: error: constriction is not installed and .whl/ holds no wheels (carry .whl; see docs/gpu-runs.md)"
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/evc-site "${wheels[@]}"
  export PYTHONPATH=/tmp/evc-site${PYTHONPATH:+:$PYTHONPATH}
  echo "kit: installed ${wheels[*]##*/} into /tmp/evc-site"
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
