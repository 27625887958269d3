#!/usr/bin/env bash
# `make cluster-demo`: a 3-node Ray cluster on 127.0.0.1 (head + 2 workers, 4 fake GPUs each) inside a
# private network namespace, a small `sleep` sweep spread over its 12 GPU workers, then the cluster
# stopped by PID. Needs root for the namespace:  unshare -n bash clusters/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
if ip -o link show | grep -qv ': lo:'; then
  echo "clusters/demo.sh: run it in a private network namespace (unshare -n bash clusters/demo.sh)" >&2
  exit 2
fi
ip link set lo up
dir=$(mktemp -d /tmp/grid-demo-XXXX)
trap '"$bin/python" -m clusters.local_cluster stop --dir "$dir"; echo "cluster stopped; results kept in $dir/results"' EXIT
"$bin/python" -m clusters.local_cluster start --dir "$dir" --nodes 3 --gpus 4
eval "$("$bin/python" -m clusters.local_cluster env --dir "$dir")"
# All nodes are this machine, so the results directory is shared by construction.
"$bin/grid" run clusters/demo-sleep.yaml --address auto --results "$dir/results" --shared-results --plain
"$bin/grid" status "$dir/results"
