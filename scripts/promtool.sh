#!/usr/bin/env bash
# Prometheus's own checker over both /prometheus pages after real traffic: every metric has its
# HELP text and follows Prometheus's naming rules. The collector runs on a SQLite file, the
# scheduler runs `hello` every second against it; promtool comes from Debian's `prometheus`
# package, installed where missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fail() { echo "promtool: FAILED: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v promtool >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --quiet -p collector -p scheduler
work=$(mktemp -d)
collector_port=$(free_port)
scheduler_port=$(free_port)
export COLLECTOR_SECRET_KEY=promtool-secret-promtool-secret-0123456789
DATABASE_URL="sqlite://$work/metrics.db" COLLECTOR_ADDR="127.0.0.1:$collector_port" RUST_LOG=warn \
  target/debug/collector serve 2>"$work/collector.log" &
collector=$!
trap 'kill -TERM $collector ${scheduler:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$collector_port/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
token=$(target/debug/collector token --sub promtool)
printf '[agents.hello]\ncron = "* * * * * *"\n' >"$work/schedules.toml"
COLLECTOR_URL="http://127.0.0.1:$collector_port" COLLECTOR_TOKEN=$token SCHEDULES_FILE="$work/schedules.toml" \
  SPOOL_DIR="$work/spool" SCHEDULER_ADDR="127.0.0.1:$scheduler_port" RUST_LOG=warn \
  target/debug/scheduler serve 2>"$work/scheduler.log" &
scheduler=$!

# Traffic: pushes (one repeated, so duplicates are counted), reads, a refusal, scheduled runs.
report='{"agent_name":"promtool","metrics":{"x":1},"started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:01Z","run_key":"7d1c3f4e-2a6b-4c1d-9e8f-0a1b2c3d4e5f"}'
for _ in 1 2; do
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "$report" "http://127.0.0.1:$collector_port/metrics" || fail "push"
done
curl -sS -o /dev/null "http://127.0.0.1:$collector_port/runs"
sleep 4

check() { # name url families...
  local name=$1 url=$2; shift 2
  local page; page=$(curl -fsS "$url") || fail "$name: $url"
  for family in "$@"; do
    grep -q "^# HELP $family " <<<"$page" || fail "$name: no HELP for $family"
  done
  if ! out=$(promtool check metrics <<<"$page" 2>&1); then fail "$name: promtool: $out"; fi
  [ -z "$out" ] || fail "$name: promtool: $out"
  echo "promtool: $name: $(grep -c '^# HELP ' <<<"$page") metrics, each with HELP; promtool check metrics: clean"
}
check collector "http://127.0.0.1:$collector_port/prometheus" \
  http_requests_total http_request_duration_seconds collector_runs_stored_total \
  collector_metrics_stored_total collector_runs_duplicate_total collector_batch_size \
  collector_db_pool_connections collector_db_pool_max_connections
check scheduler "http://127.0.0.1:$scheduler_port/prometheus" \
  scheduler_runs_total scheduler_run_duration_seconds scheduler_last_success_timestamp_seconds \
  scheduler_fire_lateness_seconds scheduler_spool_depth
