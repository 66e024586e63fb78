#!/usr/bin/env bash
# Fills PostgreSQL's pool of write-ahead log files before a benchmark measures anything.
#
#   bench/warm-wal.sh DATABASE_URL [SEGMENTS]   (default 96 segments: 1.5 GB with 16 MB segments)
#
# A server that has been taking writes keeps its used WAL files and renames them for reuse
# (recycling, sized by min_wal_size and the WAL written between checkpoints). A fresh cluster has
# none: each time the log moves on to a new 16 MB file, PostgreSQL creates it and writes it full
# of zeros while every commit waits. Measured on the bench's cluster (docs/performance.md,
# 2026-12-06): every 0.5-0.9 s under load, all writers' commits held 40-90 ms at once. That is
# the cost of a server's first minutes, not of its steady state, so the benches start from a
# server with its files made: switching the log SEGMENTS times makes them, and the checkpoint
# after it recycles them (the bench's own cluster keeps up to min_wal_size=2GB,
# scripts/with-postgres.sh --durable). Best effort: a server that refuses (no superuser) is
# measured as it is, with a line saying why.
set -euo pipefail
url=${1:?usage: bench/warm-wal.sh DATABASE_URL [SEGMENTS]}
segments=${2:-96}
psql_bin=${PG_BINDIR:+$PG_BINDIR/}psql
if refused=$("$psql_bin" "$url" -XAtq -v ON_ERROR_STOP=1 2>&1 >/dev/null <<SQL
set client_min_messages = warning;
-- A logged table: a temporary one writes no WAL, and a switch with nothing written is a no-op.
drop table if exists bench_wal_warm;
create table bench_wal_warm (i int);
do \$\$
begin
  for i in 1..$segments loop
    insert into bench_wal_warm values (i);
    perform pg_switch_wal();
  end loop;
end
\$\$;
drop table bench_wal_warm;
checkpoint;
SQL
); then
  echo "bench: WAL files made and recycled ($segments segments)" >&2
else
  echo "bench: could not make the server's WAL files in advance ($refused): its first minutes under load include making them" >&2
fi
