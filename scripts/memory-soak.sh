#!/usr/bin/env bash
# Memory under steady load with nobody scraping /prometheus (the default deployment has no
# Prometheus server): the release collector on a throwaway PostgreSQL database, bench/loadgen
# posting over MEMSOAK_CONNECTIONS (8) connections for MEMSOAK_SECONDS (180), the collector's
# RSS sampled every 10 s. Histogram samples are folded in by the recorder's upkeep timer, not
# by a scrape: RSS must stay flat. Not in CI (release builds and minutes of load).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh -- "$0" "$@"
fi
seconds=${MEMSOAK_SECONDS:-180}
connections=${MEMSOAK_CONNECTIONS:-8}
cargo build --quiet --release --locked -p collector -p loadgen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
db="memsoak_$$"
psql "$DATABASE_URL" -XAtqc "create database $db" >/dev/null
export COLLECTOR_SECRET_KEY=memory-soak-secret-memory-soak-secret-01
DATABASE_URL="${DATABASE_URL%/*}/$db" COLLECTOR_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  target/release/collector serve &
collector=$!
trap 'kill -TERM $collector 2>/dev/null; wait $collector 2>/dev/null; psql "$DATABASE_URL" -XAtqc "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
token=$(target/release/collector token --sub memsoak --ttl 1h)

rss() { awk '/VmRSS/ {print $2}' "/proc/$collector/status"; }
BENCH_TOKEN=$token target/release/loadgen --addr "127.0.0.1:$port" --connections "$connections" \
  --duration "${seconds}s" >"$root/target/memsoak-load.txt" &
load=$!
echo "  t (s)   RSS (kB)"
samples=()
t=0
while kill -0 "$load" 2>/dev/null; do
  samples+=("$(rss)")
  printf '%7d   %8d\n' "$t" "${samples[-1]}"
  sleep 10
  t=$((t + 10))
done
wait "$load"
echo "load: $(cat "$root/target/memsoak-load.txt")"
printf '%s\n' "${samples[@]}" | python3 -c '
import sys
rss = [int(x) for x in sys.stdin.read().split()]
# Growth over the second half of the run, when the pool and buffers have settled.
half = rss[len(rss) // 2:]
slope = (half[-1] - half[0]) / (10 * (len(half) - 1)) if len(half) > 1 else 0.0
print(f"RSS kB: first {rss[0]}, last {rss[-1]}, max {max(rss)}; second half: {slope:+.1f} kB/s")
'
