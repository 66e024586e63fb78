#!/usr/bin/env bash
# Soak (not in CI): the release collector for SOAK_SECONDS (default 600) at half the capacity
# measured first with the same load generator, sampling its memory (RSS), open file
# descriptors and database connections every 10 s. Prints a table; exits non-zero on any
# error answer or lost report. Figures go in docs/reliability.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh -- "$0" "$@"
fi
seconds=${SOAK_SECONDS:-600}
threads=${SOAK_THREADS:-8}

cargo build --quiet --release -p collector
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
work=$(mktemp -d)
db="soak_$$"
PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -XAtqc "drop database if exists $db" -c "create database $db" >/dev/null
export COLLECTOR_SECRET_KEY=soak-secret-soak-secret-soak-secret-0123
DATABASE_URL="${DATABASE_URL%/*}/$db" COLLECTOR_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  target/release/collector serve 2>"$work/collector.log" &
collector=$!
trap 'kill -TERM $collector 2>/dev/null; wait $collector 2>/dev/null; psql "$DATABASE_URL" -XAtqc "drop database if exists $db" >/dev/null 2>&1; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "$base/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
token=$(target/release/collector token --sub soak --ttl 2h)

echo "measuring capacity (15 s, $threads threads, as fast as they go)…"
python3 scripts/pusher.py --url "$base" --token "$token" --threads "$threads" --seconds 15 --out "$work/capacity.json"
capacity=$(python3 -c 'import json,sys; print(int(len(json.load(open(sys.argv[1]))["acked"]) / 15))' "$work/capacity.json")
rate=$((capacity / 2))
echo "capacity ≈ $capacity reports/s (load generator included); soaking at $rate/s for ${seconds}s"

sample() {
  local rss fds pool
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$collector/status")
  fds=$(ls "/proc/$collector/fd" | wc -l)
  pool=$(curl -s "$base/prometheus" | awk '/^collector_db_pool_connections\{state="open"\}/ {print $2}')
  echo "$1 $((rss / 1024)) $fds ${pool:-?}"
}
python3 scripts/pusher.py --url "$base" --token "$token" --threads "$threads" --seconds "$seconds" --rate "$rate" --out "$work/soak.json" &
pusher=$!
: >"$work/samples"
elapsed=0
while kill -0 "$pusher" 2>/dev/null; do
  sample "$elapsed" >>"$work/samples"
  sleep 10
  elapsed=$((elapsed + 10))
done
wait "$pusher"
sample "$elapsed" >>"$work/samples"

echo
echo "  t (s)   RSS (MiB)   open fds   db connections"
awk '{printf "  %5s   %9s   %8s   %14s\n", $1, $2, $3, $4}' "$work/samples"
python3 - "$work/soak.json" "$work/samples" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
samples = [line.split() for line in open(sys.argv[2])]
rss = [int(s[1]) for s in samples]
fds = [int(s[2]) for s in samples]
bad = {k: v for k, v in r["statuses"].items() if k not in ("200", "201")}
print(f"\nreports acknowledged: {len(r['acked'])} ({len(r['acked']) / float(sys.argv[3]):.0f}/s)")
print(f"error answers: {sum(bad.values())} {bad or ''}; refused: {len(r['refused'])}; given up: {len(r['gave_up'])}")
print(f"RSS MiB: first {rss[0]}, last {rss[-1]}, max {max(rss)}; open fds: first {fds[0]}, last {fds[-1]}, max {max(fds)}")
sys.exit(1 if bad or r["refused"] or r["gave_up"] else 0)
PY
stored=$(psql "${DATABASE_URL%/*}/$db" -XAtqc "select count(*) from agent_runs")
acked=$(python3 -c 'import json,sys; print(sum(len(json.load(open(f))["acked"]) for f in sys.argv[1:]))' "$work/capacity.json" "$work/soak.json")
echo "runs stored: $stored of $acked acknowledged"
[ "$stored" = "$acked" ]
