//! Runs not yet delivered or spooled, on disk, so that a killed scheduler loses none.
//!
//! An append-only file of JSON lines, `<spool>/state/runs.journal`, written by one thread:
//! - `{"report": {...}}`: a run's current report: while the agent runs, a "failed: interrupted"
//!   placeholder; once it finishes, the real one. The latest line of a `run_key` wins;
//! - `{"done": "<run_key>"}`: delivered or spooled; nothing left to do for it.
//!
//! What is queued is appended with one write, and [`Journal::record`] returns once its line is
//! written. Written means the page cache, not the disk: the journal must survive the process
//! dying, not the machine (the spool, which must, is fsynced). Thousands of runs a second cost
//! a few writes, where a file per run cost four file-system operations each. When the file
//! passes [`COMPACT_BYTES`] it is rewritten with only the live runs.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc;

use agent_sdk::wire::RunReport;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Past this size the journal is rewritten with the live runs only.
pub(super) const COMPACT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Report(RunReport),
    Done(Uuid),
}

enum Entry {
    /// A run's report, serialized as its journal line.
    Report(Uuid, Vec<u8>),
    Done(Uuid),
}

/// The journal's writer. Cheap to clone; the writer thread ends with the last clone.
#[derive(Clone)]
pub(super) struct Journal {
    queue: mpsc::Sender<(Entry, Option<oneshot::Sender<()>>)>,
}

impl Journal {
    /// Reads the runs a previous process left unfinished (their latest reports) and starts the
    /// journal at `path` with just those, so they stay recorded until they are done.
    pub(super) fn open(path: &Path) -> io::Result<(Self, Vec<RunReport>)> {
        let left = read_live(path)?;
        let lines = left
            .iter()
            .map(|(key, report)| Ok((*key, report_line(report)?)))
            .collect::<serde_json::Result<HashMap<_, _>>>()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (file, size) = compact(path, &lines)?;
        let (queue, receiver) = mpsc::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("run-journal".into())
            .spawn(move || write_loop(&path, file, size, lines, &receiver))?;
        Ok((Self { queue }, left.into_values().collect()))
    }

    /// Records `report` as its run's current state; returns once the line is written.
    pub(super) async fn record(&self, report: &RunReport) {
        let Some(run_key) = report.run_key else {
            return;
        };
        let line = match report_line(report) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "cannot journal a run");
                return;
            }
        };
        let (written, wait) = oneshot::channel();
        if self
            .queue
            .send((Entry::Report(run_key, line), Some(written)))
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// The run is delivered or spooled: a restart has nothing to do for it.
    pub(super) fn done(&self, run_key: Uuid) {
        let _ = self.queue.send((Entry::Done(run_key), None));
    }
}

/// A `Line::Report` written from a borrowed report.
#[derive(Serialize)]
struct ReportLine<'a> {
    report: &'a RunReport,
}

fn report_line(report: &RunReport) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&ReportLine { report })?;
    line.push(b'\n');
    Ok(line)
}

/// The latest report of every run without a `done` line. A torn last line (the process died
/// mid-write) is skipped.
fn read_live(path: &Path) -> io::Result<HashMap<Uuid, RunReport>> {
    let mut live = HashMap::new();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(live),
        Err(err) => return Err(err),
    };
    for line in BufReader::new(file).split(b'\n') {
        match serde_json::from_slice::<Line>(&line?) {
            Ok(Line::Report(report)) => {
                if let Some(key) = report.run_key {
                    live.insert(key, report);
                }
            }
            Ok(Line::Done(key)) => {
                live.remove(&key);
            }
            Err(_) => {}
        }
    }
    Ok(live)
}

/// `live` holds the latest line of each live run, for compaction; `size` is the file's.
fn write_loop(
    path: &Path,
    mut file: File,
    mut size: u64,
    mut live: HashMap<Uuid, Vec<u8>>,
    receiver: &mpsc::Receiver<(Entry, Option<oneshot::Sender<()>>)>,
) {
    let mut buffer = Vec::new();
    let mut acks = Vec::new();
    while let Ok(first) = receiver.recv() {
        for (entry, ack) in std::iter::once(first).chain(receiver.try_iter()) {
            match entry {
                Entry::Report(key, line) => {
                    buffer.extend_from_slice(&line);
                    live.insert(key, line);
                }
                Entry::Done(key) => {
                    if live.remove(&key).is_some() {
                        // A UUID always serializes.
                        let _ = serde_json::to_writer(&mut buffer, &Line::Done(key));
                        buffer.push(b'\n');
                    }
                }
            }
            acks.extend(ack);
        }
        if let Err(err) = file.write_all(&buffer) {
            tracing::error!(error = %err, journal = %path.display(), "cannot write the run journal (a run in progress would not be reported if the scheduler died now)");
        }
        size += buffer.len() as u64;
        buffer.clear();
        if size > COMPACT_BYTES {
            match compact(path, &live) {
                Ok((compacted, new_size)) => (file, size) = (compacted, new_size),
                Err(err) => {
                    tracing::error!(error = %err, journal = %path.display(), "cannot compact the run journal");
                    size = 0; // try again after another COMPACT_BYTES
                }
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Rewrites the journal with the live runs only (whole or not at all: rename).
fn compact(path: &Path, live: &HashMap<Uuid, Vec<u8>>) -> io::Result<(File, u64)> {
    let temporary = path.with_extension("journal.tmp");
    let mut file = File::create(&temporary)?;
    let mut size = 0;
    for line in live.values() {
        file.write_all(line)?;
        size += line.len() as u64;
    }
    std::fs::rename(&temporary, path)?;
    let file = OpenOptions::new().append(true).open(path)?;
    Ok((file, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn report(error: Option<&str>) -> RunReport {
        let now = Utc::now();
        RunReport {
            agent_name: "a".into(),
            metrics: Default::default(),
            started_at: now,
            finished_at: now,
            error: error.map(str::to_owned),
            run_key: Some(Uuid::new_v4()),
            trigger: None,
            scheduled_for: None,
            host: None,
            cancelled: false,
        }
    }

    #[tokio::test]
    async fn a_restart_finds_the_latest_report_of_every_run_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/runs.journal");
        let (journal, left) = Journal::open(&path).unwrap();
        assert!(left.is_empty());
        let (running, finished, delivered) =
            (report(Some("interrupted")), report(Some("x")), report(None));
        let finished_now = RunReport {
            error: None,
            ..finished.clone()
        };
        for r in [&running, &finished, &delivered, &finished_now] {
            journal.record(r).await;
        }
        journal.done(delivered.run_key.unwrap());
        journal.record(&report(None)).await; // flushes the `done` before it
        drop(journal);
        // A torn line, as a kill mid-write leaves.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"report":{"agent_na"#)
            .unwrap();

        let (_journal, mut left) = Journal::open(&path).unwrap();

        left.retain(|r| r.run_key == running.run_key || r.run_key == finished.run_key);
        left.sort_by_key(|r| r.run_key != running.run_key);
        assert_eq!(left, vec![running, finished_now]);
    }

    #[tokio::test]
    async fn compaction_keeps_the_live_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.journal");
        let (journal, _) = Journal::open(&path).unwrap();
        let live = report(Some("interrupted"));
        journal.record(&live).await;
        let big = "e".repeat(64 * 1024);
        for _ in 0..(COMPACT_BYTES / (64 * 1024) + 8) {
            let r = report(Some(&big));
            journal.record(&r).await;
            journal.done(r.run_key.unwrap());
        }
        journal.record(&report(None)).await;
        let size = std::fs::metadata(&path).unwrap().len();
        drop(journal);

        assert!(size < COMPACT_BYTES / 2, "compacted: {size} bytes");
        let (_journal, left) = Journal::open(&path).unwrap();
        assert!(left.contains(&live), "{left:?}");
    }
}
