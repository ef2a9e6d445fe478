#!/usr/bin/env bash
# "provided" TLS mode: issues a CA and a serving certificate for the webhook's
# Service DNS names with openssl, writes them to a directory, and prints the
# base64 caBundle for the MutatingWebhookConfiguration.
#
#   certs/issue.sh [--namespace secret-injector] [--service secret-injector]
#                  [--days 365] [--out ./webhook-certs]
#
# Then:
#   kubectl -n secret-injector create secret tls secret-injector-tls \
#     --cert=webhook-certs/tls.crt --key=webhook-certs/tls.key
#   and run the webhook with --tls-cert-file/--tls-key-file on that Secret's
#   mount (it reloads them when they change), caBundle = the printed line.
# The CA key stays in the output directory: keep it, or delete it once the
# certificate is issued (a new one then needs a new CA and caBundle).
set -euo pipefail

namespace=secret-injector service=secret-injector days=365 out=./webhook-certs
while [ $# -gt 0 ]; do
  case $1 in
    --namespace) namespace=$2; shift 2 ;;
    --service) service=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "issue.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "issue.sh: openssl is needed" >&2; exit 1; }
mkdir -p "$out"
umask 077
names="DNS:$service,DNS:$service.$namespace,DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.cluster.local"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $((days * 3)) \
  -subj "/CN=secret-injector webhook CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$service.$namespace.svc" -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -out "$out/tls.crt" \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$names") 2>/dev/null
rm -f "$out/tls.csr" "$out/ca.srl"
openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null
echo "issue.sh: $out/tls.crt for $names, valid $days days; caBundle:" >&2
base64 -w0 "$out/ca.crt"
echo
