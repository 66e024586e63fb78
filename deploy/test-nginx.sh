#!/usr/bin/env bash
# Runs nginx/ for real in front of a real collector (on the PostgreSQL that
# scripts/with-postgres.sh finds or starts), first as HTTP only, then with HTTPS the way
# HTTPS_DOMAIN turns it on (a self-signed certificate in place of Let's Encrypt's).
# HTTP: a push through nginx is stored, an oversized body gets 413, a burst beyond the rate
# limit gets 429, /health passes, the scheduler's page asks for the password (one with # $
# quotes and spaces, made by `make nginx/htpasswd`'s code), and a manual run fired through it
# is stored. HTTPS: HTTP redirects, challenges are answered, the same locations work over TLS,
# health checks pass, and a renewed certificate is served after the reload nginx does itself.
# Upstream names, ports and paths are replaced by loopback addresses and test directories;
# nothing else changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh -- "$0" "$@"
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "test-nginx: installing nginx with apt-get"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \
    || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
chmod 755 "$work"
collector_port=$(free_port)
proxy_port=$(free_port)
tls_port=$(free_port)
status_port=$(free_port)
scheduler_port=$(free_port) # nothing listens there at first: the page must still ask for a password
proxy="http://127.0.0.1:$proxy_port"

cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  pkill -f "$work/agent-platform/40-agent-platform.sh" 2>/dev/null || true
  [ -n "${scheduler_pid:-}" ] && kill -TERM "$scheduler_pid" 2>/dev/null && wait "$scheduler_pid" 2>/dev/null || true
  [ -n "${collector_pid:-}" ] && kill -TERM "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The collector, on a database of its own.
db="nginx_test_$$"
PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -XAtqc "drop database if exists $db" -c "create database $db" >/dev/null
trap 'cleanup; psql "$DATABASE_URL" -XAtqc "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
cargo build --quiet -p collector -p scheduler
export COLLECTOR_SECRET_KEY=nginx-test-secret-nginx-test-secret-0123
DATABASE_URL="${DATABASE_URL%/*}/$db" COLLECTOR_ADDR="127.0.0.1:$collector_port" RUST_LOG=warn \
  target/debug/collector serve &
collector_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$collector_port/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

# nginx/ as docker-compose.yml mounts it, with addresses and paths made local.
conf="$work/agent-platform"
mkdir -p "$conf" "$work/conf.d" "$work/acme/.well-known/acme-challenge" "$work/letsencrypt"
for file in nginx/*.conf nginx/40-agent-platform.sh; do
  sed -e "s#http://collector:8000#http://127.0.0.1:$collector_port#g" \
      -e "s#http://scheduler:8001#http://127.0.0.1:$scheduler_port#g" \
      -e "s#listen 80 default_server#listen 127.0.0.1:$proxy_port default_server#" \
      -e "s#listen 443 ssl default_server#listen 127.0.0.1:$tls_port ssl default_server#" \
      -e "s#listen 127.0.0.1:8080#listen 127.0.0.1:$status_port#" \
      -e "s#/etc/nginx/agent-platform/htpasswd#$work/htpasswd#" \
      -e "s#/etc/nginx/conf.d/#$work/conf.d/#" \
      -e "s#/etc/letsencrypt#$work/letsencrypt#" \
      -e "s#/var/www/acme#$work/acme#" \
      -e "s#access_log /dev/stdout#access_log $work/access.log#" \
      "$file" >"$conf/$(basename "$file")"
done
chmod -R a+rX "$work"
globals="pid $work/nginx.pid; error_log $work/error.log;"
nginx_cmd=("$nginx_bin" -c "$conf/nginx.conf" -g "$globals")
# The image's entrypoint runs this before nginx; HTTPS_DOMAIN empty: HTTP only.
select_site() { # HTTPS_DOMAIN, then options
  HTTPS_DOMAIN=$1 AGENT_PLATFORM_CONF=$conf AGENT_PLATFORM_SITE=$work/conf.d/agent-platform-site.conf \
    LETSENCRYPT_DIR=$work/letsencrypt NGINX_RELOAD="${nginx_cmd[*]@Q} -s reload" \
    CERTIFICATE_CHECK_INTERVAL=1 sh "$conf/40-agent-platform.sh" "${@:2}"
}
select_site "" --select-only >/dev/null

# The status page's login, made by the code behind `make nginx/htpasswd` from a .env whose
# password holds what make and the shell would mangle.
status_password='p#ss $word "quoted" it'"'"'s spaced'
cat >"$work/env" <<'ENV'
SCHEDULER_STATUS_USER=ops
SCHEDULER_STATUS_PASSWORD="p#ss \$word \"quoted\" it's spaced"   # a comment
ENV
ENV_FILE="$work/env" HTPASSWD_FILE="$work/htpasswd" deploy/ops.sh htpasswd
login="ops:$status_password"

"${nginx_cmd[@]}" -t -q
"${nginx_cmd[@]}"
for _ in $(seq 1 50); do curl -s -o /dev/null "$proxy/health" && break; sleep 0.1; done

passed=0
failed=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1: expected $2, got $3"; fi
}

token=$(target/debug/collector token --sub nginx-test --scope ingest --scope read --ttl 1h)
status() { curl -s -o "$work/body" -w '%{http_code}' "$@"; }

check "/health through nginx" 200 "$(status "$proxy/health")"
check "/health/ready through nginx" 200 "$(status "$proxy/health/ready")"

body='{"agent_name":"through_nginx","metrics":{"x":1},"started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:01Z","error":null}'
code=$(curl -s -D "$work/headers" -o "$work/body" -w '%{http_code}' -X POST "$proxy/metrics" \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" -H "X-Request-Id: nginx-test-1" -d "$body")
check "a push through nginx is created" 201 "$code"
run_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/body")
check "X-Request-Id passes through" "nginx-test-1" "$(grep -i '^x-request-id:' "$work/headers" | tr -d '\r' | awk '{print $2}')"
check "the pushed run is stored" 200 "$(status -H "Authorization: Bearer $token" "$proxy/runs/$run_id")"
check "security headers are set" 1 "$(grep -ci '^x-content-type-options: nosniff' "$work/headers")"

python3 -c 'print("{\"agent_name\":\"big\",\"metrics\":{\"blob\":\"" + "x" * (2 * 1024 * 1024) + "\"}}")' >"$work/big.json"
check "an oversized body gets 413" 413 "$(status -D "$work/headers" -X POST "$proxy/metrics" -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "@$work/big.json")"
check "nginx's own 413 carries the security headers" 1 "$(grep -ci '^x-content-type-options: nosniff' "$work/headers")"
check "the 413 is JSON" "payload_too_large" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"]["code"])' "$work/body")"

# A batch over /metrics's 1 MiB but within /metrics/batch's 16 MiB: through whole.
python3 -c '
import json
report = {"agent_name": "nginx_batch", "metrics": {"note": "n" * 2000}, "started_at": "2026-02-19T10:00:00Z", "finished_at": "2026-02-19T10:00:01Z"}
print(json.dumps({"reports": [report] * 1000}))' >"$work/batch.json"
check "a 2 MiB batch passes to /metrics/batch" 200 "$(status -X POST "$proxy/metrics/batch" -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "@$work/batch.json")"
check "every report of it is stored" 1000 "$(python3 -c 'import json,sys; print(sum(r["status"] == 201 for r in json.load(open(sys.argv[1]))["results"]))' "$work/body")"

seq 1 400 | xargs -P 40 -I{} curl -s -o /dev/null \
  -w '%{http_code} %header{x-frame-options} %header{retry-after}\n' -X POST "$proxy/metrics" \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d "$body" >"$work/burst"
limited=$(grep -c '^429 DENY 1$' "$work/burst" || true)
accepted=$(grep -cE '^20[01] DENY $' "$work/burst" || true)
check "a burst beyond the limit gets 429 (with the security headers and Retry-After)" yes "$([ "$limited" -gt 0 ] && echo yes || echo "no ($limited)")"
check "the burst's first requests pass" yes "$([ "$accepted" -ge 100 ] && echo yes || echo "no ($accepted)")"
check "nothing else in the burst" 400 "$((limited + accepted))"
check "a GET is not rate limited" 200 "$(status -H "Authorization: Bearer $token" "$proxy/runs?limit=1")"

check "the scheduler page asks for a password" 401 "$(status "$proxy/scheduler/jobs")"
check "with it, an absent scheduler is a JSON 503" 503 "$(status -D "$work/headers" -u "$login" "$proxy/scheduler/jobs")"
check "nginx's own 503 carries the security headers and Retry-After" "1 1" \
  "$(grep -ci '^x-frame-options: deny' "$work/headers") $(grep -ci '^retry-after: 5' "$work/headers")"
check "/prometheus is not public" 404 "$(status "$proxy/prometheus")"

# The console through nginx: one Content-Security-Policy, the console's (nginx's own would
# block its stylesheet), one copy of each other security header; the API keeps nginx's.
check "the console's sign-in page through nginx" 200 "$(status -D "$work/headers" "$proxy/ui/login")"
check "the console has one CSP, its own, and single security headers" "1 1 1 1" \
  "$(grep -ci '^content-security-policy:' "$work/headers") $(grep -ci "^content-security-policy: default-src 'none'; style-src 'self'" "$work/headers") $(grep -ci '^x-frame-options:' "$work/headers") $(grep -ci '^x-content-type-options:' "$work/headers")"
code=$(curl -s -D "$work/headers" -o /dev/null -w '%{http_code}' -X POST "$proxy/ui/login" \
  -H "Origin: http://127.0.0.1:$proxy_port" --data-urlencode "token=$token")
check "signing in to the console through nginx (the Origin nginx passes matches)" 303 "$code"
check "the API keeps nginx's CSP" 1 \
  "$(curl -s -D - -o /dev/null "$proxy/health" | grep -ci "^content-security-policy: default-src 'none'; frame-ancestors 'none'")"

# A manual run through nginx, as docs/deploy.md shows it: the page's login in Authorization,
# the trigger token in X-Trigger-Token.
printf '[agents.hello]\ncron = "0 0 1 1 *"\n' >"$work/schedules.toml"
COLLECTOR_URL="http://127.0.0.1:$collector_port" COLLECTOR_TOKEN=$token SCHEDULES_FILE="$work/schedules.toml" \
  SPOOL_DIR="$work/spool" SCHEDULER_ADDR="127.0.0.1:$scheduler_port" SCHEDULER_TRIGGER_TOKEN=trigger-secret \
  RUST_LOG=warn target/debug/scheduler serve 2>"$work/scheduler.log" &
scheduler_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$scheduler_port/health" >/dev/null 2>&1 && break; sleep 0.1; done
check "a manual run without the trigger token is refused" 401 \
  "$(status -X POST -u "$login" "$proxy/scheduler/jobs/hello/run")"
check "a manual run through nginx is accepted" 202 \
  "$(status -X POST -u "$login" -H "X-Trigger-Token: trigger-secret" "$proxy/scheduler/jobs/hello/run")"
run_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_key"])' "$work/body")
stored=no
for _ in $(seq 1 100); do
  status -H "Authorization: Bearer $token" "$proxy/runs?agent_name=hello" >/dev/null
  if grep -q "$run_key" "$work/body"; then stored=yes; break; fi
  sleep 0.1
done
check "the manual run is stored" yes "$stored"

# --- HTTPS, as HTTPS_DOMAIN=localhost turns it on ---
check "a domain without its certificate yet: HTTP, saying so" "HTTP" \
  "$(select_site localhost --select-only 2>&1 | grep -o 'HTTP until make deploy' | cut -c1-4)"
certificate() { # serial: a self-signed certificate for localhost where certbot puts one
  local live="$work/letsencrypt/live/localhost" archive="$work/letsencrypt/archive/localhost"
  mkdir -p "$live" "$archive"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost -set_serial "$1" \
    -keyout "$archive/privkey$1.pem" -out "$archive/fullchain$1.pem" 2>/dev/null
  ln -sfn "../../archive/localhost/privkey$1.pem" "$live/privkey.pem"
  ln -sfn "../../archive/localhost/fullchain$1.pem" "$live/fullchain.pem"
  chmod -R a+rX "$work/letsencrypt"
}
certificate 1001
kill "$(cat "$work/nginx.pid")"
for _ in $(seq 1 50); do [ -f "$work/nginx.pid" ] || break; sleep 0.1; done
# As the container starts: the site chosen, the certificate watched, nginx run.
select_site localhost >"$work/select.log" 2>&1
"${nginx_cmd[@]}" -t -q
"${nginx_cmd[@]}"
tls="https://localhost:$tls_port"
tls_curl() { curl -s --cacert "$work/letsencrypt/live/localhost/fullchain.pem" --resolve "localhost:$tls_port:127.0.0.1" "$@"; }
for _ in $(seq 1 50); do tls_curl -o /dev/null "$tls/health" && break; sleep 0.1; done
check "HTTPS chosen for the domain with its certificate" 1 "$(grep -c 'HTTPS for localhost' "$work/select.log")"
code=$(curl -s -D "$work/headers" -o /dev/null -w '%{http_code} %{redirect_url}' "$proxy/runs?limit=1")
check "HTTP redirects to HTTPS" "301 https://127.0.0.1/runs?limit=1" "$code"
check "the redirect carries the security headers" 1 "$(grep -ci '^x-content-type-options: nosniff' "$work/headers")"
echo challenge-token >"$work/acme/.well-known/acme-challenge/t0k3n"
chmod a+r "$work/acme/.well-known/acme-challenge/t0k3n"
check "Let's Encrypt's challenge is answered over HTTP" challenge-token "$(curl -s "$proxy/.well-known/acme-challenge/t0k3n")"
check "/health over HTTPS (the certificate verified)" 200 "$(tls_curl -o /dev/null -w '%{http_code}' "$tls/health")"
check "the container's health check passes" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$status_port/health")"
code=$(tls_curl -D "$work/headers" -o "$work/body" -w '%{http_code}' -X POST "$tls/metrics" \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d "${body/through_nginx/over_tls}")
check "a push over HTTPS is created" 201 "$code"
check "HTTPS answers carry HSTS and the security headers" "1 1" \
  "$(grep -ci '^strict-transport-security: max-age=31536000' "$work/headers") $(grep -ci '^x-frame-options: deny' "$work/headers")"
check "an oversized body over HTTPS gets the JSON 413" 413 \
  "$(tls_curl -o /dev/null -w '%{http_code}' -X POST "$tls/metrics" -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "@$work/big.json")"
check "the scheduler's page over HTTPS asks for the password" 401 "$(tls_curl -o /dev/null -w '%{http_code}' "$tls/scheduler/jobs")"
check "with it, its Prometheus page" 200 "$(tls_curl -o /dev/null -w '%{http_code}' -u "$login" "$tls/scheduler/prometheus")"
serial() { openssl s_client -connect "127.0.0.1:$tls_port" -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial; }
check "the certificate served" "serial=03E9" "$(serial)"
# A renewal: certbot links live/ to new files; nginx reloads by itself within the interval.
certificate 1002
renewed=no
for _ in $(seq 1 50); do
  if [ "$(serial)" = "serial=03EA" ]; then renewed=yes; break; fi
  sleep 0.2
done
check "a renewed certificate is served without a restart" yes "$renewed"

echo "nginx: $passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  echo "--- nginx error log"; cat "$work/error.log" || true
  exit 1
fi
