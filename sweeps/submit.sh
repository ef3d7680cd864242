#!/usr/bin/env bash
# Submit a sweep to the cluster started by `ray up cluster.yaml`, as a Ray job that runs the
# driver on the head node. Run from the repository root on your machine.
#   sweeps/submit.sh sweeps/gpu_ladder.yaml              # start
#   sweeps/submit.sh sweeps/gpu_ladder.yaml --resume     # carry on after the driver died
# Needs the dashboard port forwarded: `ray dashboard cluster.yaml` in another terminal.
set -euo pipefail
sweep_file=${1:?usage: sweeps/submit.sh SWEEP_FILE [kinfuse sweep options]}
shift
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" \
  --working-dir . \
  --submission-id "kinfuse-$(basename "$sweep_file" .yaml)-$(date +%Y%m%d-%H%M%S)" \
  -- kinfuse sweep "$sweep_file" "$@"
