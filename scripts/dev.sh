#!/usr/bin/env bash
# `make dev`: the platform on this machine: the collector on a local PostgreSQL, and the
# scheduler running schedules.toml's agents against it, with a generated local secret, a ready
# token and a curl line. Ctrl-C stops both cleanly (and the PostgreSQL it started, if any).
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

echo "building the collector and the scheduler…" >&2
cargo build --quiet -p collector -p scheduler
bin="$root/target/debug"
token=$("$bin/collector" token --sub dev --scope ingest --scope read --ttl 30d)

"$bin/collector" serve &
collector=$!
scheduler=""
stop_all() {
  [ -n "$scheduler" ] && kill -TERM "$scheduler" 2>/dev/null && wait "$scheduler" 2>/dev/null
  kill -TERM "$collector" 2>/dev/null && wait "$collector" 2>/dev/null
  true
}
trap stop_all EXIT

url="http://$COLLECTOR_ADDR"
for _ in $(seq 1 100); do
  curl -fsS "$url/health/ready" >/dev/null 2>&1 && break
  kill -0 $collector 2>/dev/null || { echo "the collector exited; see its log above" >&2; exit 1; }
  sleep 0.2
done

export COLLECTOR_URL=$url
export COLLECTOR_TOKEN=$("$bin/collector" token --sub dev-scheduler --scope ingest --ttl 30d)
export SPOOL_DIR=${SPOOL_DIR:-$state/spool}
export SCHEDULER_ADDR=${SCHEDULER_ADDR:-127.0.0.1:8001}
"$bin/scheduler" serve &
scheduler=$!

cat <<INFO

  collector   $url   (ready: $url/health/ready, metrics: $url/prometheus)
  scheduler   http://$SCHEDULER_ADDR/jobs   (runs ${SCHEDULES_FILE:-schedules.toml}; spool: $SPOOL_DIR)
  database    ${DATABASE_URL}

  export TOKEN=$token

  curl -X POST $url/metrics \\
    -H "Authorization: Bearer \$TOKEN" -H "Content-Type: application/json" \\
    -d '{"agent_name":"test","metrics":{"x":1},"started_at":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","finished_at":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","error":null}'

  curl -H "Authorization: Bearer \$TOKEN" $url/runs

  Ctrl-C stops everything.

INFO
# Ctrl-C reaches both components (one process group): each stops cleanly and exits 0.
first=0
wait -n "$collector" "$scheduler" || first=$?
stop_all
if [ "$first" != 0 ]; then
  echo "a component failed (exit $first); stopped the other" >&2
  exit "$first"
fi
