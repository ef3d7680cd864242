#!/usr/bin/env bash
# The prepared GPU check (under 8 minutes on one H100): tokens/s and MFU of the two smallest
# GPU-ladder sizes in bf16, with and without torch.compile. Run from the repository root with
# the project installed over a CUDA build of torch (README, "GPU machines"); target: MFU >= 40%
# for the 110M model on an H100.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv
timeout 240 "$PY" benchmarks/throughput.py sweeps/gpu_ladder.yaml --sizes 2 --steps 30
timeout 120 "$PY" benchmarks/throughput.py sweeps/gpu_ladder.yaml --sizes 2 --steps 30 --no-compile
