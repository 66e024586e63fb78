//! `<spool>/state/last-fires.json`: each job's last slot fired, so that after downtime the
//! missed slots are handled by the job's `catchup_window`.
//!
//! Written once a minute and on stop, whole or not at all ([`agent_sdk::fs::write_atomically`]).
//! A slightly stale value can only re-fire a slot already run, whose `run_key` (derived from
//! the slot) the collector stores once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Engine, lock};

/// How stale the recorded last fires may get.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    fn last_fires_path(&self) -> PathBuf {
        self.0.state_dir.join("last-fires.json")
    }

    /// Reads `last-fires.json` into each job's state; a missing or unreadable file is no
    /// record (every job starts from now).
    pub(super) fn load_last_fires(&self) {
        let path = self.last_fires_path();
        let saved: HashMap<String, DateTime<Utc>> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(file = %path.display(), error = %err, "unreadable last fire times: missed slots since the last run are not caught up");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        for state in &self.0.jobs {
            *lock(&state.last_fire) = saved.get(&state.job.name).copied();
        }
    }

    /// Writes every job's last fire to `last-fires.json` (whole or not at all).
    pub(super) async fn save_last_fires(&self) {
        let fires: HashMap<&str, DateTime<Utc>> = self
            .0
            .jobs
            .iter()
            .filter_map(|s| Some((s.job.name.as_str(), (*lock(&s.last_fire))?)))
            .collect();
        // Nothing fired (or the engine never started): keep what the file says.
        if fires.is_empty() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&fires) else {
            return;
        };
        let path = self.last_fires_path();
        let written =
            tokio::task::spawn_blocking(move || agent_sdk::fs::write_atomically(&path, &bytes))
                .await;
        if let Err(err) = written.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            tracing::error!(error = %err, "cannot record the last fire times (misfire handling after a restart will not know them)");
        }
    }
}
