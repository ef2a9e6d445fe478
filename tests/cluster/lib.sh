# shellcheck shell=bash
# Functions of the test cluster harness, meant to be sourced:
#
#   source tests/cluster/lib.sh
#   kc_start <workdir>     # certs, etcd, kube-apiserver on loopback, kubeconfig, env
#   kc_stop  <workdir>     # stop what kc_start started
#
# The building blocks (kc_free_port, kc_spawn, kc_stop_pid, kc_issue_cert,
# kc_write_kubeconfig, ...) are separate so a full-cluster script (kubelet,
# containerd, a network namespace) can reuse them.
#
# Knobs (environment):
#   KUBE_BIN_DIR        dir with kube-apiserver & co; default: build-kube.sh's
#                       output (builds once, then a fast cache hit)
#   KC_NETNS            if set, daemons and health checks run in the network
#                       namespace /run/netns/$KC_NETNS (via nsenter, not
#                       `ip netns exec`, which remounts /sys and hides cgroups)
#   KC_BIND_ADDRESS     apiserver --bind-address       (default 127.0.0.1)
#   KC_ADVERTISE_ADDRESS apiserver --advertise-address (default 127.0.0.1)
#   KC_DISABLE_ADMISSION apiserver --disable-admission-plugins (default
#                       ServiceAccount: without kube-controller-manager no
#                       token Secrets appear and pods could not be created)
#   KC_EXTRA_SANS       extra subjectAltName entries for the serving cert,
#                       comma-separated, e.g. "IP:10.77.0.1"
#   KC_APISERVER_ARGS   extra kube-apiserver flags (word-split)
#   KC_READY_TIMEOUT    seconds to wait for /readyz (default 90)
#
# Workdir layout: ca.pem ca-key.pem apiserver.pem apiserver-key.pem sa.key
# sa.pub tokens.csv admin-token etcd/ etcd.log etcd.pid apiserver.log
# apiserver.pid kubeconfig env.

KC_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Kubernetes' default service CIDR of our apiserver; its first IP is the
# `kubernetes` Service's ClusterIP, which goes into the serving cert.
KC_SERVICE_CIDR=10.0.0.0/24
KC_SERVICE_IP=10.0.0.1

kc_log() { echo "cluster: $*" >&2; }

# kc_workdir_done <dir> <rc> <label>: a passed run's temp dir goes (each
# holds 100-200 MB; CI once ran out of disk on them), a failed one stays and
# is named. A dir the caller chose ($E2E_WORKDIR) always stays.
kc_workdir_done() {
  local dir=$1 rc=$2 label=$3
  [ -z "${E2E_WORKDIR:-}" ] || return 0
  if [ "$rc" -eq 0 ]; then
    rm -rf --one-file-system "$dir"
  else
    echo "$label: logs kept in $dir" >&2
  fi
}
kc_die() { kc_log "ERROR: $*"; exit 1; }

# Run a command in the cluster's network namespace, or directly.
kc_in_ns() {
  if [ -n "${KC_NETNS:-}" ]; then
    nsenter --net="/run/netns/$KC_NETNS" "$@"
  else
    "$@"
  fi
}

# Directory with the Kubernetes binaries (built/cached by build-kube.sh).
kc_kube_bin() {
  if [ -z "${KUBE_BIN_DIR:-}" ]; then
    KUBE_BIN_DIR="$("$KC_LIB_DIR/build-kube.sh" | tail -n1)"
  fi
  [ -x "$KUBE_BIN_DIR/kube-apiserver" ] || kc_die "no kube-apiserver in '$KUBE_BIN_DIR'"
  echo "$KUBE_BIN_DIR"
}

# Print a TCP port nobody listens on, in 20000-32767 (below Linux's ephemeral
# range, so outgoing connections won't take it meanwhile). Ports given as
# arguments are skipped, so several calls can pick distinct ports before any
# of them is bound. Not hard-coding 2379/6443 lets runs coexist with other
# etcds/apiservers and with each other.
kc_free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12768 ))
    case " $* " in *" $p "*) continue ;; esac
    # ss filter: any listening TCP socket on that port, any address.
    if [ -z "$(kc_in_ns ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  kc_die "no free port found"
}

# True if the pid in <pidfile> is a live (non-zombie) process whose command
# line contains <marker> (the workdir), so a recycled pid is never mistaken
# for ours. Pass the workdir with a trailing slash so /tmp/x never matches
# /tmp/x2.
kc_pid_alive() {
  local pidfile=$1 marker=$2 pid state cmd i
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  for ((i = 0; i < 100; i++)); do
    [ -r "/proc/$pid/cmdline" ] || return 1
    # Daemons outlive the shell that started them; if nothing reaps them they
    # linger as zombies, which `kill -0` would still report as alive.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$state" != Z ] || return 1
    cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)
    # Empty while exec swaps in a big binary (kube-apiserver, kubelet): a
    # live process, not a dead one; look again. Taking that for a death made
    # a start fail now and then with an empty log.
    [ -z "$cmd" ] || break
    sleep 0.02
  done
  case $cmd in *"$marker"*) return 0 ;; *) return 1 ;; esac
}

# kc_spawn <name> <workdir> <cmd...>: start a daemon in the background, in its
# own session (so a Ctrl-C or hangup of the caller does not hit it), output to
# <workdir>/<name>.log, pid to <workdir>/<name>.pid.
kc_spawn() {
  local name=$1 dir=$2 target pid i exe launchers
  shift 2
  # The binary the pid will finally run (after setsid's and nsenter's execs),
  # and those it runs before (this shell's fork, setsid, nsenter).
  target=$(readlink -f "$(command -v "$1" || echo "$1")")
  launchers=" $(readlink "/proc/$$/exe") $(readlink -f "$(command -v setsid)") $(readlink -f "$(command -v nsenter)") "
  if [ -n "${KC_NETNS:-}" ]; then
    set -- nsenter --net="/run/netns/$KC_NETNS" "$@"
  fi
  # setsid and nsenter exec the command, so $! is the daemon's own pid.
  setsid "$@" >>"$dir/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  # Until the last exec is done, the pid's cmdline is this script's (or
  # empty, mid-exec of a big binary), and kc_pid_alive, which looks for the
  # workdir in it, would call the daemon dead. Wait (up to 5 s) until it
  # runs the target (or anything else, say a script's interpreter).
  for ((i = 0; i < 500; i++)); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || break # gone already
    [ "$exe" != "$target" ] || break
    case $launchers in *" $exe "*) ;; *) break ;; esac
    sleep 0.01
  done
}

# kc_stop_pid <pidfile> <marker> [timeout-s]: SIGTERM, wait, then SIGKILL.
kc_stop_pid() {
  local pidfile=$1 marker=$2 timeout=${3:-30} pid i
  if kc_pid_alive "$pidfile" "$marker"; then
    pid=$(cat "$pidfile")
    kc_log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      kc_pid_alive "$pidfile" "$marker" || break
      sleep 0.1
    done
    if kc_pid_alive "$pidfile" "$marker"; then
      kc_log "$(basename "$pidfile" .pid) ignored SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        kc_pid_alive "$pidfile" "$marker" || break
        sleep 0.1
      done
    fi
    # Reap it if it happens to be our child (same shell started it).
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- certificates

# kc_gen_ca <dir>: self-signed CA ca.pem/ca-key.pem (kept if present, so a
# restart keeps kubeconfigs and caBundles valid).
kc_gen_ca() {
  local dir=$1
  [ -s "$dir/ca.pem" ] && [ -s "$dir/ca-key.pem" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=secret-injector-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
}

# kc_issue_cert <dir> <name> <CN> <SANs|""> [serverAuth|clientAuth|both] [O]
# writes <dir>/<name>.pem and <name>-key.pem signed by <dir>/ca.pem.
# SANs in openssl syntax: "IP:127.0.0.1,DNS:localhost".
kc_issue_cert() {
  local dir=$1 name=$2 cn=$3 sans=$4 usage=${5:-serverAuth} org=${6:-}
  local eku subj ext
  [ -s "$dir/$name.pem" ] && [ -s "$dir/$name-key.pem" ] && return 0
  case $usage in
    serverAuth) eku=serverAuth ;;
    clientAuth) eku=clientAuth ;;
    both) eku=serverAuth,clientAuth ;;
    *) kc_die "kc_issue_cert: bad usage $usage" ;;
  esac
  subj="/CN=$cn"
  [ -z "$org" ] || subj="/O=$org$subj"
  ext="$dir/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "$subj" \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 3650 -in "$dir/$name.csr" \
    -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
}

# kc_gen_sa_keys <dir>: RSA key pair that signs/verifies service-account tokens.
kc_gen_sa_keys() {
  local dir=$1
  [ -s "$dir/sa.key" ] && [ -s "$dir/sa.pub" ] && return 0
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
}

# kc_gen_tokens <dir>: static token file with an admin in system:masters
# (bypasses RBAC, like kind's admin). Token in <dir>/admin-token.
kc_gen_tokens() {
  local dir=$1
  [ -s "$dir/tokens.csv" ] && [ -s "$dir/admin-token" ] && return 0
  openssl rand -hex 32 >"$dir/admin-token"
  # token,user,uid,"groups"
  echo "$(cat "$dir/admin-token"),admin,admin,\"system:masters\"" >"$dir/tokens.csv"
}

# kc_write_kubeconfig <file> <server-url> <ca.pem> <token> [user]
kc_write_kubeconfig() {
  local file=$1 server=$2 ca=$3 token=$4 user=${5:-admin}
  (
    umask 077
    cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$ca")
users:
- name: $user
  user:
    token: $token
contexts:
- name: test
  context:
    cluster: test
    user: $user
    namespace: default
current-context: test
EOF
    mv "$file.tmp" "$file"
  )
}

# ------------------------------------------------------------------ daemons

# The start functions below return 1 (instead of exiting) on failure, so
# kc_start can stop what it had already started. They are called in a `||`
# context, where `set -e` is off: every step checks for itself.

# kc_etcd_start <workdir>: etcd on two free loopback ports; sets KC_ETCD_URL.
kc_etcd_start() {
  local dir=$1 client peer i
  client=$(kc_free_port) || return 1
  peer=$(kc_free_port "$client") || return 1
  KC_ETCD_URL="http://127.0.0.1:$client"
  kc_log "starting etcd on $KC_ETCD_URL"
  : >"$dir/etcd.log"
  # The initial-* flags must name the same peer URL, or etcd refuses to start
  # (their defaults assume port 2380).
  kc_spawn etcd "$dir" etcd \
    --name default \
    --data-dir "$dir/etcd" \
    --listen-client-urls "$KC_ETCD_URL" \
    --advertise-client-urls "$KC_ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" || return 1
  for ((i = 0; i < 300; i++)); do
    kc_pid_alive "$dir/etcd.pid" "$dir/" || {
      tail -n 30 "$dir/etcd.log" >&2
      kc_log "ERROR: etcd exited (log: $dir/etcd.log)"
      return 1
    }
    if kc_in_ns curl -fsS --max-time 2 "$KC_ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$dir/etcd.log" >&2
  kc_log "ERROR: etcd not healthy after 30 s (log: $dir/etcd.log)"
  return 1
}

# kc_apiserver_start <workdir>: kube-apiserver on a free port; sets
# KC_APISERVER_URL. Requires certs/keys/tokens and KC_ETCD_URL.
kc_apiserver_start() {
  local dir=$1 bin port i
  bin=$(kc_kube_bin) || return 1
  port=$(kc_free_port) || return 1
  KC_APISERVER_URL="https://127.0.0.1:$port"
  kc_log "starting kube-apiserver on $KC_APISERVER_URL"
  : >"$dir/apiserver.log"
  # shellcheck disable=SC2086 # KC_APISERVER_ARGS is word-split on purpose
  kc_spawn apiserver "$dir" "$bin/kube-apiserver" \
    --etcd-servers="$KC_ETCD_URL" \
    --secure-port="$port" \
    --insecure-port=0 \
    --bind-address="${KC_BIND_ADDRESS:-127.0.0.1}" \
    --advertise-address="${KC_ADVERTISE_ADDRESS:-127.0.0.1}" \
    --cert-dir="$dir/apiserver-certs" \
    --tls-cert-file="$dir/apiserver.pem" \
    --tls-private-key-file="$dir/apiserver-key.pem" \
    --client-ca-file="$dir/ca.pem" \
    --token-auth-file="$dir/tokens.csv" \
    --authorization-mode=RBAC \
    --disable-admission-plugins="${KC_DISABLE_ADMISSION-ServiceAccount}" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/sa.pub" \
    --service-account-signing-key-file="$dir/sa.key" \
    --api-audiences=https://kubernetes.default.svc,api://AzureADTokenExchange \
    --service-cluster-ip-range="$KC_SERVICE_CIDR" \
    ${KC_APISERVER_ARGS:-} || return 1
  kc_wait_ready "$dir" "$KC_APISERVER_URL"
}

# kc_wait_ready <workdir> <url>: poll /readyz until "ok" (KC_READY_TIMEOUT s).
kc_wait_ready() {
  local dir=$1 url=$2 timeout=${KC_READY_TIMEOUT:-90} deadline out
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kc_pid_alive "$dir/apiserver.pid" "$dir/"; then
      tail -n 40 "$dir/apiserver.log" >&2
      kc_log "ERROR: kube-apiserver exited during startup (log: $dir/apiserver.log)"
      return 1
    fi
    out=$(kc_in_ns curl -sS --max-time 3 --cacert "$dir/ca.pem" \
      -H "Authorization: Bearer $(cat "$dir/admin-token")" "$url/readyz" 2>/dev/null || true)
    [ "$out" = ok ] && return 0
    sleep 0.5
  done
  tail -n 40 "$dir/apiserver.log" >&2
  kc_log "ERROR: kube-apiserver not ready after ${timeout}s (log: $dir/apiserver.log)"
  return 1
}

# ------------------------------------------------------------- start / stop

# kc_start <workdir>: everything for a bare apiserver. Idempotent: if this
# workdir's apiserver is already running, it returns at once.
kc_start() {
  local dir=$1
  case $dir in *[[:space:]]*) kc_die "workdir must not contain whitespace: '$dir'" ;; esac
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  if kc_pid_alive "$dir/apiserver.pid" "$dir/" && [ -s "$dir/env" ]; then
    kc_log "already running in $dir"
    return 0
  fi
  # A half-started or crashed previous run: clear it before starting anew.
  kc_stop "$dir"

  # Fail early, not after certificate generation.
  command -v etcd >/dev/null || kc_die "etcd not installed (run tests/cluster/install-deps.sh)"
  KUBE_BIN_DIR=$(kc_kube_bin)

  kc_gen_ca "$dir"
  kc_issue_cert "$dir" apiserver kube-apiserver \
    "IP:127.0.0.1,DNS:localhost,IP:$KC_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc${KC_EXTRA_SANS:+,$KC_EXTRA_SANS}" \
    serverAuth
  kc_gen_sa_keys "$dir"
  kc_gen_tokens "$dir"

  # On failure, leave nothing running (logs stay for a post-mortem).
  if ! kc_etcd_start "$dir" || ! kc_apiserver_start "$dir"; then
    kc_stop "$dir"
    kc_die "start failed in $dir"
  fi

  kc_write_kubeconfig "$dir/kubeconfig" "$KC_APISERVER_URL" "$dir/ca.pem" "$(cat "$dir/admin-token")"
  # Plain KEY=value lines: `source`-able and readable as an env file.
  cat >"$dir/env.tmp" <<EOF
KUBECONFIG=$dir/kubeconfig
APISERVER_URL=$KC_APISERVER_URL
CLUSTER_CA=$dir/ca.pem
ETCD_URL=$KC_ETCD_URL
EOF
  mv "$dir/env.tmp" "$dir/env"
  kc_log "ready: $KC_APISERVER_URL (env: $dir/env)"
}

# kc_stop <workdir>: stop apiserver, then etcd (the apiserver needs etcd to
# shut down cleanly). Safe to call when nothing runs.
kc_stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  kc_stop_pid "$dir/apiserver.pid" "$dir/"
  kc_stop_pid "$dir/etcd.pid" "$dir/"
  rm -f "$dir/env"
}
