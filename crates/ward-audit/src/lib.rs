//! Ward's tamper-evident audit log: append-only JSON lines, a SHA-256 hash chain, RFC 6962
//! Merkle roots signed with Ed25519 in periodic checkpoints, and a signed head ("anchor") kept
//! beside the key, outside the log directory, so that truncation is caught too.
//!
//! Writing is durable before [`AuditLog::append`] returns (group commit: concurrent appends share
//! one `fdatasync`); an `Err` from it means the action must be denied. Reading is [`verify`],
//! [`read_records`] and [`export::to_ocsf`]. Start from [`AuditLog::open`].

mod error;
pub mod export;
mod hex;
pub mod keys;
pub mod merkle;
mod record;
pub mod time;
mod verify;
mod writer;

pub use error::AuditError;
pub use keys::{KeyStore, SigningIdentity};
pub use record::{Event, EventDecision, GENESIS_PREV};
pub use verify::{
    log_id_of, read_records, verify, verify_bytes, verify_log, Problem, VerifyReport,
};
pub use writer::{AuditLog, WriterOptions};

/// How the files of one log are found: the log file and the key directory that holds the
/// signing key and the log's anchor. The key directory must not be inside the log's directory.
#[derive(Debug, Clone)]
pub struct LogPaths {
    pub log: std::path::PathBuf,
    pub keys: std::path::PathBuf,
}

impl LogPaths {
    /// Ward's state directory: the one holding `audit/` (and `sessions/`), when the log path
    /// has one (a bare `WARD_AUDIT_LOG=audit.jsonl` does not).
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.log.parent().and_then(|d| d.parent())
    }

    /// `$XDG_STATE_HOME/ward/audit/audit.jsonl` and `$XDG_CONFIG_HOME/ward/keys` (or their
    /// `~/.local/state` and `~/.config` defaults). `WARD_AUDIT_LOG` and `WARD_KEY_DIR` override.
    pub fn default_paths() -> Result<LogPaths, AuditError> {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let xdg = |var: &str, fallback: &str| -> Option<std::path::PathBuf> {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(fallback)))
        };
        let log = std::env::var_os("WARD_AUDIT_LOG")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                xdg("XDG_STATE_HOME", ".local/state").map(|d| d.join("ward/audit/audit.jsonl"))
            });
        let keys = std::env::var_os("WARD_KEY_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| xdg("XDG_CONFIG_HOME", ".config").map(|d| d.join("ward/keys")));
        match (log, keys) {
            (Some(log), Some(keys)) => Ok(LogPaths { log, keys }),
            _ => Err(AuditError::Config(
                "cannot find the audit log: HOME is not set (set WARD_AUDIT_LOG and WARD_KEY_DIR)"
                    .into(),
            )),
        }
    }
}
