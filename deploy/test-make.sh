#!/usr/bin/env bash
# The Makefile's server targets, walked for real on a copy of the deployment files with a
# recording `docker` in front: every docker call is logged; `exec postgres …` runs the same
# command on a real PostgreSQL (scripts/with-postgres.sh finds or starts one), `exec collector
# collector …` runs the real collector binary on it, and `run … scheduler sh -c …` runs the
# same shell command on a local directory standing in for the scheduler's volume.
# Checks: the first deploy issues the scheduler's token and adds its line to .env, later ones
# keep it; a crash-looping collector is reported within seconds with its last log lines;
# rotate-scheduler-token replaces the token and signals the scheduler; passwords with # $
# quotes and spaces survive and never reach a command line; check-env refuses contradictions;
# HTTPS_DOMAIN obtains a certificate; backup-db and restore-db move a database that grants to
# a read-only role onto a "new host" where that role does not exist, and a broken dump changes
# nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${DATABASE_URL:-}" ]; then
  exec scripts/with-postgres.sh -- "$0" "$@"
fi
command -v pg_restore >/dev/null 2>&1 || PATH="$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_restore | sort -V | tail -n 1)"):$PATH"
cargo build --quiet -p collector
collector_bin="$root/target/debug/collector"

work=$(mktemp -d)
src_db="make_src_$$"
dst_db="make_dst_$$"
role="make_ro_$$"
psql_admin() { PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -XAtq "$@"; }
cleanup() {
  psql_admin -c "drop database if exists $src_db" -c "drop database if exists $dst_db" >/dev/null 2>&1 || true
  psql_admin -c "drop owned by $role" -c "drop role if exists $role" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the copy of the deployment, and the recording docker ---
site="$work/site"
mkdir -p "$site/deploy" "$site/nginx" "$work/bin" "$work/volume"
cp Makefile "$site/"
cp deploy/ops.sh "$site/deploy/"
cp nginx/*.conf "$site/nginx/"

# PostgreSQL as the fake containers reach it: libpq's variables, from DATABASE_URL.
eval "$(python3 - "$DATABASE_URL" <<'PY'
import shlex, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
for name, value in [("PGHOST", u.hostname or "localhost"), ("PGPORT", str(u.port or 5432)),
                    ("PGUSER", urllib.parse.unquote(u.username or "")),
                    ("PGPASSWORD", urllib.parse.unquote(u.password or ""))]:
    print(f"export {name}={shlex.quote(value)}")
PY
)"
db_url() { echo "${DATABASE_URL%/*}/$1"; }

cat >"$work/bin/docker" <<'FAKE'
#!/usr/bin/env bash
# A recording docker: one line per call in $FAKE/docker.log; behaviour per call below.
set -uo pipefail
printf '%q ' "$@" >>"$FAKE/docker.log"
echo >>"$FAKE/docker.log"
[ "$1" = inspect ] && { # inspect --format … <id>
  n=$(($(cat "$FAKE/inspections" 2>/dev/null || echo 0) + 1)); echo "$n" >"$FAKE/inspections"
  if [ "${FAKE_CRASH:-}" != "${4#id-}" ]; then echo "running healthy 0 0"
  elif [ "$n" -eq 1 ]; then echo "running starting 0 0"
  else echo "restarting starting 3 1"; fi
  exit 0
}
[ "$1" = compose ] || { echo "fake docker: $*" >&2; exit 2; }
shift
case "$*" in
  "ps --all --quiet "* | "ps --quiet "*) echo "id-${*: -1}" ;;
  "logs --no-color --tail 30 collector") echo "collector: error: COLLECTOR_SECRET_KEY is invalid: shorter than 32 bytes" ;;
  "exec -T collector collector token --sub scheduler --ttl "*)
    echo "eyJhbGciOiJIUzI1NiJ9.token-$RANDOM$RANDOM.c2ln" ;;
  "exec -T collector collector "*)
    shift 4; DATABASE_URL=$FAKE_COLLECTOR_DB WEBAPP_READONLY_PASSWORD=$FAKE_RO_PASSWORD "$FAKE_COLLECTOR_BIN" "$@" ;;
  "exec -T postgres sh -c "* | "exec postgres sh -c "*)
    POSTGRES_USER=$PGUSER POSTGRES_DB=$FAKE_PGDATABASE sh -c "${@: -1}" ;;
  "run --rm --no-deps -T --entrypoint sh scheduler -c "*)
    cmd=${*: -1}; sh -c "${cmd//\/var\/lib\/scheduler/$FAKE/volume}" ;;
  "run --rm --no-deps -T --entrypoint test certbot "*) exit 1 ;;
  "exec -T scheduler curl "*) echo '{"status":"ok","token":{"expires_in_days":364}}' ;;
  *) ;; # pull, build, up, stop, kill, exec nginx, run certbot certonly: recorded only
esac
FAKE
cat >"$work/bin/openssl" <<'FAKE'
#!/usr/bin/env bash
printf '%q ' "$@" >>"$FAKE/openssl.log"
echo >>"$FAKE/openssl.log"
exec /usr/bin/openssl "$@"
FAKE
chmod +x "$work/bin/docker" "$work/bin/openssl"
export FAKE=$work FAKE_COLLECTOR_BIN=$collector_bin FAKE_RO_PASSWORD=ro-password-0123
export PATH="$work/bin:$PATH"

passed=0
failed=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1: expected $2, got $3"; fi
}
mk() { make -s -C "$site" "$@"; }
calls() { grep -c -- "$1" "$work/docker.log" || true; }
reset_log() { : >"$work/docker.log"; rm -f "$work/inspections"; }

status_password='p#ss $word "quoted" spaced'
write_env() { # .env as an operator fills it in, without a COLLECTOR_TOKEN line
  cat >"$site/.env" <<'ENV'
COMPOSE_FILE=docker-compose.yml
POSTGRES_DB=agent_metrics_db
POSTGRES_USER=agent_platform
POSTGRES_PASSWORD=4f1d2c3b4a5968778695a4b3c2d1e0f0
POSTGRES_PUBLISH=
SCHEDULER_STATUS_USER=ops
SCHEDULER_STATUS_PASSWORD='p#ss $word "quoted" spaced' # single quotes: literal
COLLECTOR_SECRET_KEY=8c1f0e3d2b4a59687766554433221100ffeeddccbbaa9988
WEBAPP_READONLY_PASSWORD=ro-password-0123
HTTPS_DOMAIN=
ENV
  chmod 600 "$site/.env"
}

# --- the first deploy ---
write_env
reset_log
mk deploy >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
token=$(ENV_FILE="$site/.env" deploy/ops.sh env-get COLLECTOR_TOKEN)
check "the first deploy adds the COLLECTOR_TOKEN line to .env" 1 "$(grep -c '^COLLECTOR_TOKEN=eyJ' "$site/.env")"
check "and puts the same token in the scheduler's volume" "$token" "$(cat "$work/volume/collector-token")"
check "readable by the scheduler alone" 600 "$(stat -c %a "$work/volume/collector-token")"
check "the token never was on a command line" 0 "$(grep -c -- "$token" "$work/docker.log" || true)"
check ".env keeps its mode" 600 "$(stat -c %a "$site/.env")"
order=$(sed -nE -e 's/^compose build.*/build/p' -e 's/^compose up -d --remove-orphans postgres collector.*/collector/p' \
  -e 's/^compose exec -T collector collector token.*/token/p' -e 's/^compose up -d --remove-orphans *$/everything/p' "$work/docker.log" | tr '\n' ' ')
check "build, then the collector, then its token, then everything" "build collector token everything " "$order"
check "no certificate without HTTPS_DOMAIN" 0 "$(calls certbot)"
check "compose is never given files: it reads COMPOSE_FILE from .env, as a plain docker compose does" 0 "$(calls ' -f ')"
check "nginx reloads its configuration" 1 "$(calls 'exec -T nginx sh -c')"
user=$(cut -d: -f1 "$site/nginx/htpasswd")
hash=$(cut -d: -f2- "$site/nginx/htpasswd")
salt=$(cut -d'$' -f3 <<<"$hash")
check "the status page's login holds the password with # \$ quotes and spaces" "ops:$hash" \
  "$user:$(printf '%s\n' "$status_password" | /usr/bin/openssl passwd -apr1 -salt "$salt" -stdin)"
check "the password never was on openssl's command line" 0 "$(grep -c -F -- 'word' "$work/openssl.log" || true)"

# --- a later deploy keeps the token ---
reset_log
mk deploy >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
check "a later deploy issues no token" 0 "$(calls 'collector token')"
check "and keeps .env's" "$token" "$(ENV_FILE="$site/.env" deploy/ops.sh env-get COLLECTOR_TOKEN)"

# --- a crash-looping collector ---
reset_log
started=$(date +%s)
if FAKE_CRASH=collector mk deploy >"$work/out" 2>&1; then crashed=no; else crashed=yes; fi
elapsed=$(($(date +%s) - started))
check "a crash-looping collector fails the deploy" yes "$crashed"
check "said within a minute" yes "$([ "$elapsed" -lt 60 ] && echo yes || echo "no (${elapsed} s)")"
check "as a crash loop" 1 "$(grep -c 'collector is crash-looping' "$work/out")"
check "with the collector's last log lines" 1 "$(grep -c 'COLLECTOR_SECRET_KEY is invalid' "$work/out")"
check "nothing else started" 0 "$(grep -c '^compose up -d --remove-orphans *$' "$work/docker.log" || true)"

# --- rotation ---
reset_log
mk rotate-scheduler-token >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
new=$(ENV_FILE="$site/.env" deploy/ops.sh env-get COLLECTOR_TOKEN)
check "rotation issues a new token" yes "$([ -n "$new" ] && [ "$new" != "$token" ] && echo yes || echo no)"
check "one COLLECTOR_TOKEN line in .env" 1 "$(grep -c '^COLLECTOR_TOKEN=' "$site/.env")"
check "the scheduler's volume has it" "$new" "$(cat "$work/volume/collector-token")"
check "the running scheduler is told (SIGHUP)" 1 "$(calls 'kill -s SIGHUP scheduler')"
check "nothing is restarted" 0 "$(calls -E '^compose (up|restart|stop)')"

# --- check-env ---
write_env
sed -i 's/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=change-me/' "$site/.env"
check "a placeholder stops deploy" 1 "$(mk deploy 2>&1 | grep -c 'replace the placeholders')"
write_env
sed -i 's/^POSTGRES_PUBLISH=.*/POSTGRES_PUBLISH=10.0.0.5:5432/' "$site/.env"
check "POSTGRES_PUBLISH without its compose file stops deploy" 1 "$(mk check-env 2>&1 | grep -c 'COMPOSE_FILE=docker-compose.yml:docker-compose.postgres-port.yml')"
sed -i 's/^COMPOSE_FILE=.*/COMPOSE_FILE=docker-compose.yml:docker-compose.postgres-port.yml/' "$site/.env"
check "with it, check-env passes" 0 "$(mk check-env >/dev/null 2>&1; echo $?)"
write_env
sed -i 's/^HTTPS_DOMAIN=.*/HTTPS_DOMAIN=metrics.example.com/' "$site/.env"
check "HTTPS_DOMAIN without HTTPS_EMAIL stops deploy" 1 "$(mk check-env 2>&1 | grep -c 'set HTTPS_EMAIL')"

# --- HTTPS ---
echo 'HTTPS_EMAIL=ops@example.com' >>"$site/.env"
reset_log
mk deploy >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
check "HTTPS_DOMAIN: a certificate is obtained for it" 1 \
  "$(calls 'run --rm --no-deps -T certbot certonly --webroot -w /var/www/acme -d metrics.example.com --email ops@example.com')"
check "then nginx switches to it" yes "$(tail -n 3 "$work/docker.log" | grep -q 'exec -T nginx sh -c' && echo yes || echo no)"

# --- backup onto a new host, restore there ---
psql_admin -c "create database $src_db" -c "create database $dst_db" >/dev/null
DATABASE_URL=$(db_url "$src_db") "$collector_bin" migrate >/dev/null
DATABASE_URL=$(db_url "$src_db") WEBAPP_READONLY_PASSWORD=ro-password-0123 "$collector_bin" grant-readonly --role "$role" >/dev/null
psql "$(db_url "$src_db")" -XAtq -c "insert into agent_runs (agent_name, started_at, finished_at, status) select 'restored', now(), now(), 'success' from generate_series(1, 42)"
reset_log
FAKE_PGDATABASE=$src_db mk backup-db >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
dump=$(ls "$site"/backups/*.dump)
check "backup-db writes a dump" yes "$([ -s "$dump" ] && echo yes || echo no)"
check "that grants to the read-only role" yes "$(pg_restore -f - "$dump" | grep -q "GRANT SELECT ON TABLE public.agent_runs TO $role" && echo yes || echo no)"
# The new host: its own database (migrated by a fresh collector), no read-only role at all.
psql "$(db_url "$src_db")" -XAtq -c "drop owned by $role" -c "drop role $role"
DATABASE_URL=$(db_url "$dst_db") "$collector_bin" migrate >/dev/null
reset_log
if FAKE_PGDATABASE=$dst_db FAKE_COLLECTOR_DB=$(db_url "$dst_db") mk restore-db FILE="$dump" ROLE="$role" >"$work/out" 2>&1; then restored=yes; else restored=no; cat "$work/out"; fi
check "restore-db onto a host without the role succeeds" yes "$restored"
check "the data is there" 42 "$(psql "$(db_url "$dst_db")" -XAtqc "select count(*) from agent_runs where agent_name = 'restored'")"
check "the read-only role exists again and may read" 42 \
  "$(psql "$(db_url "$dst_db")" -XAtqc "set role $role; select count(*) from agent_runs")"
check "the services were stopped, then brought back" "stop up" \
  "$(grep -oE '^compose (stop|up -d) collector scheduler' "$work/docker.log" | awk '{print $2}' | tr '\n' ' ' | sed 's/ $//')"
# A broken dump: the restore changes nothing, and says so.
head -c 4000 "$dump" >"$work/broken.dump"
reset_log
if FAKE_PGDATABASE=$dst_db FAKE_COLLECTOR_DB=$(db_url "$dst_db") mk restore-db FILE="$work/broken.dump" ROLE="$role" >"$work/out" 2>&1; then broken=accepted; else broken=refused; fi
check "a broken dump fails the restore" refused "$broken"
check "saying it changed nothing" 1 "$(grep -c 'changed nothing' "$work/out")"
check "and it did not" 42 "$(psql "$(db_url "$dst_db")" -XAtqc "select count(*) from agent_runs where agent_name = 'restored'")"
check "the services are back" 1 "$(calls 'up -d collector scheduler')"

echo "make: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
