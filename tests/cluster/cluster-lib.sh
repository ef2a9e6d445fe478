# shellcheck shell=bash
# A real one-node Kubernetes 1.20 cluster in a network namespace of its own:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# containerd + runc + bridge CNI, and a dnsmasq as cluster DNS. Sourced by
# cluster.sh; builds on lib.sh (kc_*), whose functions stay as they are.
#
#   cl_start  <workdir>            start everything, wait for node1 Ready
#   cl_stop   <workdir>            stop and clean up; safe to call twice
#   cl_import <workdir> <tar...>   import docker-archive tars into containerd
#   cl_dns_reload <workdir>        re-read <workdir>/dns-hosts
#
# Addresses exist only inside the namespace: node 10.77.0.1/32 (veth n0),
# pods 10.88.0.0/24 on bridge cni0 (gateway 10.88.0.1), DNS 10.77.0.1:53, the
# apiserver on 0.0.0.0:<random port>, the `kubernetes` Service 10.0.0.1:443
# DNAT'ed to it (no kube-proxy runs; other ClusterIPs route nowhere).
#
# Workdir layout:
#   env              KUBECONFIG= NETNS= CONTAINERD_SOCK= NODE_IP= ... (after start)
#   kubeconfig       admin, server https://10.77.0.1:<port> (only inside the netns)
#   dns-hosts        optional, written by the caller: "IP name..." lines
#   netns            the namespace's name (stop uses it)
#   cluster/         lib.sh's dir: ca.pem sa.key sa.pub admin-token etcd apiserver logs
#   containerd/      config.toml, root/, state/, containerd.sock, containerd.log
#   cni/             net.d/ (conflist) and ipam/ (host-local leases)
#   kubelet/         config.yaml, root/, kubelet.log
#   dnsmasq.conf dns/hosts dnsmasq.log controller-manager.log scheduler.log

# shellcheck source=tests/cluster/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

CL_NODE_IP=10.77.0.1
CL_POD_CIDR=10.88.0.0/24
CL_NODE_NAME=node1

cl_abs() { mkdir -p "$1" && (cd "$1" && pwd); }

# Namespace name derived from the workdir path: unique per workdir, stable
# across start/stop, short (names show up in /run/netns).
cl_netns_name() {
  echo "si-$(printf %s "$1" | sha256sum | cut -c1-10)"
}

# Run in the namespace (like kc_in_ns, with the name given explicitly).
cl_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

# curl the apiserver as admin from inside the namespace.
cl_api() {
  local dir=$1 path=$2
  shift 2
  cl_ns "$CL_NETNS" curl -sS --max-time 5 --cacert "$dir/cluster/ca.pem" \
    -H "Authorization: Bearer $(cat "$dir/cluster/admin-token")" "$@" \
    "$CL_APISERVER_URL$path"
}

cl_fail() { # <workdir> <message>: stop what was started, keep logs, exit
  kc_log "ERROR: $2"
  cl_stop "$1" || true
  kc_die "start failed; logs in $1"
}

# cl_wait <seconds> <what> <pidfile|""> <marker> <cmd...>: poll cmd until it
# succeeds; fail early if the daemon behind pidfile dies.
cl_wait() {
  local timeout=$1 what=$2 pidfile=$3 marker=$4 deadline
  shift 4
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pidfile" ] && ! kc_pid_alive "$pidfile" "$marker"; then
      kc_log "ERROR: $(basename "$pidfile" .pid) exited while waiting for $what"
      tail -n 30 "${pidfile%.pid}.log" >&2 || true
      return 1
    fi
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  kc_log "ERROR: timed out after ${timeout}s waiting for $what"
  [ -z "$pidfile" ] || tail -n 30 "${pidfile%.pid}.log" >&2 || true
  return 1
}

# ------------------------------------------------------------------- netns

cl_netns_up() {
  local ns=$1
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up &&
    ip -n "$ns" link add n0 type veth peer name n1 &&
    ip -n "$ns" addr add "$CL_NODE_IP/32" dev n0 &&
    ip -n "$ns" link set n0 up &&
    ip -n "$ns" link set n1 up
}

# ----------------------------------------------------------------- dnsmasq

# dns-hosts (caller's, optional) -> dns/hosts (what dnsmasq reads).
cl_dns_sync() {
  local dir=$1
  mkdir -p "$dir/dns"
  if [ -f "$dir/dns-hosts" ]; then
    cp "$dir/dns-hosts" "$dir/dns/hosts.tmp"
  else
    : >"$dir/dns/hosts.tmp"
  fi
  mv "$dir/dns/hosts.tmp" "$dir/dns/hosts"
}

cl_dnsmasq_start() {
  local dir=$1
  cl_dns_sync "$dir"
  # Authoritative for nothing, forwards nowhere: names in dns/hosts get
  # their A record, everything else (cluster.local included) NXDOMAIN.
  cat >"$dir/dnsmasq.conf" <<EOF
port=53
listen-address=$CL_NODE_IP
bind-interfaces
no-resolv
no-poll
no-hosts
addn-hosts=$dir/dns/hosts
local=/#/
user=root
group=root
pid-file=
log-facility=-
log-queries
EOF
  : >"$dir/dnsmasq.log"
  kc_spawn dnsmasq "$dir" dnsmasq --keep-in-foreground --conf-file="$dir/dnsmasq.conf" || return 1
  cl_wait 10 "dnsmasq on $CL_NODE_IP:53" "$dir/dnsmasq.pid" "$dir/" \
    kc_in_ns sh -c "ss -Hlun 'sport = :53' | grep -qF '$CL_NODE_IP:53'"
}

cl_dns_reload() {
  local dir
  dir=$(cl_abs "$1")
  cl_dns_sync "$dir"
  if kc_pid_alive "$dir/dnsmasq.pid" "$dir/"; then
    kill -HUP "$(cat "$dir/dnsmasq.pid")" # re-reads addn-hosts
  fi
}

# -------------------------------------------------------------- containerd

cl_containerd_start() {
  local dir=$1 c=$1/containerd
  mkdir -p "$c/root" "$c/state" "$c/opt" "$dir/cni/net.d" "$dir/cni/ipam"
  # A unix socket path is at most 107 bytes; ".ttrpc" is appended for one.
  [ ${#CL_CONTAINERD_SOCK} -le 100 ] || { kc_log "ERROR: workdir path too long for a socket: $CL_CONTAINERD_SOCK"; return 1; }
  cat >"$dir/cni/net.d/10-si-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "si-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$CL_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
EOF
  # Only what differs from containerd's defaults. restrict_oom_score_adj:
  # this sandbox may not lower oom_score_adj; without it every pod sandbox
  # fails with runc's "can't get final child's PID from pipe: EOF".
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"

[grpc]
  address = "$CL_CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
EOF
  : >"$c/containerd.log"
  # kc_spawn writes <dir>/<name>.{log,pid}: containerd's go under containerd/.
  kc_spawn containerd "$c" containerd --config "$c/config.toml" || return 1
  cl_wait 30 "containerd" "$c/containerd.pid" "$dir/" \
    ctr --address "$CL_CONTAINERD_SOCK" version
}

# cl_import <workdir> <tar...>: load docker-archive tars into the k8s.io
# namespace (the one the CRI plugin, hence kubelet, uses).
cl_import() {
  local dir t
  dir=$(cl_abs "$1")
  shift
  local sock=$dir/containerd/containerd.sock
  [ -S "$sock" ] || kc_die "no containerd socket at $sock (cluster not started?)"
  for t in "$@"; do
    ctr --address "$sock" -n k8s.io images import "$t" >&2 \
      || kc_die "import of $t failed"
  done
}

# ------------------------------------------------------ control plane + node

cl_controllers_start() {
  local dir=$1 bin=$2 k=$1/cluster
  : >"$dir/controller-manager.log"
  # nodeipam off: the bridge conflist's fixed range gives pod IPs, no podCIDR.
  # The private key signs ServiceAccount token Secrets; without them the
  # ServiceAccount admission plugin (on) refuses every pod.
  kc_spawn controller-manager "$dir" "$bin/kube-controller-manager" \
    --kubeconfig="$k/kubeconfig" \
    --authentication-kubeconfig="$k/kubeconfig" \
    --authorization-kubeconfig="$k/kubeconfig" \
    --controllers='*,-nodeipam' \
    --leader-elect=false \
    --port=0 --secure-port=0 \
    --service-account-private-key-file="$k/sa.key" \
    --root-ca-file="$k/ca.pem" \
    --cluster-signing-cert-file="$k/ca.pem" \
    --cluster-signing-key-file="$k/ca-key.pem" \
    --service-cluster-ip-range="$KC_SERVICE_CIDR" \
    --use-service-account-credentials=false || return 1
  : >"$dir/scheduler.log"
  kc_spawn scheduler "$dir" "$bin/kube-scheduler" \
    --kubeconfig="$k/kubeconfig" \
    --authentication-kubeconfig="$k/kubeconfig" \
    --authorization-kubeconfig="$k/kubeconfig" \
    --leader-elect=false \
    --port=0 --secure-port=0 || return 1
}

cl_kubelet_start() {
  local dir=$1 bin=$2 kd=$1/kubelet
  mkdir -p "$kd/root"
  # What pods with dnsPolicy Default (and kubelet's own merge) see.
  echo "nameserver $CL_NODE_IP" >"$kd/resolv.conf"
  cat >"$kd/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
clusterDNS:
- $CL_NODE_IP
clusterDomain: cluster.local
resolvConf: $kd/resolv.conf
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
EOF
  : >"$kd/kubelet.log"
  kc_spawn kubelet "$kd" "$bin/kubelet" \
    --config="$kd/config.yaml" \
    --kubeconfig="$dir/cluster/kubeconfig" \
    --container-runtime=remote \
    --container-runtime-endpoint="unix://$CL_CONTAINERD_SOCK" \
    --root-dir="$kd/root" \
    --cert-dir="$kd/pki" \
    --hostname-override="$CL_NODE_NAME" \
    --node-ip="$CL_NODE_IP" \
    --v=1 || return 1
}

cl_node_ready() {
  cl_api "$1" "/api/v1/nodes/$CL_NODE_NAME" -f |
    jq -e '.status.conditions[]? | select(.type=="Ready") | .status=="True"' >/dev/null
}

# The token Secret must exist too: ServiceAccount admission (1.20, no bound
# tokens by default) rejects pods of an SA without one.
cl_default_sa_ready() {
  cl_api "$1" /api/v1/namespaces/default/serviceaccounts/default -f |
    jq -e '(.secrets // []) | length > 0' >/dev/null
}

# No kube-proxy: make the `kubernetes` Service (10.0.0.1:443) reach the
# apiserver anyway, so in-cluster clients (KUBERNETES_SERVICE_HOST) work.
# Best effort: only warn if this kernel has no nat table.
cl_service_dnat() {
  local port=$1
  # Host-side processes in the namespace need a route for the DNAT to apply
  # (OUTPUT nat runs after routing); n0's peer n1 is a dead end.
  kc_in_ns ip route add "$KC_SERVICE_CIDR" dev n0 2>/dev/null || true
  kc_in_ns iptables -t nat -A PREROUTING -d "$KC_SERVICE_IP/32" -p tcp --dport 443 \
    -j DNAT --to-destination "$CL_NODE_IP:$port" 2>/dev/null &&
    kc_in_ns iptables -t nat -A OUTPUT -d "$KC_SERVICE_IP/32" -p tcp --dport 443 \
      -j DNAT --to-destination "$CL_NODE_IP:$port" 2>/dev/null ||
    kc_log "warning: no iptables nat in the namespace; 10.0.0.1:443 routes nowhere"
}

# ------------------------------------------------------------------ start

cl_start() {
  local dir bin t0 port
  case $1 in *[[:space:]]*) kc_die "workdir must not contain whitespace: '$1'" ;; esac
  dir=$(cl_abs "$1")
  t0=$(date +%s)
  CL_NETNS=$(cl_netns_name "$dir")
  CL_CONTAINERD_SOCK=$dir/containerd/containerd.sock

  if [ -s "$dir/env" ] && kc_pid_alive "$dir/kubelet/kubelet.pid" "$dir/" &&
    kc_pid_alive "$dir/cluster/apiserver.pid" "$dir/"; then
    kc_log "already running in $dir"
    return 0
  fi
  # A half-started or crashed previous run: clear it, then start from empty
  # state (certificates and keys in cluster/ are kept).
  cl_stop "$dir"

  for t in etcd containerd runc ctr dnsmasq nsenter ip iptables jq curl openssl; do
    command -v "$t" >/dev/null || kc_die "$t missing (run tests/cluster/install-deps.sh)"
  done
  [ -x /usr/lib/cni/bridge ] || kc_die "CNI plugins missing (containernetworking-plugins)"
  bin=$(kc_kube_bin)
  export KUBE_BIN_DIR=$bin

  rm -rf --one-file-system "$dir/cluster/etcd" "$dir/containerd" "$dir/kubelet" "$dir/cni" "$dir/dns"
  echo "$CL_NETNS" >"$dir/netns"

  kc_log "network namespace $CL_NETNS ($CL_NODE_IP)"
  cl_netns_up "$CL_NETNS" || cl_fail "$dir" "cannot set up network namespace $CL_NETNS"
  export KC_NETNS=$CL_NETNS

  cl_dnsmasq_start "$dir" || cl_fail "$dir" "dnsmasq did not start"

  # etcd + apiserver via lib.sh, in the namespace, ServiceAccount admission on.
  KC_BIND_ADDRESS=0.0.0.0 KC_ADVERTISE_ADDRESS=$CL_NODE_IP \
    KC_EXTRA_SANS="IP:$CL_NODE_IP" KC_DISABLE_ADMISSION="" \
    KC_APISERVER_ARGS="--enable-aggregator-routing=true --kubelet-preferred-address-types=InternalIP ${KC_APISERVER_ARGS:-}" \
    kc_start "$dir/cluster" || cl_fail "$dir" "etcd/kube-apiserver did not start"
  # (kc_start exits the script on failure; cluster.sh's EXIT trap then runs
  # cl_stop. Reaching here means the apiserver is ready.)
  CL_APISERVER_URL=$(sed -n 's/^APISERVER_URL=//p' "$dir/cluster/env")
  port=${CL_APISERVER_URL##*:}
  cl_service_dnat "$port"

  kc_log "starting containerd"
  cl_containerd_start "$dir" || cl_fail "$dir" "containerd did not start"
  kc_log "importing k8s.gcr.io/pause:3.2"
  "$KC_LIB_DIR/../images/build.sh" --only pause "$dir/images" >/dev/null &&
    cl_import "$dir" "$dir/images/pause.tar" || cl_fail "$dir" "pause image"

  kc_log "starting kube-controller-manager, kube-scheduler"
  cl_controllers_start "$dir" "$bin" || cl_fail "$dir" "controllers did not start"
  kc_log "starting kubelet"
  cl_kubelet_start "$dir" "$bin" || cl_fail "$dir" "kubelet did not start"

  cl_wait 120 "node $CL_NODE_NAME Ready" "$dir/kubelet/kubelet.pid" "$dir/" cl_node_ready "$dir" ||
    cl_fail "$dir" "node not Ready (log: $dir/kubelet/kubelet.log)"
  cl_wait 60 "ServiceAccount default/default with its token" "$dir/controller-manager.pid" "$dir/" \
    cl_default_sa_ready "$dir" || cl_fail "$dir" "no default ServiceAccount token"
  kc_pid_alive "$dir/scheduler.pid" "$dir/" || cl_fail "$dir" "kube-scheduler exited (log: $dir/scheduler.log)"

  local url="https://$CL_NODE_IP:$port"
  kc_write_kubeconfig "$dir/kubeconfig" "$url" "$dir/cluster/ca.pem" "$(cat "$dir/cluster/admin-token")"
  cat >"$dir/env.tmp" <<EOF
KUBECONFIG=$dir/kubeconfig
NETNS=$CL_NETNS
CONTAINERD_SOCK=$CL_CONTAINERD_SOCK
CONTAINERD_NAMESPACE=k8s.io
NODE_IP=$CL_NODE_IP
NODE_NAME=$CL_NODE_NAME
APISERVER_URL=$url
CLUSTER_CA=$dir/cluster/ca.pem
CLUSTER_CA_KEY=$dir/cluster/ca-key.pem
SA_PUB=$dir/cluster/sa.pub
DNS_HOSTS=$dir/dns-hosts
CLUSTER_DIR=$dir
EOF
  mv "$dir/env.tmp" "$dir/env"
  kc_log "ready in $(( $(date +%s) - t0 )) s: $url in netns $CL_NETNS (env: $dir/env)"
}

# ------------------------------------------------------------------- stop

# Network namespaces of this cluster's pods: the peers of the pod veths on
# cni0, plus whatever containerd still knows about (if it is up).
cl_pod_netns() {
  local dir=$1 ns=$2 id
  if [ -e "/run/netns/$ns" ]; then
    ip -n "$ns" -o link show type veth 2>/dev/null |
      sed -nE 's/.* link-netns (cni-[0-9a-f-]+).*/\1/p'
  fi
  if [ -S "$dir/containerd/containerd.sock" ]; then
    for id in $(timeout 10 ctr --address "$dir/containerd/containerd.sock" -n k8s.io c ls -q 2>/dev/null); do
      timeout 10 ctr --address "$dir/containerd/containerd.sock" -n k8s.io c info "$id" 2>/dev/null |
        jq -r '.Spec.linux.namespaces[]? | select(.type=="network") | .path // empty' |
        sed -nE 's|^/(var/)?run/netns/(cni-[0-9a-f-]+)$|\2|p'
    done
  fi
  cat "$dir/pod-netns" 2>/dev/null || true
}

# Kill every process inside one of the given network namespaces (by inode),
# except this shell and its ancestors (stop may itself run in the namespace).
cl_kill_in_netns() {
  local inodes="" n p ino killed=0 keep=" " q=$BASHPID
  while [ -n "$q" ] && [ "$q" -gt 1 ]; do
    keep="$keep$q "
    q=$(awk '{print $4}' "/proc/$q/stat" 2>/dev/null)
  done
  for n in "$@"; do
    [ -e "/run/netns/$n" ] || continue
    inodes="$inodes $(stat -L -c %i "/run/netns/$n" 2>/dev/null)"
  done
  [ -n "${inodes// /}" ] || return 0
  for p in /proc/[0-9]*; do
    ino=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
    case " $inodes " in *" $ino "*)
      case $keep in *" ${p#/proc/} "*) continue ;; esac
      kc_log "killing leftover pid ${p#/proc/} ($(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-80))"
      kill -KILL "${p#/proc/}" 2>/dev/null && killed=1 ;;
    esac
  done
  [ "$killed" = 0 ] || sleep 0.5
}

cl_stop() {
  local dir ns sock c pods p id mp
  [ -d "$1" ] || return 0
  dir=$(cl_abs "$1")
  c=$dir/containerd
  sock=$c/containerd.sock
  ns=$(cat "$dir/netns" 2>/dev/null || cl_netns_name "$dir")
  rm -f "$dir/env"

  # 1. kubelet first, or it restarts what we stop below.
  kc_stop_pid "$dir/kubelet/kubelet.pid" "$dir/"
  kc_stop_pid "$dir/controller-manager.pid" "$dir/" 10
  kc_stop_pid "$dir/scheduler.pid" "$dir/" 10

  # 2. The pods: remember their netns, then kill their tasks via containerd
  #    (killing a shim would orphan the container's processes instead).
  pods=$(cl_pod_netns "$dir" "$ns" | sort -u)
  [ -z "$pods" ] || echo "$pods" >"$dir/pod-netns"
  if kc_pid_alive "$c/containerd.pid" "$dir/" && [ -S "$sock" ]; then
    for id in $(timeout 10 ctr --address "$sock" -n k8s.io t ls -q 2>/dev/null); do
      timeout 10 ctr --address "$sock" -n k8s.io t kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(timeout 10 ctr --address "$sock" -n k8s.io t ls -q 2>/dev/null); do
      timeout 20 ctr --address "$sock" -n k8s.io t rm -f "$id" >/dev/null 2>&1 || true
    done
  fi

  # 3. containerd, then shims it leaves behind (their cmdline names our socket).
  kc_stop_pid "$c/containerd.pid" "$dir/" 20
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "-address $sock " || continue
    kc_log "killing shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done

  # 4. dnsmasq, apiserver, etcd.
  kc_stop_pid "$dir/dnsmasq.pid" "$dir/" 5
  kc_stop "$dir/cluster"

  # 5. Anything still running in our namespaces (container processes whose
  #    shim was gone, commands started via in-cluster-ns.sh).
  # shellcheck disable=SC2086
  cl_kill_in_netns "$ns" $pods

  # 6. Mounts under the workdir (emptyDirs, tokens, rootfs overlays, shm),
  #    deepest first, lazily.
  for mp in $(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -ru); do
    umount -l "$mp" 2>/dev/null || true
  done

  # 7. Namespaces: the pods', then ours.
  for p in $pods; do
    if [ -e "/run/netns/$p" ]; then
      umount -l "/run/netns/$p" 2>/dev/null || true
      rm -f "/run/netns/$p"
    fi
  done
  for p in $pods; do
    [ ! -e "/run/netns/$p" ] || { kc_log "warning: cannot remove /run/netns/$p"; echo "$p"; }
  done >"$dir/pod-netns.tmp"
  if [ -s "$dir/pod-netns.tmp" ]; then mv "$dir/pod-netns.tmp" "$dir/pod-netns"; else rm -f "$dir/pod-netns.tmp" "$dir/pod-netns"; fi
  if [ -e "/run/netns/$ns" ]; then
    kc_log "deleting network namespace $ns"
    ip netns del "$ns" 2>/dev/null || { umount -l "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
  fi

  # 8. Kubelet's fixed-path leftovers of our pods (/var/log/pods/<ns>_<name>_<uid>).
  if [ -d "$dir/kubelet/root/pods" ]; then
    for p in "$dir"/kubelet/root/pods/*/; do
      [ -d "$p" ] || continue
      p=$(basename "$p")
      rm -rf /var/log/pods/*_"$p"
      find /var/log/containers -maxdepth 1 -name "*" -lname "/var/log/pods/*_$p/*" -delete 2>/dev/null || true
    done
  fi
  return 0
}

# cl_leftovers <workdir>: print what of this cluster is still there
# (processes naming the workdir, mounts under it, its namespaces, container
# shims of its containerd); status 1 if anything.
cl_leftovers() {
  local dir ns found=0 p cmd
  dir=$(cl_abs "$1")
  ns=$(cat "$dir/netns" 2>/dev/null || cl_netns_name "$dir")
  for p in /proc/[0-9]*; do
    [ "$(awk '{print $3}' "$p/stat" 2>/dev/null)" != Z ] || continue
    cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    case $cmd in *"$dir/"*)
      [ "${p#/proc/}" != "$$" ] && [ "${p#/proc/}" != "$BASHPID" ] || continue
      echo "process ${p#/proc/}: ${cmd:0:100}"; found=1 ;;
    esac
  done
  if awk -v d="$dir/" 'index($5, d) == 1 {print "mount " $5; f=1} END {exit !f}' /proc/self/mountinfo; then
    found=1
  fi
  if [ -e "/run/netns/$ns" ]; then echo "netns $ns"; found=1; fi
  for p in $(cat "$dir/pod-netns" 2>/dev/null); do
    if [ -e "/run/netns/$p" ]; then echo "netns $p"; found=1; fi
  done
  return $(( found ))
}
