#!/bin/sh
# Entrypoint of the stand-in app image (tagged nginx:1.23.1 so the seed's
# manifests run unchanged). Serves nothing: every second it prints, each line
# prefixed with a UTC timestamp, the files in the secrets dir (name and
# contents; names starting with ".." - Kubernetes' atomic-writer internals -
# are skipped) and DB_USER / DB_PASS when they are set. Runs as any user.
#
# Line format (stable, tests grep it):
#   <ts> file <name>: <content line>      one per line of content
#   <ts> file <name> (empty)              for an empty file
#   <ts> dir <name>                       for a directory
#   <ts> env DB_USER=<value>
#   <ts> tick                             once per round, even with nothing to show
dir=${SECRETS_DIR:-/mnt/secrets-store}
interval=${INTERVAL:-1}

trap 'exit 0' TERM INT

while :; do
  ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  if [ -d "$dir" ]; then
    for f in "$dir"/* "$dir"/.[!.]*; do
      [ -e "$f" ] || continue # unmatched glob, or dangling symlink
      name=${f##*/}
      if [ -d "$f" ]; then
        echo "$ts dir $name"
      elif [ ! -s "$f" ]; then
        echo "$ts file $name (empty)"
      else
        while IFS= read -r line || [ -n "$line" ]; do
          echo "$ts file $name: $line"
        done <"$f"
      fi
    done
  fi
  [ -z "${DB_USER+x}" ] || echo "$ts env DB_USER=$DB_USER"
  [ -z "${DB_PASS+x}" ] || echo "$ts env DB_PASS=$DB_PASS"
  echo "$ts tick"
  sleep "$interval" &
  wait $! # so TERM is handled at once, not after the sleep
done
