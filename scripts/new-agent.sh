#!/usr/bin/env bash
# `make new-agent NAME=x`: a new agent crate under agents/x, wired into the scheduler so that it
# cannot be left out of the binary (the workspace already includes agents/*).
set -euo pipefail
name=${1:-}
if ! [[ $name =~ ^[a-z][a-z0-9_]{0,62}$ ]]; then
  echo "usage: make new-agent NAME=my_agent   (lowercase letters, digits and _; it is the crate's and the agent's name)" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir="agents/$name"
if [ -e "$dir" ]; then echo "$dir already exists" >&2; exit 1; fi
type_name=$(echo "$name" | sed -E 's/(^|_)([a-z0-9])/\U\2/g')

mkdir -p "$dir/src"
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "$name"
description = "TODO: what $name does"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[dependencies]
agent-sdk = { workspace = true, features = ["runtime"] }

[dev-dependencies]
tokio = { workspace = true, features = ["macros", "rt"] }

[lints]
workspace = true
TOML
cat >"$dir/src/lib.rs" <<RUST
//! \`$name\`: TODO: say what it does and which parameters it reads.

use agent_sdk::wire::Metrics;
use agent_sdk::{Agent, RunContext, RunResult, async_trait, register_agent};

pub struct $type_name;

#[async_trait]
impl Agent for $type_name {
    fn name(&self) -> &'static str {
        "$name"
    }

    fn default_schedule(&self) -> Option<&'static str> {
        Some("0 */5 * * * *") // every 5 minutes; schedules.toml can override it
    }

    async fn run(&self, _ctx: &RunContext) -> RunResult {
        // Do the work here; return metrics (numbers, strings, booleans) or an error.
        let mut metrics = Metrics::new();
        metrics.set("items_processed", 0);
        Ok(metrics)
    }
}

register_agent!($type_name);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs() {
        let metrics = $type_name.run(&RunContext::new("$name")).await.unwrap();
        assert!(metrics.get("items_processed").is_some());
    }
}
RUST

# The scheduler depends on it and references it, so the linker keeps its registration.
sed -i "/^http_probe = { path = \"..\/agents\/http_probe\" }$/a $name = { path = \"../agents/$name\" }" scheduler/Cargo.toml
grep -q "^$name = { path" scheduler/Cargo.toml || { echo "could not add $name to scheduler/Cargo.toml" >&2; exit 1; }
last_use=$(grep -n '^use [a-z0-9_]* as _;$' scheduler/src/lib.rs | tail -n 1 | cut -d: -f1)
sed -i "${last_use}a use $name as _;" scheduler/src/lib.rs

# Its job in the schedule file, which is the whole truth of what runs: its default schedule.
if [ -f schedules.toml ] && ! grep -q "^\[agents\.$name\]" schedules.toml; then
  printf '\n[agents.%s]\ncron = "0 */5 * * * *"        # every 5 minutes (its default schedule)\n' "$name" >>schedules.toml
fi

# Cargo.lock gains the new crate, so that `--locked` builds (the Docker image's) still work.
cargo update --workspace --offline --quiet

# rustfmt's layout (a long name wraps the test's call; the scheduler's `use` lines sort).
if cargo fmt --version >/dev/null 2>&1; then cargo fmt -p "$name" -p scheduler; fi

echo "created $dir (agent \`$name\`), added to scheduler/Cargo.toml, scheduler/src/lib.rs and schedules.toml"
echo "next: write run() in $dir/src/lib.rs, then: cargo run -p scheduler -- run $name --no-push"
