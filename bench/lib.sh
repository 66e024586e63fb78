# What every bench script does first, sourced as `. "$(dirname "$0")/lib.sh"`: the repository
# as the working directory (`$root`), and `in_a_cluster DIR [--durable] "$@"`, which runs the
# script again inside scripts/with-postgres.sh: DATABASE_URL's server when set, else a
# throwaway cluster under target/DIR (with fsync on, --durable, where timings matter).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

in_a_cluster() {
  local data=$1 durable=()
  shift
  if [ "${1:-}" = --durable ]; then
    durable=(--durable)
    shift
  fi
  if [ -z "${BENCH_IN_CLUSTER:-}" ]; then
    if [ -z "${DATABASE_URL:-}" ]; then export PG_THROWAWAY=1; fi
    exec env BENCH_IN_CLUSTER=1 scripts/with-postgres.sh "${durable[@]}" --data "$root/target/$data" -- "$0" "$@"
  fi
}

# `use_database NAME`: `$url`, DATABASE_URL's server with the database NAME (its query string
# kept), and `$admin_url`, DATABASE_URL itself; `sql ARGS`: psql on `$url`, quiet, stopping at
# the first error.
use_database() {
  admin_url=$DATABASE_URL
  url="${admin_url%/*}/$1"
  case "${admin_url##*/}" in *\?*) url="${admin_url%/*}/$1?${admin_url##*\?}" ;; esac
}
sql() { "${PG_BINDIR:+$PG_BINDIR/}psql" "$url" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# `free_port FROM`: the first port from FROM that nothing listens on.
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# `stop`: stops the collector `$collector_pid` names, if any (also on exit, once
# `trap stop EXIT` is set).
collector_pid=
stop() {
  if [ -n "$collector_pid" ]; then kill "$collector_pid" 2>/dev/null; wait "$collector_pid" 2>/dev/null || true; fi
  collector_pid=
}
