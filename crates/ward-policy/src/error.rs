use std::path::PathBuf;

/// What can go wrong loading or checking a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is Rego v0: valid once rewritten with `if`/`contains`, refused as it is.
    #[error(
        "{}: this is Rego v0 syntax; Ward accepts Rego v1 only.\n{detail}\n\
         In v1 every rule body needs `if` (`allow if {{ ... }}`), partial sets need `contains` \
         (`deny contains msg if {{ ... }}`), and `in`, `every`, `contains`, `if` are keywords without \
         `import future.keywords`.\nRewrite it with: ward policy check --fix {}",
        path.display(),
        path.display()
    )]
    RegoV0 { path: PathBuf, detail: String },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: the rule `{rule}` is not defined by this policy (packages here: {packages})", path.display())]
    MissingRule {
        path: PathBuf,
        rule: String,
        packages: String,
    },
    #[error("{0}")]
    Other(String),
}
