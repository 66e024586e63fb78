#!/usr/bin/env bash
# The dashboard's queries at volume: every query of docs/dashboard.md against 1 million runs and
# 10 million agent_metrics rows (20 agents, 90 days, generated with generate_series), each run
# repeatedly with pgbench; prints p50/p99 per query and writes the plans to
# target/bench-dashboard-plans.txt.
#
#   bench/dashboard.sh        DATABASE_URL when set, else a throwaway cluster
#   BENCH_RUNS=1000000 (metrics are 10 per run)   BENCH_QUERY_TIME=5 (seconds per query)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
in_a_cluster pg-dashboard "$@"

runs=${BENCH_RUNS:-1000000}
query_time=${BENCH_QUERY_TIME:-5}
log() { echo "dashboard: $*" >&2; }
fail() { echo "dashboard: FAILED: $*" >&2; exit 1; }
psql_bin=${PG_BINDIR:+$PG_BINDIR/}psql
pgbench_bin=${PG_BINDIR:+$PG_BINDIR/}pgbench

cargo build --quiet --release --locked -p collector
use_database agent_dashboard_bench
"$psql_bin" "$admin_url" -XAtq -c 'drop database if exists agent_dashboard_bench' -c 'create database agent_dashboard_bench' >/dev/null
DATABASE_URL=$url target/release/collector migrate >/dev/null 2>&1 || fail "collector migrate"

log "generating $runs runs and $((runs * 10)) metric rows (indexes rebuilt after the load)"
started=$(date +%s)
sql -v runs="$runs" -v agents=20 -f bench/generate.sql
log "generated in $(( $(date +%s) - started )) s: $(sql -c 'select count(*) from agent_metrics') metric rows"

# Every ```sql block of docs/dashboard.md, one file each.
work=$root/target/bench-dashboard
rm -rf "$work"; mkdir -p "$work"
awk -v dir="$work" '/^```sql$/ {n++; f=sprintf("%s/q%02d.sql", dir, n); inside=1; next}
                   /^```/ {inside=0} inside {print > f}' docs/dashboard.md
plans=$root/target/bench-dashboard-plans.txt
: >"$plans"
table=()
for file in "$work"/q*.sql; do
  query=$(tr '\n' ' ' <"$file" | sed 's/  */ /g; s/ *$//')
  (cd "$work" && "$pgbench_bin" -n -M prepared -c 1 -T "$query_time" -f "$file" -l --log-prefix=lat "$url" >/dev/null 2>&1) \
    || fail "pgbench on: $query"
  read -r count p50 p99 < <(cat "$work"/lat.* | awk '{print $3}' | sort -n |
    awk '{v[NR]=$1} END {a=int(NR*0.5); if (a<1) a=1; b=int(NR*0.99); if (b<1) b=1;
                         printf "%d %.2f %.2f\n", NR, v[a]/1000, v[b]/1000}')
  rm -f "$work"/lat.*
  { echo "-- $query"; sql -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $(cat "$file")"; echo; } >>"$plans"
  access=$(sql -c "EXPLAIN (COSTS OFF) $(cat "$file")" | grep -oE '(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)( Backward)? (using|on) [a-z_]+' | sort -u | paste -sd ';' -)
  table+=("$(printf '%8s %8s %7s  %s\n      %s' "$p50" "$p99" "$count" "${query:0:110}" "$access")")
done

echo
echo "PostgreSQL $(sql -c 'show server_version'); $(sql -c 'select count(*) from agent_runs') runs," \
  "$(sql -c 'select count(*) from agent_metrics') agent_metrics rows; $(nproc) cores; ${query_time}s per query"
printf '%8s %8s %7s  %s\n' "p50 ms" "p99 ms" "runs" "query (plan: $plans)"
printf '%s\n' "${table[@]}"
