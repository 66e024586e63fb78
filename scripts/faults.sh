#!/usr/bin/env bash
# Fault tests on the real binaries, on a PostgreSQL this script may stop (its own cluster):
#   1. the collector SIGKILLed and restarted under load from the scheduler and a pusher;
#   2. PostgreSQL stopped for ten seconds under load;
#   3. the collector SIGTERMed under load.
# Each time: every acknowledged report is stored exactly once, unacknowledged ones are retried
# to success, nobody sees a 500, no run is half-written; at the end the scheduler's spool is
# empty, every run it finished is stored once, and no tick was skipped because the collector was
# away (the concurrency policy covers running agents, not delivering their reports).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${PG_CLUSTER_DIR:-}" ]; then
  exec env -u DATABASE_URL PG_THROWAWAY=1 scripts/with-postgres.sh -- "$0" "$@"
fi

cargo build --quiet -p collector -p scheduler
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
base="http://127.0.0.1:$port"
collector=""
scheduler=""
cleanup() {
  [ -n "$scheduler" ] && kill -TERM "$scheduler" 2>/dev/null || true
  [ -n "$collector" ] && kill -TERM "$collector" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1: expected $2, got $3"; fi
}
sql() { psql "$db_url" -XAtqc "$1"; }

export COLLECTOR_SECRET_KEY=fault-test-secret-fault-test-secret-0123
PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -XAtqc "drop database if exists faults" -c "create database faults" >/dev/null
db_url="${DATABASE_URL%/*}/faults"

start_collector() {
  DATABASE_URL="$db_url" COLLECTOR_ADDR="127.0.0.1:$port" DATABASE_ACQUIRE_TIMEOUT=2s LOG_FORMAT=json \
    target/debug/collector serve >>"$work/collector.log" 2>&1 &
  collector=$!
  for _ in $(seq 1 150); do
    curl -fsS "$base/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the collector did not become ready"; tail -20 "$work/collector.log"; exit 1
}

# Every acknowledged key of a pusher run stored exactly once; nothing refused or given up.
check_pusher() { # scenario, file
  local summary
  summary=$(python3 - "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(len(r["acked"]), len(r["refused"]), len(r["gave_up"]), r["statuses"].get("500", 0), r["statuses"].get("503", 0))
open(sys.argv[1] + ".keys", "w").write("".join(k + "\n" for k in r["acked"]))
PY
)
  read -r acked refused gave_up five_hundreds unavailable <<<"$summary"
  local stored
  stored=$({ echo "create temp table acked (key uuid); copy acked from stdin;"; cat "$2.keys"; echo '\.'
             echo "select count(r.id) || '/' || count(distinct r.run_key) from acked a left join agent_runs r on r.run_key = a.key;"
           } | psql "$db_url" -XAtq)
  check "$1: every acknowledged report stored once ($acked)" "$acked/$acked" "$stored"
  check "$1: nothing refused or given up" "0 0" "$refused $gave_up"
  check "$1: no 500" 0 "$five_hundreds"
  last_unavailable=$unavailable
}

token=$(target/debug/collector token --sub faults --scope ingest --scope read --ttl 1h)
start_collector
cat >"$work/schedules.toml" <<'TOML'
[agents.hello]
cron = "* * * * * *"
TOML
COLLECTOR_URL="$base" COLLECTOR_TOKEN="$token" SCHEDULES_FILE="$work/schedules.toml" \
  SPOOL_DIR="$work/spool" SCHEDULER_ADDR="127.0.0.1:$(free_port)" LOG_FORMAT=json \
  target/debug/scheduler serve >>"$work/scheduler.log" 2>&1 &
scheduler=$!

echo "--- 1. the collector SIGKILLed and restarted under load"
python3 scripts/pusher.py --url "$base" --token "$token" --threads 4 --seconds 10 --out "$work/kill.json" &
pusher=$!
sleep 3
kill -KILL "$collector"; wait "$collector" 2>/dev/null || true
sleep 2
start_collector
wait "$pusher"
check_pusher "SIGKILL" "$work/kill.json"

echo "--- 2. PostgreSQL stopped for ten seconds under load"
collector_pid=$collector
python3 scripts/pusher.py --url "$base" --token "$token" --threads 4 --seconds 16 --out "$work/pg.json" &
pusher=$!
sleep 3
scripts/pg-cluster.sh stop
sleep 1
ready_during=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$base/health/ready")
headers=$(curl -s -D - -o /dev/null --max-time 15 -X POST "$base/metrics" -H "Authorization: Bearer $token" \
  -H "Content-Type: application/json" \
  -d '{"agent_name":"probe","started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:01Z"}' | tr -d '\r')
sleep 8
scripts/pg-cluster.sh start
for _ in $(seq 1 100); do curl -fsS "$base/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
ready_after=$(curl -s -o /dev/null -w '%{http_code}' "$base/health/ready")
wait "$pusher"
check "PostgreSQL down: /health/ready is 503" 503 "$ready_during"
check "PostgreSQL down: a push is 503" 503 "$(echo "$headers" | head -1 | awk '{print $2}')"
check "PostgreSQL down: the 503 carries Retry-After" 1 "$(echo "$headers" | grep -ci '^retry-after:')"
check "PostgreSQL back: /health/ready is 200 again" 200 "$ready_after"
check "PostgreSQL back: the same collector process serves" yes "$(kill -0 "$collector_pid" 2>/dev/null && echo yes || echo no)"
check_pusher "PostgreSQL stop" "$work/pg.json"
check "PostgreSQL stop: the pusher saw 503s and retried them" yes "$([ "$last_unavailable" -gt 0 ] && echo yes || echo "no ($last_unavailable)")"

echo "--- 3. the collector SIGTERMed under load"
python3 scripts/pusher.py --url "$base" --token "$token" --threads 4 --seconds 8 --out "$work/term.json" &
pusher=$!
sleep 2
kill -TERM "$collector"
status=0; wait "$collector" || status=$?
check "SIGTERM: the collector exits 0" 0 "$status"
sleep 1
start_collector
wait "$pusher"
check_pusher "SIGTERM" "$work/term.json"

echo "--- afterwards"
check "no run is half-written" 0 "$(sql "select count(*) from agent_runs r where r.metric_count <> (select count(*) from agent_metrics m where m.run_id = r.id)")"
for _ in $(seq 1 150); do
  [ -z "$(ls "$work/spool"/*.json 2>/dev/null)" ] && break
  sleep 0.2
done
kill -TERM "$scheduler"
status=0; wait "$scheduler" || status=$?
scheduler=""
check "the scheduler exits 0" 0 "$status"
check "the scheduler's spool is empty" 0 "$(ls "$work/spool"/*.json 2>/dev/null | wc -l)"
finished=$(grep -c '"run succeeded"' "$work/scheduler.log" || true)
check "every scheduled run finished is stored once ($finished)" "$finished/$finished" \
  "$(sql "select count(*) || '/' || count(distinct run_key) from agent_runs where agent_name = 'hello'")"

check "no tick was skipped during the outages" 0 "$(grep -c 'tick skipped' "$work/scheduler.log" || true)"

echo "faults: $passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  echo "--- collector log (tail)"; tail -30 "$work/collector.log"
  echo "--- scheduler log (tail)"; tail -30 "$work/scheduler.log"
  exit 1
fi
