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
# fetched with `ray exec` into ~/.ray/<cluster_name>.token (mode 600), used through
# RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH, and fetched anew when the head refuses it (a cluster
# brought down and up again has a new head and token). Every failure is one line on stderr.
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
[ -n "$name" ] || { echo "submit.sh: $cluster: no cluster_name: line (is it a Ray cluster file?)" >&2; exit 1; }
bin=${KINFUSE_HEAD_ENV:+$KINFUSE_HEAD_ENV/bin/}
token=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/$name.token}
address=${RAY_ADDRESS:-http://127.0.0.1:8265}
said=$(mktemp)
trap 'rm -f "$said" "$token.tmp" "$token.new"' EXIT

# The head's token, read with `ray exec` (a head brought up again has a new one).
fetch_token() {
  mkdir -p "$(dirname "$token")"
  if ! (umask 077 && ray exec "$cluster" "${bin}ray get-auth-token" >"$token.tmp" 2>"$said"); then
    echo "submit.sh: 'ray exec $cluster' could not reach the head (is the cluster up? ray up $cluster):" \
         "$(tail -n 3 "$said" | tr '\n' ' ')" >&2
    exit 1
  fi
  (umask 077; { tr -d '\r' <"$token.tmp" | grep -E '^[A-Za-z0-9_=+/-]{32,}$' || true; } | tail -n 1 >"$token.new")
  if [ ! -s "$token.new" ]; then
    rm -f "$token.new"
    echo "submit.sh: the head printed no auth token ('${bin}ray get-auth-token' on it); is Ray's" \
         "token authentication on there?" >&2
    exit 1
  fi
  mv "$token.new" "$token"
}

[ -s "$token" ] || fetch_token
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token"
# A cached token the head refuses is an old head's: fetch it anew, once.
if ! ray job list --address "$address" >/dev/null 2>"$said"; then
  if grep -qiE 'authentication|unauthorized|forbidden|403|401' "$said"; then
    echo "submit.sh: the head refuses the cached token $token (brought up again?): fetching its token anew" >&2
    fetch_token
  else
    echo "submit.sh: no Ray dashboard answers at $address (forward it: ray dashboard $cluster):" \
         "$(tail -n 3 "$said" | tr '\n' ' ')" >&2
    exit 1
  fi
fi
rm -f "$said"
exec ray job submit --address "$address" \
  --working-dir . \
  --submission-id "kinfuse-$(basename "$sweep_file" .yaml)-$(date +%Y%m%d-%H%M%S)" \
  ${wait[@]+"${wait[@]}"} \
  -- "${bin}python" -m kinfuse_ray.cli sweep "$sweep_file" ${options[@]+"${options[@]}"}
