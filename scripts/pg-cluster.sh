#!/usr/bin/env bash
# stop | start the throwaway cluster that scripts/with-postgres.sh started (for fault tests).
set -euo pipefail
: "${PG_CLUSTER_DIR:?run under scripts/with-postgres.sh with its own cluster (PG_THROWAWAY=1)}"
run=()
if [ -n "${PG_OWNER:-}" ]; then run=(runuser -u "$PG_OWNER" --); fi
case "${1:-}" in
  stop) "${run[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_CLUSTER_DIR" -m fast -w stop >/dev/null ;;
  start) "${run[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_CLUSTER_DIR" -l "$PG_CLUSTER_LOG" -o "$PG_SETTINGS" -w -t 60 start >/dev/null ;;
  *) echo "usage: $0 stop|start" >&2; exit 2 ;;
esac
