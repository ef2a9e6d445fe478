#!/usr/bin/env bash
# Run a command inside a cluster.sh cluster's network namespace, with the
# variables of <workdir>/env exported (KUBECONFIG, NETNS, CONTAINERD_SOCK,
# NODE_IP, APISERVER_URL, CLUSTER_CA, SA_PUB, ...):
#
#   tests/cluster/in-cluster-ns.sh <workdir> kubectl get pods -A
#   tests/cluster/in-cluster-ns.sh <workdir> cargo test -p e2e
#
# Only the network namespace changes (nsenter --net, not `ip netns exec`,
# which would remount /sys): files, user and working directory stay.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <workdir> <cmd> [args...]" >&2; exit 2; }
dir=$(cd "$1" && pwd)
shift
[ -s "$dir/env" ] || { echo "in-cluster-ns: no $dir/env (cluster not started?)" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
[ -e "/run/netns/$NETNS" ] || { echo "in-cluster-ns: namespace $NETNS is gone" >&2; exit 1; }
exec nsenter --net="/run/netns/$NETNS" -- "$@"
