#!/usr/bin/env bash
# A real one-node Kubernetes 1.20.2 cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, containerd, bridge CNI,
# dnsmasq as cluster DNS) inside a network namespace of its own.
#
#   tests/cluster/cluster.sh start  <workdir>          # prints <workdir>/env
#   tests/cluster/cluster.sh stop   <workdir>          # idempotent
#   tests/cluster/cluster.sh import <workdir> <tar...> # docker-archive -> containerd k8s.io
#   tests/cluster/cluster.sh dns-reload <workdir>      # after editing <workdir>/dns-hosts
#   tests/cluster/cluster.sh leftovers <workdir>       # list what is left; 1 if anything
#
# Everything listens only inside the namespace (node IP 10.77.0.1, pods
# 10.88.0.0/24, DNS 10.77.0.1:53). Reach it with
#   tests/cluster/in-cluster-ns.sh <workdir> kubectl get pods
# <workdir>/dns-hosts ("IP name..." lines, optional, read at start and on
# dns-reload) is the whole DNS: other names are NXDOMAIN. Images: see
# tests/images/build.sh. Details in cluster-lib.sh. Needs root.
set -euo pipefail

# shellcheck source=tests/cluster/cluster-lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster-lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
[ "$(id -u)" = 0 ] || kc_die "needs root (network namespaces, mounts, containerd)"

cmd=$1 dir=$2
shift 2
case $cmd in
  start)
    [ $# -eq 0 ] || usage
    # Whatever way start ends early (kc_die exits), leave nothing running.
    # (A name no function declares local: the trap runs in the scope of the
    # function that called exit.)
    CL_START_DIR=$dir
    # shellcheck disable=SC2154 # rc is assigned inside the trap
    trap 'rc=$?; if [ "$rc" != 0 ]; then cl_stop "$CL_START_DIR" || true; fi' EXIT
    cl_start "$dir"
    trap - EXIT
    echo "$(cd "$dir" && pwd)/env"
    ;;
  stop) [ $# -eq 0 ] || usage; cl_stop "$dir" ;;
  import) [ $# -ge 1 ] || usage; cl_import "$dir" "$@" ;;
  dns-reload) [ $# -eq 0 ] || usage; cl_dns_reload "$dir" ;;
  leftovers) [ $# -eq 0 ] || usage; cl_leftovers "$dir" ;;
  *) usage ;;
esac
