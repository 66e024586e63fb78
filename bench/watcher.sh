#!/usr/bin/env bash
# The watcher's pass at scale: 10 000 expectations (half a period of 1 h, half a cron every
# 5 minutes in Europe/Madrid) and 1 000 open incidents, on PostgreSQL (a throwaway durable
# cluster unless DATABASE_URL is set). Prints the time of one pass (`collector watch`, five
# times: min, median, max; the first judges the slots missed since the data was made), then
# POST /metrics alone and with a pass every second (ten times the service's rate), in the same
# run: the ingest rate passes cost.
#
#   BENCH_DURATION=15s  BENCH_EXPECTATIONS=10000  BENCH_INCIDENTS=1000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${BENCH_IN_CLUSTER:-}" ]; then
  if [ -z "${DATABASE_URL:-}" ]; then export PG_THROWAWAY=1; fi
  exec env BENCH_IN_CLUSTER=1 scripts/with-postgres.sh --durable --data "$root/target/pg-bench-watch" -- "$0" "$@"
fi
duration=${BENCH_DURATION:-15s}
expectations=${BENCH_EXPECTATIONS:-10000}
incidents=${BENCH_INCIDENTS:-1000}
log() { echo "bench: $*" >&2; }

log "building the release collector and loadgen"
cargo build --quiet --release --locked -p collector -p loadgen
collector=$root/target/release/collector
loadgen=$root/target/release/loadgen

bench_url="${DATABASE_URL%/*}/watch_bench"
psql "$DATABASE_URL" -XAtq -c 'drop database if exists watch_bench' -c 'create database watch_bench' >/dev/null 2>&1
DATABASE_URL=$bench_url "$collector" migrate >/dev/null 2>&1
log "$expectations expectations, $incidents open incidents, a day of summaries for each agent"
psql "$bench_url" -XAtq -v ON_ERROR_STOP=1 <<SQL
insert into agent_expectations (name, agent_name, cron, timezone, every_seconds, grace_seconds, source,
                                created_at, updated_at, checked_until)
select 'expected_' || g, 'expected_' || g,
       case when g % 2 = 0 then '*/5 * * * *' end, case when g % 2 = 0 then 'Europe/Madrid' end,
       case when g % 2 = 1 then 3600 end, 600, 'api',
       now() - interval '20 minutes', now() - interval '20 minutes', now() - interval '20 minutes'
from generate_series(1, $expectations) g;
insert into agent_daily_summaries (agent_name, day, run_count, success_count, failure_count,
                                   total_duration_ms, min_duration_ms, max_duration_ms,
                                   last_run_at, last_status, last_success_at, updated_at)
select 'expected_' || g, current_date, 1, 1, 0, 1000, 1000, 1000,
       now() - interval '5 minutes', 'success', now() - interval '5 minutes',
       now() - (g % 1440) * interval '1 minute' -- changed over the last day, as agents run
from generate_series(1, $expectations) g;
insert into incidents (agent_name, kind, opened_at, summary)
select 'expected_' || g, 'slow', now() - interval '1 hour', 'bench'
from generate_series(1, $incidents) g;
analyze agent_expectations, agent_daily_summaries, incidents;
SQL

export DATABASE_URL=$bench_url
pass() { "$collector" watch | sed -n 's/.* in \([0-9]*\) ms/\1/p'; }
times=()
for _ in 1 2 3 4 5; do times+=("$(pass)"); done
if [ -n "${BENCH_PROFILE:-}" ]; then
  perf record -g -o "$root/target/watch.perf" "$collector" watch >/dev/null 2>&1
  exit 0
fi
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
read -r t1 _ t3 _ t5 <<<"$sorted"

export COLLECTOR_SECRET_KEY
COLLECTOR_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=18600
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
COLLECTOR_ADDR=127.0.0.1:$port RUST_LOG=warn "$collector" serve 2>"$root/target/bench-watch-collector.log" &
collector_pid=$!
trap 'kill $collector_pid 2>/dev/null; wait $collector_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
export BENCH_TOKEN
BENCH_TOKEN=$("$collector" token --sub bench --ttl 1d)
rate() {
  "$loadgen" --addr "127.0.0.1:$port" --connections 16 --duration "$duration" | tee -a "$root/target/bench-watch-loadgen.txt" \
    | sed -n 's/.*reports_per_s=\([0-9]*\).*/\1/p'
}
log "POST /metrics, 16 connections, $duration, alone"
alone=$(rate)
log "the same with a watcher pass every second (the service runs one every 10 s)"
( while true; do "$collector" watch >/dev/null 2>&1 || true; sleep 1; done ) &
passes=$!
during=$(rate)
kill $passes 2>/dev/null; wait $passes 2>/dev/null || true

echo
echo "PostgreSQL $(psql "$bench_url" -XAtc 'show server_version'), $(nproc) cores; $expectations expectations, $incidents open incidents"
echo "one watcher pass (collector watch, 5 times): min $t1 ms, median $t3 ms, max $t5 ms"
echo "POST /metrics alone: $alone reports/s; with a pass every second: $during reports/s ($(awk -v a="$alone" -v d="$during" 'BEGIN{printf "%.2f", d/a}') of alone)"
