//! Linux confinement mechanisms for `ward run`, one file per mechanism: the environment scrub
//! ([`env`]), Landlock ([`landlock`]) and the seccomp filter ([`seccomp`]). Namespaces, the new
//! root and cgroups come next (issue 3).
//!
//! Each mechanism is prepared in the parent (where allocating is fine) and enforced in the
//! child between `fork` and `exec` with async-signal-safe calls only. Nothing here decides
//! what to allow: the grants come from the manifest. Start from [`landlock::Landlock::prepare`]
//! and [`seccomp::Filter::new`].

pub mod env;
mod error;
pub mod landlock;
pub mod launch;
pub mod seccomp;

pub use error::SandboxError;
