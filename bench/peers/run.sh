#!/usr/bin/env bash
# Runs the FastAPI + SQLAlchemy peer (the original design's stack) under bench/loadgen and prints
# loadgen's line plus peak_mb (the uvicorn workers' summed peak RSS).
#   bench/peers/run.sh DATABASE_URL CONNECTIONS DURATION LOADGEN
# Needs COLLECTOR_SECRET_KEY and BENCH_TOKEN (signed with it) in the environment; installs the
# peer's packages into target/bench-venv on first use.
set -euo pipefail
url=$1 connections=$2 duration=$3 loadgen=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/uvicorn" ]; then
  echo "peer: installing FastAPI, SQLAlchemy, asyncpg into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2
fi
port=18700
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
# asyncpg takes no sslmode/query options; the driver name goes in the scheme.
peer_url="postgresql+asyncpg://${url#*://}"
PEER_DATABASE_URL=${peer_url%%\?*} "$venv/bin/uvicorn" --app-dir "$here" fastapi_peer:app \
  --host 127.0.0.1 --port "$port" --workers "${PEER_WORKERS:-2}" --no-access-log --log-level warning \
  2>"$root/target/bench-peer.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
sleep 1
out=$("$loadgen" --addr "127.0.0.1:$port" --connections "$connections" --duration "$duration")
peak=0
for p in $(pgrep -P "$pid") "$pid"; do
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
  peak=$((peak + kb))
done
echo "$out peak_mb=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}')"
