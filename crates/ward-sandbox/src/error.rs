/// Why confinement could not be set up. Each names the kernel feature or the path concerned,
/// because `ward run` refuses to start (exit 125) rather than run with less confinement.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("kernel feature `{feature}` is not available: {detail}")]
    Unsupported {
        feature: &'static str,
        detail: String,
    },
    #[error("{path}: {source}")]
    Path {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    /// `ward run` stopped before it had configured the sandbox: it reports why itself, so the
    /// launcher ends without a word.
    #[error("ward run stopped before the sandbox was configured")]
    Abandoned,
}
