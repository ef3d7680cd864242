#!/usr/bin/env bash
# Stop what a cluster file started on this node: the MLflow supervisor and its server (head
# only), then Ray. `ray down` with the local provider only forgets the nodes; run this first:
#   ray exec clusters/local.yaml '~/kinfuse-ray/clusters/stop_node.sh'
set -uo pipefail
lock=${MLFLOW_SUPERVISOR_LOCK:-/tmp/kinfuse-mlflow-supervisor.lock}
if [ -e "$lock" ]; then
  # The supervisor alone holds the lock: stop it (so it restarts nothing), then the server.
  for pid in $(fuser "$lock" 2>/dev/null); do kill -TERM "$pid"; done
  [ -s "$lock.server" ] && kill -TERM -- "-$(cat "$lock.server")" 2>/dev/null
  rm -f "$lock.server"
fi
ray=${RAY:-$HOME/kinfuse-env/bin/ray}
[ -x "$ray" ] || ray=ray
"$ray" stop
