//! Logging: `RUST_LOG` filters, `LOG_FORMAT` picks text or JSON; logs go to stderr so that
//! stdout stays clean for commands like `collector token`.

use agent_sdk::telemetry::{self, LogFormat};

const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

pub fn init(format: LogFormat) {
    telemetry::init_logging(format, DEFAULT_FILTER);
}
