# shellcheck shell=bash
# Vault on the real cluster, sourced by pods.sh (one cluster serves every
# store): the name vault.secret-injector-e2e.internal (and
# db.secret-injector-e2e.internal) -> 10.77.0.3 in the cluster's DNS, a
# certificate for it from a test CA the sidecar image trusts, and a
# PostgreSQL (Debian's) on 10.77.0.3:5432 and 127.0.0.1:5432 in the
# cluster's namespace for the database engine's dynamic credentials. The
# Rust fixture (tests/e2e/src/store/vault.rs) runs OpenBao itself (`bao
# server` with raft storage and that certificate, so it can be killed and
# started again with its state), initialises, unseals and configures it
# with hvac: kubernetes auth against the cluster's apiserver, kv-v2, the
# database engine. The checks are tests/e2e/tests/pods/vault.rs.
#
#   vault_certs <workdir>   before e2e_images: the CA and OpenBao's certificate
#   vault_up                the address, the names, PostgreSQL; exports E2E_VAULT_*
#   vault_down              PostgreSQL stopped, its directory removed

VAULT_IP=10.77.0.3
VAULT_HOST=vault.secret-injector-e2e.internal
VAULT_PORT=8200
VAULT_DB_HOST=db.secret-injector-e2e.internal

vault_certs() {
  local d=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=secret-injector-e2e-vault-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$d/vault-ca.key" -out "$d/vault-ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$VAULT_HOST" \
    -keyout "$d/vault.key" -out "$d/vault.csr" 2>/dev/null
  # The IP too: the fixture (in the namespace, with the host's resolver) calls it there.
  printf '%s\n' "subjectAltName=DNS:$VAULT_HOST,IP:$VAULT_IP" \
    'basicConstraints=critical,CA:FALSE' 'extendedKeyUsage=serverAuth' >"$d/vault.ext"
  openssl x509 -req -in "$d/vault.csr" -CA "$d/vault-ca.pem" -CAkey "$d/vault-ca.key" \
    -CAcreateserial -days 2 -extfile "$d/vault.ext" -out "$d/vault.pem" 2>/dev/null
}

vault_up() {
  local pg bin
  E2E_VAULT_VENV=${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/openbao-venv
  tests/venv.sh openbao-venv tests/openbao/requirements.txt >/dev/null
  in_ns ip addr add "$VAULT_IP/32" dev lo
  echo "$VAULT_IP $VAULT_HOST $VAULT_DB_HOST" >>"$W/dns-hosts"
  tests/cluster/cluster.sh dns-reload "$W" >/dev/null

  # PostgreSQL as `postgres` (initdb refuses root), in a directory it owns
  # ($W is root's 0700): scram-sha-256 on loopback (OpenBao, the host's
  # checks), cleartext `password` from the pods' network, since the app's
  # client is busybox's nc (tests/e2e/tests/pods/pg-login.sh).
  pg=$(mktemp -d /tmp/secret-injector-pods-pg.XXXXXX)
  echo "$pg" >"$W/pg-dir"
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  openssl rand -hex 16 | tr -d '\n' >"$pg/pw"
  chown -R postgres:postgres "$pg"
  runuser -u postgres -- "$bin/initdb" -D "$pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$pg/pw" >"$pg/initdb.log" 2>&1
  { echo "host all all 10.88.0.0/24 password"; cat "$pg/data/pg_hba.conf"; } >"$pg/hba"
  install -o postgres -m 0600 "$pg/hba" "$pg/data/pg_hba.conf"
  in_ns runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -w -l "$pg/log" \
    -o "-p 5432 -k $pg -c listen_addresses=127.0.0.1,$VAULT_IP" start >/dev/null
  E2E_VAULT_PG_PW_FILE=$pg/pw
  E2E_VAULT_ADDRESS=https://$VAULT_HOST:$VAULT_PORT
  E2E_VAULT_LISTEN=$VAULT_IP:$VAULT_PORT
  export E2E_VAULT_VENV E2E_VAULT_PG_PW_FILE E2E_VAULT_ADDRESS E2E_VAULT_LISTEN
}

vault_down() {
  local pg
  pg=$(cat "$W/pg-dir" 2>/dev/null) || return 0
  [ -d "$pg/data" ] && in_ns runuser -u postgres -- \
    "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$pg" "$W/pg-dir"
}
