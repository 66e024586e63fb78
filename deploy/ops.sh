#!/usr/bin/env bash
# The deployment's operations behind the Makefile's server targets (docs/deploy.md):
#   deploy/ops.sh deploy | check-env | htpasswd | rotate-token | backup | restore FILE |
#                 shell-db | wait-healthy SERVICE [SECONDS] | env-get NAME
# Settings come from .env, read the way docker compose reads it and never as make or shell
# syntax, so values may hold # $ quotes and spaces. docker compose reads COMPOSE_FILE from
# .env too, so a plain `docker compose …` and these commands act on the same files.
# deploy/test-make.sh runs every command against a recording docker and a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

ENV_FILE=${ENV_FILE:-.env}
HTPASSWD_FILE=${HTPASSWD_FILE:-nginx/htpasswd}
# The scheduler reads its collector token from this file in its volume (COLLECTOR_TOKEN_FILE
# in docker-compose.yml), re-read when it changes: a new token needs no restart.
TOKEN_IN_VOLUME=/var/lib/scheduler/collector-token
# How long a service may take to become healthy before deploy gives up (a crash loop is
# reported as soon as it is seen).
HEALTHY_WITHIN=${HEALTHY_WITHIN:-60}

compose() { docker compose "$@"; }
say() { printf '%s\n' "$*"; }
die() {
  printf '%s\n' "$*" >&2
  exit 1
}

# NAME's value in .env: 'single quotes' literally; "double quotes" with \" \\ \n \$ escapes;
# unquoted up to a " #" comment, trimmed. Empty when unset; the last line wins.
env_get() {
  local name=$1 line value=""
  [ -f "$ENV_FILE" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line#export }
    [[ $line == "$name="* || $line =~ ^${name}[[:space:]]+= ]] || continue
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    case $value in
      \'*)
        value=${value#\'}
        value=${value%%\'*}
        ;;
      \"*)
        local rest=${value#\"} out="" c
        while [ -n "$rest" ]; do
          c=${rest:0:1}
          rest=${rest:1}
          if [ "$c" = '\' ]; then
            c=${rest:0:1}
            rest=${rest:1}
            [ "$c" = n ] && c=$'\n'
          elif [ "$c" = '"' ]; then
            break
          fi
          out+=$c
        done
        value=$out
        ;;
      *)
        value=$(sed -E 's/[[:space:]]+#.*$//; s/[[:space:]]+$//' <<<"$value")
        ;;
    esac
  done <"$ENV_FILE"
  printf '%s' "$value"
}

# Sets NAME in .env: its line replaced (the last one, if several), or one added. The value is
# single-quoted unless it is made of characters that need no quotes.
env_set() {
  local name=$1 value=$2 quoted tmp
  if [[ $value =~ ^[A-Za-z0-9._~:/@+=,-]*$ ]]; then
    quoted=$value
  elif [[ $value != *\'* ]]; then
    quoted="'$value'"
  else
    die "env_set: $name's value holds a single quote"
  fi
  tmp=$(mktemp "$ENV_FILE.XXXXXX")
  chmod --reference="$ENV_FILE" "$tmp" 2>/dev/null || chmod 600 "$tmp"
  awk -v name="$name" -v line="$name=$quoted" '
    { lines[NR] = $0 }
    $0 ~ "^[[:space:]]*(export[[:space:]]+)?" name "[[:space:]]*=" { last = NR }
    END {
      for (i = 1; i <= NR; i++) print (i == last ? line : lines[i])
      if (!last) print line
    }' "$ENV_FILE" >"$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

cmd_check_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE is missing: cp .env.example .env, then fill it in (docs/deploy.md)"
  local placeholders
  placeholders=$(grep -nE "^[[:space:]]*[A-Z_]+=[\"']?change-me" "$ENV_FILE" || true)
  [ -z "$placeholders" ] || die "$placeholders
replace the placeholders above in $ENV_FILE first"
  local publish files
  publish=$(env_get POSTGRES_PUBLISH)
  files=$(env_get COMPOSE_FILE)
  if [ -n "$publish" ] && [[ $files != *docker-compose.postgres-port.yml* ]]; then
    die "POSTGRES_PUBLISH is set but COMPOSE_FILE does not name docker-compose.postgres-port.yml: set COMPOSE_FILE=docker-compose.yml:docker-compose.postgres-port.yml in $ENV_FILE"
  fi
  if [ -n "$(env_get HTTPS_DOMAIN)" ] && [ -z "$(env_get HTTPS_EMAIL)" ]; then
    die "HTTPS_DOMAIN is set: set HTTPS_EMAIL too (Let's Encrypt writes there about expiring certificates)"
  fi
  return 0
}

# nginx/htpasswd from SCHEDULER_STATUS_USER and SCHEDULER_STATUS_PASSWORD. The password goes to
# openssl on its standard input, never on a command line (where `ps` would show it).
cmd_htpasswd() {
  local user password hash tmp
  user=$(env_get SCHEDULER_STATUS_USER)
  password=$(env_get SCHEDULER_STATUS_PASSWORD)
  [ -n "$user" ] && [ -n "$password" ] || die "set SCHEDULER_STATUS_USER and SCHEDULER_STATUS_PASSWORD in $ENV_FILE"
  [[ $user != *:* ]] || die "SCHEDULER_STATUS_USER may not contain ':'"
  hash=$(printf '%s\n' "$password" | openssl passwd -apr1 -stdin) || die "openssl passwd failed"
  tmp=$(mktemp "$HTPASSWD_FILE.XXXXXX")
  printf '%s:%s\n' "$user" "$hash" >"$tmp"
  # nginx's workers read it as an unprivileged user; it holds a hash, not the password.
  chmod 644 "$tmp"
  mv -f "$tmp" "$HTPASSWD_FILE"
}

# Waits until every container of SERVICE is healthy (or running, without a health check).
# A container that restarts or exits is a crash loop: said at once, with its last log lines.
cmd_wait_healthy() {
  local service=$1 within=${2:-$HEALTHY_WITHIN} ids id state started deadline
  declare -A restarts=()
  started=$(date +%s)
  deadline=$((started + within))
  while :; do
    ids=$(compose ps --all --quiet "$service")
    [ -n "$ids" ] || die "$service has no container: is it in COMPOSE_FILE's files?"
    local all_ready=1
    for id in $ids; do
      # status health restarts exit-code
      read -r -a state < <(docker inspect --format \
        '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}} {{.State.ExitCode}}' "$id")
      : "${restarts[$id]:=${state[2]}}"
      if [ "${state[0]}" = restarting ] || [ "${state[0]}" = exited ] || [ "${state[0]}" = dead ] \
        || [ "${state[2]}" -gt "${restarts[$id]}" ]; then
        say "$service is crash-looping (container ${id:0:12}: ${state[0]}, exit code ${state[3]}, restarted $((state[2] - restarts[$id])) time(s) in $(($(date +%s) - started)) s). Its last log lines:" >&2
        compose logs --no-color --tail 30 "$service" >&2 || true
        die "$service did not start: the lines above say why (often a setting in $ENV_FILE; docs/deploy.md, Troubleshooting)"
      fi
      case ${state[1]} in
        healthy) ;;
        none) [ "${state[0]}" = running ] || all_ready=0 ;;
        *) all_ready=0 ;;
      esac
    done
    if [ "$all_ready" = 1 ]; then
      say "$service is healthy"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "$service is not healthy after ${within} s. Its last log lines:" >&2
      compose logs --no-color --tail 30 "$service" >&2 || true
      die "$service did not become healthy: the lines above say why"
    fi
    sleep 2
  done
}

# Writes TOKEN where the scheduler reads it, in its volume, as the scheduler's own user; the
# token travels on standard input. Works whether the scheduler runs or not.
install_token() {
  printf '%s\n' "$1" | compose run --rm --no-deps -T --entrypoint sh scheduler -c \
    "umask 077 && cat >$TOKEN_IN_VOLUME.new && mv -f $TOKEN_IN_VOLUME.new $TOKEN_IN_VOLUME" \
    || die "could not write the token into the scheduler's volume"
}

# A new token for the scheduler, signed by the running collector, into .env (line replaced or
# added) and the scheduler's volume.
issue_token() {
  local ttl=$1 token
  token=$(compose exec -T collector collector token --sub scheduler --ttl "$ttl") \
    || die "the collector could not issue a token (make logs SERVICE=collector)"
  [[ $token =~ ^[A-Za-z0-9._-]+$ ]] || die "the collector answered something that is not a token: $token"
  env_set COLLECTOR_TOKEN "$token"
  install_token "$token"
}

ensure_certificate() {
  local domain email
  domain=$(env_get HTTPS_DOMAIN)
  [ -n "$domain" ] || return 0
  email=$(env_get HTTPS_EMAIL)
  if compose run --rm --no-deps -T --entrypoint test certbot -s "/etc/letsencrypt/live/$domain/fullchain.pem"; then
    return 0
  fi
  say "obtaining a certificate for $domain from Let's Encrypt (port 80 must reach this host)"
  compose run --rm --no-deps -T certbot certonly --webroot -w /var/www/acme -d "$domain" \
    --email "$email" --agree-tos --non-interactive --keep-until-expiring \
    || die "no certificate for $domain: check that its DNS points here and port 80 is open; nginx serves HTTP meanwhile"
}

# nginx chooses its site again (HTTP or HTTPS, the certificate) and reloads: picks up
# nginx/*.conf after a git pull and a newly obtained certificate, without dropping connections.
reload_nginx() {
  compose exec -T nginx sh -c '/docker-entrypoint.d/40-agent-platform.sh --select-only \
    && nginx -c /etc/nginx/agent-platform/nginx.conf -t -q && nginx -c /etc/nginx/agent-platform/nginx.conf -s reload' \
    || die "nginx refused its configuration (above); it keeps serving the one it had"
}

cmd_deploy() {
  cmd_check_env
  cmd_htpasswd
  # The images built elsewhere (postgres, nginx, certbot) at their tags' latest releases.
  compose pull --quiet --ignore-buildable
  say "building the images (a release build needs about 1.1 GiB of memory: docs/deploy.md)"
  compose build
  compose up -d --remove-orphans postgres collector
  cmd_wait_healthy collector
  if [ -z "$(env_get COLLECTOR_TOKEN)" ]; then
    issue_token 365d
    say "issued the scheduler's token (valid 365 days) into $ENV_FILE as COLLECTOR_TOKEN; renew it with make rotate-scheduler-token"
  else
    install_token "$(env_get COLLECTOR_TOKEN)"
  fi
  compose up -d --remove-orphans
  cmd_wait_healthy scheduler
  cmd_wait_healthy nginx
  ensure_certificate
  reload_nginx
  compose ps
}

cmd_rotate_token() {
  local ttl=${TTL:-365d}
  cmd_wait_healthy collector
  issue_token "$ttl"
  if [ -n "$(compose ps --quiet scheduler)" ]; then
    compose kill -s SIGHUP scheduler >/dev/null
    say "new scheduler token (valid $ttl) in $ENV_FILE and in use: the scheduler re-read it; its spool is delivered with it"
    compose exec -T scheduler curl -fsS http://127.0.0.1:8001/health || true
    echo
  else
    say "new scheduler token (valid $ttl) in $ENV_FILE; the scheduler is not running: it reads it when it starts (make deploy)"
  fi
}

cmd_backup() {
  local file tmp
  mkdir -p backups
  file="backups/$(date -u +%Y%m%dT%H%M%SZ).dump"
  tmp="$file.partial"
  compose exec -T postgres sh -c 'exec pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Fc' >"$tmp" \
    || { rm -f "$tmp"; die "pg_dump failed (above): no backup written"; }
  mv -f "$tmp" "$file"
  ls -lh "$file"
}

# Restores a pg_dump in one transaction (a failure changes nothing), without the dump's owners
# and grants (a new host may lack their roles), then brings the services back and grants the
# read-only role again.
cmd_restore() {
  local file=${1:-} role=${ROLE:-webapp_readonly} restored=yes
  [ -n "$file" ] && [ -f "$file" ] || die "usage: make restore-db FILE=backups/<time>.dump"
  compose up -d postgres
  cmd_wait_healthy postgres
  say "stopping the collector and the scheduler while restoring"
  compose stop collector scheduler
  compose exec -T postgres sh -c \
    'exec pg_restore -U "$POSTGRES_USER" -d "$POSTGRES_DB" --clean --if-exists --no-owner --no-acl --single-transaction' \
    <"$file" || restored=no
  compose up -d collector scheduler
  cmd_wait_healthy collector
  if [ "$restored" = no ]; then
    die "the restore failed (above) and changed nothing: the services run on the data as it was"
  fi
  say "restored $file"
  if [ -n "$(env_get WEBAPP_READONLY_PASSWORD)" ]; then
    compose exec -T collector collector grant-readonly --role "$role" \
      || die "restored, but the read-only role $role was not granted: make readonly-user ROLE=$role"
  else
    say "WEBAPP_READONLY_PASSWORD is empty: no read-only role granted (make readonly-user when you set it)"
  fi
}

cmd_shell_db() {
  compose exec postgres sh -c 'exec psql -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
}

command=${1:-}
shift || true
case $command in
  deploy) cmd_deploy ;;
  check-env) cmd_check_env ;;
  htpasswd) cmd_htpasswd ;;
  rotate-token) cmd_rotate_token ;;
  backup) cmd_backup ;;
  restore) cmd_restore "$@" ;;
  shell-db) cmd_shell_db ;;
  wait-healthy) cmd_wait_healthy "$@" ;;
  env-get) env_get "$1" ;;
  *) die "usage: deploy/ops.sh deploy|check-env|htpasswd|rotate-token|backup|restore FILE|shell-db|wait-healthy SERVICE [SECONDS]|env-get NAME" ;;
esac
