#!/usr/bin/env bash
# The watcher's pass at scale: 10 000 expectations (half a period of 1 h, half a cron every
# 5 minutes in Europe/Madrid) and 1 000 open incidents, on PostgreSQL (a throwaway durable
# cluster unless DATABASE_URL is set). Prints the passes that catch up with the slots missed
# since the data was made, the time of one pass then (`collector watch`, a new process each
# time, five times: min, median, max), then POST /metrics against the collector's server
# twice over, alternating: with its watcher idle (WATCH_EVERY=1h, its one pass at start-up
# done before the load) and with passes back to back (WATCH_EVERY=1ms: ingest is always
# *during* a pass), in the same run.
# The second also prints the passes the server ran meanwhile and their mean time, from its
# own collector_watch_pass_seconds. BENCH_WATCH_EVERY=100ms runs the passes ten a second
# instead of back to back (the service: one every 10 s).
#
#   BENCH_DURATION=15s  BENCH_EXPECTATIONS=10000  BENCH_INCIDENTS=1000  BENCH_ROUNDS=2
#   BENCH_WATCH_EVERY=1ms
set -euo pipefail
. "$(dirname "$0")/lib.sh"
in_a_cluster pg-bench-watch --durable "$@"
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
bench/warm-wal.sh "$bench_url"
log "$expectations expectations, $incidents open incidents, a day of summaries for each agent"
psql "$bench_url" -XAtq -v ON_ERROR_STOP=1 -v expectations="$expectations" -v incidents="$incidents" \
  -f bench/watch-data.sql

export DATABASE_URL=$bench_url
# The catch-up after the data is made: 20 minutes of slots missed by every expectation, judged
# in passes of at most 2 000 slots until a pass finds none left.
catchup=() missed=1
while [ "$missed" != 0 ] && [ "${#catchup[@]}" -lt 100 ]; do
  out=$("$collector" watch)
  missed=$(sed -n 's/^watch: \([0-9]*\) slots missed.*/\1/p' <<<"$out")
  catchup+=("$(sed -n 's/.* in \([0-9]*\) ms/\1/p' <<<"$out")")
done
log "catch-up passes, ms each: ${catchup[*]}"
catchup_max=$(printf '%s\n' "${catchup[@]}" | sort -n | tail -1)
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
export BENCH_TOKEN
BENCH_TOKEN=$("$collector" token --sub bench --ttl 1d)
port=$(free_port 18600)
trap stop EXIT
# The server's passes so far: "count sum" of collector_watch_pass_seconds.
passes() {
  curl -fsS "http://127.0.0.1:$port/prometheus" \
    | awk '/^collector_watch_pass_seconds_count/ {c=$2} /^collector_watch_pass_seconds_sum/ {s=$2} END {print c+0, s+0}'
}
# Starts the server with WATCH_EVERY=$1 and waits for its first pass to end.
serve() {
  COLLECTOR_ADDR=127.0.0.1:$port WATCH_EVERY=$1 RUST_LOG=warn "$collector" serve 2>>"$root/target/bench-watch-collector.log" &
  collector_pid=$!
  for _ in $(seq 1 600); do
    read -r count _ < <(passes 2>/dev/null || echo "0 0")
    [ "${count:-0}" -ge 1 ] && return 0
    sleep 0.1
  done
  log "the collector's first pass did not end in a minute"; exit 1
}
rate() {
  "$loadgen" --addr "127.0.0.1:$port" --connections 16 --duration "$duration" | tee -a "$root/target/bench-watch-loadgen.txt" \
    | sed -n 's/.*reports_per_s=\([0-9]*\).*/\1/p'
}
# Warm-up: runs stored, then what autovacuum does within minutes in a deployment (the catch-up
# rewrote every expectation; agent_runs was empty): dead index entries cleared and statistics
# gathered, so that plans are a deployment's, not those of an empty table.
log "warm-up: 5 s of POST /metrics, then vacuum analyze"
serve 1h
"$loadgen" --addr "127.0.0.1:$port" --connections 16 --duration 5s >/dev/null
stop
psql "$bench_url" -XAtq -c 'vacuum analyze'
alone=() during=() pass_counts=0 pass_seconds=0
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
  log "round $round: POST /metrics, 16 connections, $duration, the watcher idle"
  serve 1h
  alone+=("$(rate)")
  stop
  log "round $round: the same with WATCH_EVERY=${BENCH_WATCH_EVERY:-1ms} (1ms: passes back to back)"
  serve "${BENCH_WATCH_EVERY:-1ms}"
  read -r c0 s0 < <(passes)
  during+=("$(rate)")
  read -r c1 s1 < <(passes)
  stop
  pass_counts=$((pass_counts + c1 - c0))
  pass_seconds=$(awk -v a="$pass_seconds" -v s0="$s0" -v s1="$s1" 'BEGIN{print a + s1 - s0}')
done
sum() { printf '%s\n' "$@" | awk '{s+=$1} END {print s}'; }
alone_total=$(sum "${alone[@]}")
during_total=$(sum "${during[@]}")

echo
echo "PostgreSQL $(psql "$bench_url" -XAtc 'show server_version'), $(nproc) cores; $expectations expectations, $incidents open incidents"
echo "catching up after the data is made: ${#catchup[@]} passes, the longest $catchup_max ms"
echo "one watcher pass then (collector watch, a new process, 5 times): min $t1 ms, median $t3 ms, max $t5 ms"
echo "in the server, WATCH_EVERY=${BENCH_WATCH_EVERY:-1ms}: $pass_counts passes, mean $(awk -v n="$pass_counts" -v s="$pass_seconds" 'BEGIN{printf "%.0f", n ? 1000*s/n : 0}') ms"
echo "POST /metrics, watcher idle: ${alone[*]} reports/s; with passes: ${during[*]} reports/s ($(awk -v a="$alone_total" -v d="$during_total" 'BEGIN{printf "%.2f", d/a}') of idle)"
