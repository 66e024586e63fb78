#!/usr/bin/env bash
# Two collector binaries doing the same work in one run, alternating, on one PostgreSQL cluster
# (durable, throwaway unless DATABASE_URL is set): the figure behind "within the noise of
# before" for a change that should not move performance. For each pair, in alternating order:
# POST /metrics report-only from bench/loadgen (64 connections), then each run's whole life
# (POST /runs then its report); and the watcher's steady pass (`collector watch` on 10 000
# expectations and 1 000 open incidents, bench/watch-data.sql). Prints each pair's ratio
# (this checkout's binary over the other) and the median.
#
#   bench/compare.sh OTHER_COLLECTOR     (say, a release build of the commit before a change)
#   BENCH_DURATION=10s  BENCH_PAIRS=4  BENCH_CONNECTIONS=64  BENCH_PASSES=5
set -euo pipefail
. "$(dirname "$0")/lib.sh"
other=$(realpath "${1:?usage: bench/compare.sh OTHER_COLLECTOR}")
in_a_cluster pg-bench-compare --durable "$other"
[ -x "$other" ] || { echo "compare: $other is not an executable" >&2; exit 1; }

duration=${BENCH_DURATION:-10s}
pairs=${BENCH_PAIRS:-4}
connections=${BENCH_CONNECTIONS:-64}
passes=${BENCH_PASSES:-5}
log() { echo "compare: $*" >&2; }

log "building this checkout's release collector and loadgen"
cargo build --quiet --release --locked -p collector -p loadgen
this=$root/target/release/collector
loadgen=$root/target/release/loadgen

export COLLECTOR_SECRET_KEY
COLLECTOR_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_TOKEN
BENCH_TOKEN=$("$this" token --sub bench --ttl 1d)
"${PG_BINDIR:+$PG_BINDIR/}psql" "$DATABASE_URL" -XAtq -c 'drop database if exists compare_ingest' \
  -c 'drop database if exists compare_watch' -c 'create database compare_ingest' \
  -c 'create database compare_watch' >/dev/null
use_database compare_ingest
ingest_url=$url
DATABASE_URL=$ingest_url "$this" migrate >/dev/null 2>&1
bench/warm-wal.sh "$ingest_url"

port=$(free_port 18700)
trap stop EXIT

# One measurement: BINARY serving compare_ingest, emptied first; loadgen's reports/s (ARGS: its
# mode, none or --lifecycle).
rate() {
  local binary=$1
  shift
  # Analyzed before it is emptied, as bench/run.sh does: autovacuum analyzing the emptied
  # table would plan each metric row's foreign-key check as a scan (docs/performance.md).
  sql -c 'analyze agent_runs'
  sql -c 'truncate agent_runs, agent_metrics, agent_daily_summaries, agent_metric_daily_summaries, agents restart identity'
  DATABASE_URL=$ingest_url COLLECTOR_ADDR=127.0.0.1:$port WATCH_EVERY=1h RUST_LOG=warn \
    "$binary" serve 2>>"$root/target/bench-compare-collector.log" &
  collector_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$loadgen" --addr "127.0.0.1:$port" --connections "$connections" --duration "$duration" "$@" \
    | sed -n 's/.*reports_per_s=\([0-9]*\).*/\1/p'
  stop
}

# The median of the numbers on stdin.
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b ? a / b : 0}'; }

declare -A ratios
for mode in report lifecycle; do
  flag=()
  [ "$mode" = lifecycle ] && flag=(--lifecycle)
  for pair in $(seq 1 "$pairs"); do
    # Alternate which goes first, so that neither always meets a warmer cluster.
    if [ $((pair % 2)) = 1 ]; then
      a=$(rate "$this" "${flag[@]}"); b=$(rate "$other" "${flag[@]}")
    else
      b=$(rate "$other" "${flag[@]}"); a=$(rate "$this" "${flag[@]}")
    fi
    log "$mode pair $pair: this $a, other $b reports/s"
    ratios[$mode]+="$(ratio "$a" "$b") "
  done
done

log "the watcher: 10 000 expectations, 1 000 open incidents (bench/watch-data.sql)"
use_database compare_watch
watch_url=$url
DATABASE_URL=$watch_url "$this" migrate >/dev/null 2>&1
sql -v expectations=10000 -v incidents=1000 -f bench/watch-data.sql
# Caught up first (20 minutes of slots missed), so that every pass measured is a steady one.
for _ in $(seq 1 100); do
  out=$(DATABASE_URL=$watch_url RUST_LOG=error "$this" watch)
  grep -q '^watch: 0 slots missed' <<<"$out" && break
done
pass() { DATABASE_URL=$watch_url RUST_LOG=error "$1" watch | sed -n 's/.* in \([0-9]*\) ms/\1/p'; }
this_ms=() other_ms=()
for _ in $(seq 1 "$passes"); do
  this_ms+=("$(pass "$this")")
  other_ms+=("$(pass "$other")")
done
this_pass=$(printf '%s\n' "${this_ms[@]}" | median)
other_pass=$(printf '%s\n' "${other_ms[@]}" | median)

echo
echo "PostgreSQL $(sql -c 'show server_version'), $(nproc) cores; $connections connections, $duration runs, $pairs pairs"
echo "this checkout over $other (1.0: the same; above: this one is faster):"
for mode in report lifecycle; do
  # shellcheck disable=SC2086
  echo "  POST /metrics ($mode): pairs ${ratios[$mode]}-> median $(printf '%s\n' ${ratios[$mode]} | median)"
done
echo "  watcher's steady pass, ms (this: ${this_ms[*]}; other: ${other_ms[*]}): medians $this_pass and $other_pass -> other/this $(ratio "$other_pass" "$this_pass")"
