#!/usr/bin/env bash
# The cluster's MLflow tracking server, restarted whenever it exits (a crash, an OOM kill),
# listening on 127.0.0.1 only. Started by the cluster files' head commands:
#   clusters/mlflow_supervised.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION
# A second start while one runs does nothing (a lock), so `ray up` can be run again;
# clusters/stop_node.sh stops the supervisor and then the server's process group.
set -uo pipefail
store=${1:?usage: mlflow_supervised.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION}
artifacts=${2:?usage: mlflow_supervised.sh BACKEND_STORE_URI ARTIFACTS_DESTINATION}
mlflow=${MLFLOW:-mlflow}
lock=${MLFLOW_SUPERVISOR_LOCK:-/tmp/kinfuse-mlflow-supervisor.lock}
# No GenAI job runner (nothing here submits jobs): its queue workers are 8 more Python processes,
# about 1.9 GiB and 18 CPU-seconds at every start of the server (measured with MLflow 3.17.2).
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
exec 9>"$lock"
flock -n 9 || { echo "mlflow supervisor already running"; exit 0; }
while true; do
  echo "$(date -Is) starting mlflow server"
  # Its own process group (so it can be stopped whole), without the lock's descriptor.
  setsid "$mlflow" server --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" \
    --backend-store-uri "$store" --artifacts-destination "$artifacts" 9>&- &
  echo $! > "$lock.server"
  wait $!
  echo "$(date -Is) mlflow server exited with $?; restarting in 5 s"
  sleep 5
done
