#!/bin/sh
# One-shot cluster bootstrap, run by the crdb-init service (cockroachdb/cockroach image): initialise the
# three-node cluster once (a second run finds it initialised and goes on), then create the database the
# migrations make multi-region. Safe to run at every `docker compose up`.
set -eu
HOST="${CRDB_HOST:-crdb-eu:26257}"
DATABASE="${CRDB_DATABASE:-autospeak}"

tries=0
until out=$(cockroach init --insecure --host="$HOST" 2>&1) \
    || printf '%s' "$out" | grep -q "already been initialized"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "cockroach init failed: $out" >&2
    exit 1
  fi
  sleep 2  # the nodes are still starting
done
cockroach sql --insecure --host="$HOST" -e "CREATE DATABASE IF NOT EXISTS \"$DATABASE\""
echo "cluster ready; database $DATABASE exists"
