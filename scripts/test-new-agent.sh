#!/usr/bin/env bash
# `make new-agent NAME=x`, for real, on a copy of the workspace: the new crate builds, passes its
# own test, is formatted and lint-clean, and the scheduler binary runs it (its registration
# survived linking). Run by .ci/run. The copy builds into this checkout's target/ (dependencies
# are not compiled again); this checkout's own scheduler binary is relinked at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
restore() { rm -rf "$work"; (cd "$root" && cargo build --quiet -p scheduler) || true; }
trap restore EXIT
fail() { echo "test-new-agent: FAILED: $*" >&2; exit 1; }

# The tracked files only, as a fresh clone has them.
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work")
cd "$work"
export CARGO_TARGET_DIR="$root/target"

make new-agent NAME=price_watch >/dev/null || fail "make new-agent"
make new-agent NAME=alpha_feed >/dev/null || fail "make new-agent (a name that sorts first)"
[ -f agents/price_watch/src/lib.rs ] || fail "agents/price_watch was not created"
make new-agent NAME=price_watch >/dev/null 2>&1 && fail "a second run must refuse an existing agent"
make new-agent NAME=Bad-Name >/dev/null 2>&1 && fail "a bad name must be refused"

# --locked first: nothing may have rewritten Cargo.lock since make new-agent.
cargo build --quiet --locked -p scheduler || fail "the scheduler with the new agents, --locked (as the image builds)"
cargo fmt --all --check || fail "the new crate is not formatted"
cargo test --quiet -p price_watch -p alpha_feed || fail "the new crate's test"
cargo clippy --quiet -p price_watch -p alpha_feed -p scheduler -- -D warnings || fail "clippy on the new crate"
out=$(RUST_LOG=error SCHEDULES_FILE=none.toml SPOOL_DIR="$work/spool" "$CARGO_TARGET_DIR/debug/scheduler" run price_watch --no-push) \
  || fail "scheduler run price_watch"
grep -q '"items_processed": 0' <<<"$out" || fail "unexpected output: $out"
RUST_LOG=error SCHEDULES_FILE=none.toml SPOOL_DIR="$work/spool" "$CARGO_TARGET_DIR/debug/scheduler" run alpha_feed --no-push >/dev/null \
  || fail "scheduler run alpha_feed"
# The schedule file is the whole truth of what runs: the new agents have their tables in it.
for agent in price_watch alpha_feed; do
  grep -q "^\[agents\.$agent\]" schedules.toml || fail "schedules.toml has no [agents.$agent]"
done
RUST_LOG=error SCHEDULES_FILE=schedules.toml "$CARGO_TARGET_DIR/debug/scheduler" list | grep -q '^price_watch ' \
  || fail "scheduler list does not show the job price_watch"
echo "test-new-agent: ok (created, formatted, tested, linted, built, scheduled and run by the scheduler)"
