#!/usr/bin/env bash
# One TLS stack (rustls on aws-lc): fails when any crate of the workspace
# pulls in ring, OpenSSL or a second rustls (the AWS SDK's default features
# bring rustls 0.21 with ring).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
for crate in ring openssl-sys openssl native-tls; do
  if out="$(cargo tree --workspace --all-features -e normal,build -i "$crate" 2>/dev/null)" && [[ -n "$out" ]]; then
    echo "one-tls-stack: $crate is in the build:" >&2
    echo "$out" | head -20 >&2
    status=1
  fi
done
rustls="$(cargo tree --workspace --all-features -e normal --prefix none | grep -E '^rustls v' | cut -d' ' -f1-2 | sort -u)"
if [[ "$(wc -l <<<"$rustls")" -ne 1 ]]; then
  echo "one-tls-stack: not exactly one rustls:" >&2
  echo "$rustls" >&2
  status=1
fi
[[ $status -eq 0 ]] && echo "one-tls-stack: $rustls, no ring or OpenSSL"
exit $status
