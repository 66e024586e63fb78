#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a PostgreSQL server it can create databases on.
#
#   scripts/with-postgres.sh [--data DIR] [--keep] [--durable] -- COMMAND [ARGS...]
#
# 1. DATABASE_URL already set: used as it is.
# 2. Otherwise a local server answering on 127.0.0.1:5432 as `postgres` (PGPORT/PGUSER/PGPASSWORD
#    override): used. PG_THROWAWAY=1 skips this step (CI does, to test the fresh-machine path).
# 3. Otherwise a cluster is created under DIR (default target/pg-test) and started on a free
#    port, installing PostgreSQL with apt-get first where its binaries are missing. It is stopped
#    when the command ends, and deleted too unless --keep is given. A throwaway cluster runs
#    without fsync (tests need speed, not durability) unless --durable is given (benchmarks).
set -euo pipefail

data_dir=""
keep=0
durable=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data_dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --durable) durable=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--data DIR] [--keep] [--durable] -- COMMAND [ARGS...]" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${data_dir:-$root/target/pg-test}
log() { echo "with-postgres: $*" >&2; }

if [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi

find_bindir() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

local_port=${PGPORT:-5432}
local_url="postgres://${PGUSER:-postgres}${PGPASSWORD:+:$PGPASSWORD}@127.0.0.1:$local_port/postgres"
if [ "${PG_THROWAWAY:-0}" != 1 ] && command -v psql >/dev/null 2>&1 \
  && PGCONNECT_TIMEOUT=3 psql "$local_url" -XAtqc 'select 1' >/dev/null 2>&1; then
  log "using the local server on 127.0.0.1:$local_port"
  DATABASE_URL=$local_url exec "$@"
fi

bindir=$(find_bindir || true)
if [ -z "$bindir" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "PostgreSQL is not installed: installing it with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    log "PostgreSQL is not installed: installing it with sudo apt-get"
    sudo apt-get update -qq >&2
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  bindir=$(find_bindir || true)
  [ -n "$bindir" ] || { log "no PostgreSQL found and none could be installed; set DATABASE_URL"; exit 1; }
fi

# PostgreSQL refuses to run as root: run the cluster as an unprivileged user.
as_owner=()
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  if ! id "$owner" >/dev/null 2>&1; then
    owner=pgtest
    id "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
  fi
  as_owner=(runuser -u "$owner" --)
fi

port=55432
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

# $data_dir holds the cluster (cluster/) and its log, all owned by the cluster's user.
cluster="$data_dir/cluster"
pg_log="$data_dir/postgres.log"
mkdir -p "$data_dir"
if [ ${#as_owner[@]} -gt 0 ]; then chown "$owner" "$data_dir"; fi
if [ ! -f "$cluster/PG_VERSION" ]; then
  log "creating a cluster in $cluster"
  "${as_owner[@]}" "$bindir/initdb" -D "$cluster" -U postgres --auth=trust --encoding=UTF8 \
    --no-locale >"$data_dir/initdb.log" 2>&1 || { cat "$data_dir/initdb.log" >&2; exit 1; }
fi

settings="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories= -c max_connections=200"
if [ "$keep" = 0 ] && [ "$durable" = 0 ]; then
  # A throwaway cluster for tests: durability is irrelevant, speed is not.
  settings="$settings -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
if [ "$durable" = 1 ]; then
  # Benchmarks: WAL files are kept for reuse up to 2 GB, as a server sized for its write load
  # keeps them (bench/warm-wal.sh makes them before measuring).
  settings="$settings -c min_wal_size=2GB -c max_wal_size=4GB"
fi

stop() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$cluster" -m fast -w stop >/dev/null 2>&1 || true
  if [ "$keep" = 0 ]; then rm -rf "$data_dir"; fi
}
trap stop EXIT

"${as_owner[@]}" "$bindir/pg_ctl" -D "$cluster" -l "$pg_log" -o "$settings" -w -t 60 start >/dev/null \
  || { cat "$pg_log" >&2; exit 1; }
log "started PostgreSQL ($("$bindir/postgres" --version | awk '{print $3}')) on 127.0.0.1:$port"

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
# For tests that stop and start this cluster (scripts/faults.sh): scripts/pg-cluster.sh uses these.
export PG_CLUSTER_DIR="$cluster" PG_BINDIR="$bindir" PG_CLUSTER_LOG="$pg_log" PG_SETTINGS="$settings"
export PG_OWNER="${owner:-}"
# The command runs in the foreground, so Ctrl-C reaches it; this script waits for it to finish,
# then stops the cluster and passes its status on.
trap ':' INT
status=0
"$@" || status=$?
exit "$status"
