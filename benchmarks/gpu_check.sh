#!/usr/bin/env bash
# The GPU check on a bare GPU machine (no network, no Ray, MLflow or scipy): its python3 needs a
# CUDA build of torch and transformers (with what they pull in); pydantic comes as wheels
# made on a machine with pip (scripts/gpu_wheels.sh DIR) and placed beside the checkout.
#   bash benchmarks/gpu_check.sh [--wheels DIR] [gpu_check.py options]
# Runs the trial code for the two smallest rungs of sweeps/gpu_ladder.yaml (bf16, compile,
# NCCL, evaluation, checkpoint and resume, one FSDP2 run) in under 8 minutes on one H100 (an
# estimate: it has not run on a GPU yet). Add `--memory-rung l1.3b` to measure a large rung's
# memory against the plan first (a few steps, its model built and compiled: minutes more, which
# the limit adds per memory rung).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ "${1:-}" = "--wheels" ]; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$2"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  shift 2
fi
if ! "$PY" -c "import sys; sys.exit(sys.version_info < (3, 11))"; then
  echo "gpu_check: needs Python 3.11 or newer (kinfuse_ray's config uses StrEnum); $PY is $("$PY" -V 2>&1): set PY" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: no CUDA device visible to $PY (torch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The limit: GPU_CHECK_TIMEOUT for the check itself, and GPU_CHECK_MEMORY_SECONDS more per
# --memory-rung (a large model built and compiled, a few steps: its own minutes). Memory rungs
# run first and each check prints as it finishes, so a run cut short still reports.
memory_rungs=$(printf '%s\n' "$@" | grep -c -- '^--memory-rung' || true)
limit=$(( ${GPU_CHECK_TIMEOUT:-540} + memory_rungs * ${GPU_CHECK_MEMORY_SECONDS:-240} ))
status=0
PYTHONUNBUFFERED=1 timeout "$limit" "$PY" benchmarks/gpu_check.py "$@" || status=$?
if [ "$status" -eq 124 ]; then
  echo "gpu_check: stopped at its limit of $limit s before it finished; raise GPU_CHECK_TIMEOUT" \
       "(or GPU_CHECK_MEMORY_SECONDS, per --memory-rung) to let it run on" >&2
fi
exit "$status"
