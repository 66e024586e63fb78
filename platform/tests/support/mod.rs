//! Starting `platform` for a test: a real process on free ports in a temporary directory,
//! with what its banner prints.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Platform {
    pub(crate) child: Child,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) collector_port: u16,
    /// `export TOKEN=`: ingest and read.
    pub(crate) token: String,
    /// The console's sign-in token: read only.
    pub(crate) console_token: String,
    /// The run lines printed before the banner was read to its end (none, usually).
    pub(crate) run_lines: Vec<String>,
}

impl Platform {
    /// Starts `platform` in `dir` and reads its banner.
    pub(crate) async fn start(dir: &Path) -> Self {
        let (collector_port, scheduler_port) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_platform"))
            .current_dir(dir)
            .args([
                "--collector-addr",
                &format!("127.0.0.1:{collector_port}"),
                "--scheduler-addr",
                &format!("127.0.0.1:{scheduler_port}"),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut token, mut console_token) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while token.is_none() || console_token.is_none() {
            let line = tokio::time::timeout_at(deadline, stdout.next_line())
                .await
                .expect("the banner within a minute")
                .unwrap()
                .expect("platform exited early");
            let line = line.trim();
            if let Some(t) = line.strip_prefix("export TOKEN=") {
                token = Some(t.to_owned());
            }
            if let Some(t) = line.strip_prefix("console token (read only): ") {
                console_token = Some(t.to_owned());
            }
        }
        Self {
            child,
            stdout,
            collector_port,
            token: token.unwrap_or_default(),
            console_token: console_token.unwrap_or_default(),
            run_lines: Vec::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.collector_port)
    }

    /// Reads stdout until `count` run lines were printed in all.
    pub(crate) async fn wait_for_runs(&mut self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.run_lines.len() < count {
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line())
                .await
                .expect("the runs within a minute")
                .unwrap()
                .expect("platform exited early");
            if line.contains("  run ") {
                self.run_lines.push(line);
            }
        }
    }
}
