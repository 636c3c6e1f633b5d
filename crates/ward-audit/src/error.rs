use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    /// The log on disk is not the log this writer (or its anchor) knows: refuse to extend it.
    #[error("{}: {message}", path.display())]
    Tampered { path: PathBuf, message: String },
    /// An earlier write failed; the log accepts nothing more until reopened.
    #[error("the audit log failed earlier and accepts no more records: {0}")]
    Poisoned(String),
    #[error("the audit log is closed")]
    Closed,
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
