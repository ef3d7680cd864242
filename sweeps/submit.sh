#!/usr/bin/env bash
# Submit a sweep to a cluster brought up with `ray up CLUSTER_FILE`, as a Ray job whose driver
# runs on the head node. Run from the repository root on your machine, with the dashboard port
# forwarded (`ray dashboard CLUSTER_FILE` in another terminal).
#   sweeps/submit.sh cluster.yaml sweeps/gpu_ladder.yaml --no-wait            # prints the job id
#   sweeps/submit.sh cluster.yaml sweeps/gpu_ladder.yaml --resume --no-wait   # after a driver died
#   ray job logs --follow JOB_ID        # (with the same RAY_AUTH_* variables as below)
# --no-wait returns once the job is accepted; without it, this follows the job's log until the
# sweep ends (days, for a GPU ladder). Other options go to `kinfuse sweep`.
# Ray's token authentication is on (the cluster files make the head's token at start): it is
# fetched once with `ray exec` into ~/.ray/<cluster_name>.token (mode 600) and used through
# RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH.
# KINFUSE_HEAD_ENV names the environment on the head (clusters/local.yaml: ~/kinfuse-env);
# empty (cluster.yaml's image): the `ray` and `python` on the head's PATH.
set -euo pipefail
# Empty arrays expand as ${a[@]+"${a[@]}"}: bash 3.2 (macOS) treats "${a[@]}" of an empty array as unset under set -u.
usage="usage: sweeps/submit.sh CLUSTER_FILE SWEEP_FILE [--no-wait] [kinfuse sweep options]"
cluster=${1:?$usage}
sweep_file=${2:?$usage}
shift 2
wait=()
options=()
for arg in "$@"; do
  if [ "$arg" = --no-wait ]; then wait=(--no-wait); else options+=("$arg"); fi
done
name=$(sed -n 's/^cluster_name: *//p' "$cluster")
bin=${KINFUSE_HEAD_ENV:+$KINFUSE_HEAD_ENV/bin/}
token=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/$name.token}
if [ ! -s "$token" ]; then
  mkdir -p "$(dirname "$token")"
  (umask 077 && ray exec "$cluster" "${bin}ray get-auth-token" 2>/dev/null \
    | tr -d '\r' | grep -E '^[A-Za-z0-9_=+/-]{32,}$' | tail -n 1 > "$token.tmp")
  [ -s "$token.tmp" ] || { echo "submit.sh: could not read the head's auth token" >&2; exit 1; }
  mv "$token.tmp" "$token"
fi
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token"
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" \
  --working-dir . \
  --submission-id "kinfuse-$(basename "$sweep_file" .yaml)-$(date +%Y%m%d-%H%M%S)" \
  ${wait[@]+"${wait[@]}"} \
  -- "${bin}python" -m kinfuse_ray.cli sweep "$sweep_file" ${options[@]+"${options[@]}"}
