//! The collector: the platform's only database writer. It ingests run reports over HTTP and
//! serves runs, metrics and summaries. `main.rs` is the CLI; everything else lives here so that
//! tests can start the real server.

pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
mod memo;
pub mod startup;
pub mod store;
pub mod watch;

/// reqwest is built without a bundled crypto provider: installs ring's (rustls), once per
/// process, before the alert sender's client is built.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
