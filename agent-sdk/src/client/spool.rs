//! The spool: one JSON file per undelivered report, named so that names sort oldest first,
//! written atomically (temporary file, fsync, rename, fsync of the folder) so that a crash
//! never leaves half a report. Refused reports go to `rejected/` with the collector's answer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;

use crate::wire::RunReport;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {path} is not a report: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A spool folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// Opens (creating) `dir` and `dir/rejected`, and checks that it can be written.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let spool = Self { dir: dir.into() };
        let rejected = spool.rejected_dir();
        std::fs::create_dir_all(&rejected).map_err(io(&rejected))?;
        spool.check_writable()?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rejected_dir(&self) -> PathBuf {
        self.dir.join("rejected")
    }

    /// Writes and removes a probe file: `Err` says why the spool is unusable (full,
    /// read-only, gone).
    pub fn check_writable(&self) -> Result<(), SpoolError> {
        let probe = self.dir.join(".probe");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(io(&probe))
    }

    /// Adds `report` for redelivery.
    pub async fn store(&self, report: &RunReport) -> Result<PathBuf, SpoolError> {
        let name = entry_name(report);
        let dir = self.dir.clone();
        let bytes = serde_json::to_vec(report).map_err(|source| SpoolError::Corrupt {
            path: dir.join(&name),
            source,
        })?;
        blocking(move || write_atomically(&dir, &name, &bytes)).await
    }

    /// Keeps a report the collector refused, beside the collector's answer.
    pub async fn reject(
        &self,
        report: &RunReport,
        status: u16,
        answer: &str,
    ) -> Result<(), SpoolError> {
        let name = entry_name(report);
        let dir = self.rejected_dir();
        let bytes = serde_json::to_vec_pretty(report).map_err(|source| SpoolError::Corrupt {
            path: dir.join(&name),
            source,
        })?;
        let answer = format!("{status} {answer}\n");
        blocking(move || {
            write_atomically(&dir, &name, &bytes)?;
            write_atomically(&dir, &format!("{name}.answer.txt"), answer.as_bytes())?;
            Ok(())
        })
        .await
    }

    /// Moves a spooled file to `rejected/` with `why` beside it.
    pub async fn reject_file(&self, path: &Path, why: &str) -> Result<(), SpoolError> {
        let (path, rejected, why) = (path.to_owned(), self.rejected_dir(), why.to_owned());
        blocking(move || {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            write_atomically(&rejected, &format!("{name}.answer.txt"), why.as_bytes())?;
            let target = rejected.join(&name);
            std::fs::rename(&path, &target).map_err(io(&target))?;
            sync_dir(&rejected)
        })
        .await
    }

    /// Spooled reports, oldest first.
    pub async fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            entries.sort();
            Ok(entries)
        })
        .await
    }

    /// How many reports wait for redelivery.
    pub async fn depth(&self) -> Result<usize, SpoolError> {
        Ok(self.pending().await?.len())
    }

    pub async fn load(&self, path: &Path) -> Result<RunReport, SpoolError> {
        let path = path.to_owned();
        blocking(move || {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            serde_json::from_slice(&bytes).map_err(|source| SpoolError::Corrupt { path, source })
        })
        .await
    }

    pub async fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        let path = path.to_owned();
        blocking(move || std::fs::remove_file(&path).map_err(io(&path))).await
    }
}

/// `<microseconds since epoch>-<sequence>-<run key>.json`: sorts by spooling time.
fn entry_name(report: &RunReport) -> String {
    let key = report
        .run_key
        .map(|k| k.to_string())
        .unwrap_or_else(|| "no-key".into());
    format!(
        "{:020}-{:06}-{key}.json",
        Utc::now().timestamp_micros().max(0),
        SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000
    )
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
    let target = dir.join(name);
    crate::fs::write_atomically(&target, bytes).map_err(io(&target))?;
    Ok(target)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    crate::fs::sync_dir(dir).map_err(io(dir))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(SpoolError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(join.to_string()),
            })
        })
}
