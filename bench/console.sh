#!/usr/bin/env bash
# The operator console at volume: 1 000 agents, 1 million runs and 10 million agent_metrics rows
# (bench/generate.sql), the collector's release build on PostgreSQL. Prints, for the overview
# (/ui) next to the API call with the same data (GET /agents) and for an agent's page (its
# charts and runs) next to GET /runs?agent_name=: the median and p90 of the time to answer
# (curl on the same machine; the body is small next to the query time), and each page's
# compressed size.
#
#   bench/console.sh        DATABASE_URL when set, else a throwaway cluster
#   BENCH_RUNS=1000000 (10 metrics each)  BENCH_AGENTS=1000  BENCH_REQUESTS=30
#   BENCH_REUSE=1: measure again on the database a previous run made (DATABASE_URL's server)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
in_a_cluster pg-console "$@"

runs=${BENCH_RUNS:-1000000}
agents=${BENCH_AGENTS:-1000}
requests=${BENCH_REQUESTS:-30}
log() { echo "console: $*" >&2; }
fail() { echo "console: FAILED: $*" >&2; exit 1; }
psql_bin=${PG_BINDIR:+$PG_BINDIR/}psql

cargo build --quiet --release --locked -p collector
use_database agent_console_bench
if [ -n "${BENCH_REUSE:-}" ] && sql -c 'select 1 from agent_runs limit 1' >/dev/null 2>&1; then
  log "reusing the data in agent_console_bench"
else
  "$psql_bin" "$admin_url" -XAtq -c 'drop database if exists agent_console_bench' -c 'create database agent_console_bench' >/dev/null
  DATABASE_URL=$url target/release/collector migrate >/dev/null 2>&1 || fail "collector migrate"
  log "generating $runs runs of $agents agents and $((runs * 10)) metric rows"
  started=$(date +%s)
  sql -v runs="$runs" -v agents="$agents" -f bench/generate.sql
  log "generated in $(( $(date +%s) - started )) s"
fi

export COLLECTOR_SECRET_KEY=console-bench-secret-console-bench-secret-0123
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATABASE_URL=$url COLLECTOR_ADDR=127.0.0.1:$port RUST_LOG=warn target/release/collector serve \
  >"$root/target/bench-console-collector.log" 2>&1 &
collector_pid=$!
trap 'kill $collector_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(target/release/collector token --sub bench --scope read --ttl 1h)
base="http://127.0.0.1:$port"
agent=$(sql -c "select agent_name from agent_daily_summaries where agent_name like 'agent_%' order by agent_name limit 1")

# median and p90 (ms) of $requests GETs of $1 with the extra curl arguments after it.
timed() {
  local path=$1; shift
  curl -fsS -o /dev/null "$@" "$base$path" || fail "GET $path"  # warm: plans, caches
  for _ in $(seq 1 "$requests"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' "$@" "$base$path"
  done | sort -n | awk '{v[NR]=$1*1000} END {printf "%8.1f %8.1f", v[int((NR+1)/2)], v[int(NR*0.9)]}'
}
size() { # compressed bytes of $1
  local path=$1; shift
  curl -fsS -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' "$@" "$base$path"
}
cookie=(-H "Cookie: console_token=$token")
bearer=(-H "Authorization: Bearer $token")

echo
echo "PostgreSQL $(sql -c 'show server_version'); $agents agents, $(sql -c 'select count(*) from agent_runs') runs," \
  "$(sql -c 'select count(*) from agent_metrics') agent_metrics rows; $(nproc) cores; $requests requests each"
printf '%-44s %8s %8s %10s\n' "" "p50 ms" "p90 ms" "gzip bytes"
printf '%-44s %s %10s\n' "overview: GET /ui" "$(timed /ui "${cookie[@]}")" "$(size /ui "${cookie[@]}")"
printf '%-44s %s %10s\n' "the same data from the API: GET /agents" "$(timed /agents "${bearer[@]}")" "$(size /agents "${bearer[@]}")"
printf '%-44s %s %10s\n' "agent page: GET /ui/agents/$agent" "$(timed "/ui/agents/$agent" "${cookie[@]}")" "$(size "/ui/agents/$agent" "${cookie[@]}")"
printf '%-44s %s %10s\n' "its runs from the API: GET /runs?agent_name=" "$(timed "/runs?agent_name=$agent&limit=25" "${bearer[@]}")" "$(size "/runs?agent_name=$agent&limit=25" "${bearer[@]}")"
run=$(sql -c "select max(id) from agent_runs where agent_name = '$agent'")
printf '%-44s %s %10s\n' "run page: GET /ui/runs/$run" "$(timed "/ui/runs/$run" "${cookie[@]}")" "$(size "/ui/runs/$run" "${cookie[@]}")"
printf '%-44s %s %10s\n' "stylesheet + script" "" "$(( $(size /ui/assets/console.css) + $(size /ui/assets/console.js) ))"
