//! The agent platform's SDK.
//!
//! [`wire`] is the collector's JSON contract: the one definition of every type that crosses the
//! HTTP boundary. It pulls no HTTP client, so the collector depends on it too and the two cannot
//! drift apart.

pub mod wire;
