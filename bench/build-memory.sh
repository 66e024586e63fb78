#!/usr/bin/env bash
# The memory a release build of the two binaries needs, as `make deploy` does it on a server:
# the peak of the summed resident memory of cargo, rustc, the linker and build scripts, sampled
# every 0.5 s, in a fresh target directory. docs/deploy.md quotes it.
#   bench/build-memory.sh        (takes a full release build: ~5 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
started=$(date +%s)
CARGO_TARGET_DIR=$target cargo build --release --locked --quiet -p collector -p scheduler &
build=$!
peak=0
while kill -0 "$build" 2>/dev/null; do
  total=$(ps -eo rss=,comm= | awk '$2 ~ /^(rustc|cargo|cc|c\+\+|ld|ld\.lld|collect2|build-script)/ {s += $1} END {print s + 0}')
  [ "$total" -gt "$peak" ] && peak=$total
  sleep 0.5
done
wait "$build"
echo "release build: $(($(date +%s) - started)) s on $(nproc) cores, peak memory $((peak / 1024)) MiB"
