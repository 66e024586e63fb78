#!/usr/bin/env bash
# The scheduler's firing precision at scale: BENCH_JOBS (10 000) jobs on a one-second cron of the
# `hello` agent (a no-op: it formats a string), delivery off (`serve --no-push`), for
# BENCH_DURATION (30s). Prints the lateness of each fire (scheduler_fire_lateness_seconds: the
# time from the slot to the fire), the runs done against the slots due, and peak RSS.
# BENCH_TCS=1 then runs the same jobs on tokio-cron-scheduler (bench/tokio-cron-scheduler/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${BENCH_JOBS:-10000}
duration=${BENCH_DURATION:-30s}
log() { echo "scheduler-bench: $*" >&2; }
fail() { echo "scheduler-bench: FAILED: $*" >&2; exit 1; }

cargo build --quiet --release --locked -p scheduler
work=$root/target/bench-scheduler
rm -rf "$work"; mkdir -p "$work"
for i in $(seq -f '%05g' 1 "$jobs"); do
  printf '[agents.noop_%s]\nagent = "hello"\ncron = "* * * * * *"\n' "$i"
done >"$work/schedules.toml"

port=18600
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
SCHEDULES_FILE=$work/schedules.toml SPOOL_DIR=$work/spool SCHEDULER_ADDR=127.0.0.1:$port \
  MAX_CONCURRENT_RUNS=256 RUST_LOG=warn target/release/scheduler serve --no-push 2>"$work/scheduler.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || fail "the scheduler did not start ($work/scheduler.log)"

scrape() { curl -fsS "http://127.0.0.1:$port/prometheus"; }
runs() { scrape | awk '/^scheduler_runs_total/ {n += $NF} END {printf "%d", n}'; }
# Measured after a few seconds of warm-up, so that start-up is not in the figures.
sleep 3
before=$(runs)
started=$(date +%s.%N)
log "$jobs jobs firing every second for $duration"
sleep "${duration%s}"
after=$(runs)
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
metrics=$(scrape)
rss=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
cpu=$(awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$pid/stat")
kill -TERM "$pid"; wait "$pid" || fail "the scheduler did not stop cleanly"
trap - EXIT
quantile() { awk -v q="$1" -F'[{}" ]+' '$1 == "scheduler_fire_lateness_seconds" && $3 == q {printf "%.1f", $(NF) * 1000}' <<<"$metrics"; }

echo
echo "$jobs jobs on a one-second cron, delivery off; $(nproc) cores; ${elapsed}s measured"
echo "fire lateness (slot -> fire): p50 $(quantile 0.5) ms, p99 $(quantile 0.99) ms, max $(quantile 1) ms"
echo "runs finished: $((after - before)) of $(awk -v j="$jobs" -v e="$elapsed" 'BEGIN {printf "%d", j * e}') slots due"
echo "peak RSS: $rss MB; CPU: $cpu s since start"

if [ "${BENCH_TCS:-0}" = 1 ]; then
  log "the same on tokio-cron-scheduler"
  CARGO_TARGET_DIR=$root/target/tcs-probe cargo build --quiet --release --locked \
    --manifest-path bench/tokio-cron-scheduler/Cargo.toml
  BENCH_JOBS=$jobs BENCH_SECONDS=${duration%s} "$root/target/tcs-probe/release/tokio-cron-scheduler-probe"
fi
