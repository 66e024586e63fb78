#!/usr/bin/env bash
# schemathesis (from PyPI) against a live collector, driven by the collector's own
# /openapi.json, with every check: no 5xx, every response matches the document, every request
# the document allows is accepted and every one it forbids is refused (the document is the
# contract a client generator can trust). SCHEMATHESIS_EXAMPLES per operation (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh -- "$0" "$@"
fi
version=4.32.5
if ! command -v schemathesis >/dev/null 2>&1 || [ "$(schemathesis --version | awk '{print $NF}')" != "$version" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet -p collector
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
db="schemathesis_$$"
PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -XAtqc "drop database if exists $db" -c "create database $db" >/dev/null
export COLLECTOR_SECRET_KEY=schemathesis-secret-schemathesis-secret-01
DATABASE_URL="${DATABASE_URL%/*}/$db" COLLECTOR_ADDR="127.0.0.1:$port" RUST_LOG=warn target/debug/collector serve &
collector=$!
trap 'kill -TERM $collector 2>/dev/null; wait $collector 2>/dev/null; psql "$DATABASE_URL" -XAtqc "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done

token=$(target/debug/collector token --sub schemathesis --scope ingest --scope read --scope operate --ttl 1h)
# The rules no JSON Schema can state (two values, the clock) are written in the document's
# descriptions; scripts/schemathesis_hooks.py drops only refusals that name one of them.
PYTHONPATH="$root/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-300}" --no-color
