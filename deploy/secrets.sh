#!/usr/bin/env bash
# deploy/secrets.sh [FILE]: writes FILE (default deploy/.env; mode 0600) with fresh random secrets for
# deploy/compose.yml, which refuses to start without them:
#   DATACAT_READ_TOKEN, DATACAT_WRITE_TOKEN (the query service's tokens),
#   DATACAT_CLICKHOUSE_PASSWORD (ingest's and query's ClickHouse user),
#   DATACAT_NATS_{INGEST,QUERY,DAEMON}_PASSWORD (the NATS users of deploy/nats/auth.conf;
#   applications' daemons connect as datacat-daemon with the last one),
#   DATACAT_SESSION_SECRET (signs the dashboard's sign-in cookies).
# An existing deploy/.env is kept as it is (delete it to make new secrets; changing a token
# signs out every browser signed in with the old one). Compose reads deploy/.env by itself.
set -euo pipefail
env_file="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.env}"
if [ -e "$env_file" ]; then
    echo "[datacat] $env_file exists; keeping it" >&2
    exit 0
fi
secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
{
    echo "DATACAT_READ_TOKEN=$(secret)"
    echo "DATACAT_WRITE_TOKEN=$(secret)"
    echo "DATACAT_CLICKHOUSE_PASSWORD=$(secret)"
    echo "DATACAT_NATS_INGEST_PASSWORD=$(secret)"
    echo "DATACAT_NATS_QUERY_PASSWORD=$(secret)"
    echo "DATACAT_NATS_DAEMON_PASSWORD=$(secret)"
    echo "DATACAT_SESSION_SECRET=$(secret)"
} >"$env_file"
echo "[datacat] wrote $env_file (0600): the read token signs in at the dashboard; clients writing directly use the write token" >&2
