#!/usr/bin/env bash
# Retention with a backlog: BENCH_RUNS finished runs 200 days old, ten metric rows each, deleted
# by `collector prune` (RETENTION_RUNS=90d: the service's batches of at most 5 000 rows, a run
# and its metric rows counted together (454 runs of eleven rows), each its own
# transaction, their metric rows going by the foreign key's cascade), next to PostgreSQL
# deleting the same rows in one statement, on the same data made again. PostgreSQL: a
# throwaway durable cluster unless DATABASE_URL is set. Prints both times, the time a batch,
# and their ratio.
#
#   BENCH_RUNS=100000
set -euo pipefail
. "$(dirname "$0")/lib.sh"
in_a_cluster pg-bench-prune --durable "$@"
runs=${BENCH_RUNS:-100000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_RUNS must be a whole number (got '$runs')" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

log "building the release collector"
cargo build --quiet --release --locked -p collector
collector=$root/target/release/collector

bench_url="${DATABASE_URL%/*}/prune_bench"
psql "$DATABASE_URL" -XAtq -c 'drop database if exists prune_bench' -c 'create database prune_bench' >/dev/null 2>&1
sql() { psql "$bench_url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
DATABASE_URL=$bench_url "$collector" migrate >/dev/null 2>&1
bench/warm-wal.sh "$bench_url"

# The backlog, made the same way before each of the two deletes.
backlog() {
  sql "truncate agent_runs, agent_metrics restart identity"
  sql "insert into agent_runs (run_key, agent_name, started_at, finished_at, status, duration_ms, metric_count)
       select gen_random_uuid(), 'agent_' || (i % 20), now() - interval '200 days' + i * interval '1 s',
              now() - interval '200 days' + i * interval '1 s' + interval '1 s', 'success', 1000, 10
       from generate_series(1, $runs) i"
  sql "insert into agent_metrics (run_id, agent_name, metric_name, metric_value, recorded_at)
       select r.id, r.agent_name, 'metric_' || k, k, r.finished_at from agent_runs r, generate_series(1, 10) k"
  sql "vacuum analyze agent_runs"; sql "vacuum analyze agent_metrics"; sql "checkpoint"
}
left() { sql "select (select count(*) from agent_runs) + (select count(*) from agent_metrics)"; }
seconds() { python3 -c 'import time; print(time.monotonic())'; }

log "$runs runs and $((runs * 10)) metric rows, 200 days old: collector prune"
backlog
export COLLECTOR_SECRET_KEY
COLLECTOR_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
started=$(seconds)
prune_out=$(DATABASE_URL=$bench_url RETENTION_RUNS=90d "$collector" prune)
slowest_ms=$(sed -n 's/^the longest batch .* took \([0-9]*\) ms$/\1/p' <<<"$prune_out")
collector_s=$(awk -v a="$(seconds)" -v b="$started" 'BEGIN{printf "%.2f", a - b}')
[ "$(left)" = 0 ] || { echo "bench: FAILED: collector prune left $(left) rows" >&2; exit 1; }

log "the same backlog: one DELETE"
backlog
started=$(seconds)
sql "delete from agent_runs where started_at < now() - interval '90 days' and status <> 'running'"
direct_s=$(awk -v a="$(seconds)" -v b="$started" 'BEGIN{printf "%.2f", a - b}')
[ "$(left)" = 0 ] || { echo "bench: FAILED: the DELETE left $(left) rows" >&2; exit 1; }

# 5 000 rows a batch: 454 runs of eleven rows (a run and its ten metric rows).
batches=$(( (runs + 453) / 454 ))
echo
echo "PostgreSQL $(sql 'show server_version'); $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
printf '%-44s %8s\n' "$runs runs + $((runs * 10)) metric rows" "seconds"
printf '%-44s %8s\n' "collector prune ($batches batches of <= 5 000 rows)" "$collector_s"
printf '%-44s %8s\n' "  a batch, on average" "$(awk -v t="$collector_s" -v b="$batches" 'BEGIN{printf "%.3f", t / b}')"
printf '%-44s %8s\n' "  the longest batch's transaction" "$(awk -v m="$slowest_ms" 'BEGIN{printf "%.3f", m / 1000}')"
printf '%-44s %8s\n' "one DELETE (psql)" "$direct_s"
printf '%-44s %8s\n' "ratio" "$(awk -v a="$collector_s" -v b="$direct_s" 'BEGIN{printf "%.2f", a / b}')"
