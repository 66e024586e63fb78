#!/usr/bin/env bash
# `make dev`: the collector on a local PostgreSQL, with a generated local secret, a ready token
# and a curl line. Ctrl-C stops it cleanly (and the PostgreSQL it started, if it started one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${INSIDE_WITH_POSTGRES:-}" ]; then
  # Reuse a persistent dev cluster under target/pg-dev when no server is available.
  INSIDE_WITH_POSTGRES=1 exec scripts/with-postgres.sh --data "$root/target/pg-dev" --keep -- "$0" "$@"
fi

state="$root/target/dev"
mkdir -p "$state"
if [ -z "${COLLECTOR_SECRET_KEY:-}" ]; then
  [ -s "$state/secret" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$state/secret"
  COLLECTOR_SECRET_KEY=$(cat "$state/secret")
fi
export COLLECTOR_SECRET_KEY

# A database of its own on whatever server with-postgres found.
if [ -z "${DEV_DATABASE_URL:-}" ]; then
  dev_db=agent_platform_dev
  if ! psql "$DATABASE_URL" -XAtqc "select 1 from pg_database where datname = '$dev_db'" | grep -q 1; then
    psql "$DATABASE_URL" -XAtqc "create database $dev_db" >/dev/null
  fi
  DEV_DATABASE_URL="${DATABASE_URL%/*}/$dev_db"
fi
export DATABASE_URL=$DEV_DATABASE_URL
export COLLECTOR_ADDR=${COLLECTOR_ADDR:-127.0.0.1:8000}

echo "building the collector…" >&2
cargo build --quiet --release -p collector
bin="$root/target/release/collector"
token=$("$bin" token --sub dev --scope ingest --scope read --ttl 30d)

"$bin" serve &
collector=$!
trap 'kill -TERM $collector 2>/dev/null; wait $collector 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM

url="http://$COLLECTOR_ADDR"
for _ in $(seq 1 100); do
  curl -fsS "$url/health/ready" >/dev/null 2>&1 && break
  kill -0 $collector 2>/dev/null || { echo "the collector exited; see its log above" >&2; exit 1; }
  sleep 0.2
done

cat <<INFO

  collector   $url   (ready: $url/health/ready, metrics: $url/prometheus)
  database    ${DATABASE_URL}

  export TOKEN=$token

  curl -X POST $url/metrics \\
    -H "Authorization: Bearer \$TOKEN" -H "Content-Type: application/json" \\
    -d '{"agent_name":"test","metrics":{"x":1},"started_at":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","finished_at":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","error":null}'

  curl -H "Authorization: Bearer \$TOKEN" $url/runs

  Ctrl-C stops everything.

INFO
wait $collector
