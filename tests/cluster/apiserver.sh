#!/usr/bin/env bash
# A real kube-apiserver 1.20.2 + etcd on loopback, for tests.
#
#   tests/cluster/apiserver.sh start <workdir>   # prints the env file path
#   tests/cluster/apiserver.sh stop  <workdir>
#
# After start, <workdir>/env holds KUBECONFIG=, APISERVER_URL=, CLUSTER_CA=
# (and ETCD_URL=); <workdir>/kubeconfig is an admin (system:masters) config.
# Logs: <workdir>/etcd.log, <workdir>/apiserver.log. The work is in lib.sh.
set -euo pipefail

# shellcheck source=tests/cluster/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

usage() { echo "usage: $0 start|stop <workdir>" >&2; exit 2; }
[ $# -eq 2 ] || usage

case $1 in
  start)
    kc_start "$2"
    echo "$(cd "$2" && pwd)/env"
    ;;
  stop) kc_stop "$2" ;;
  *) usage ;;
esac
