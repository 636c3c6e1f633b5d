//! Linux confinement mechanisms for `ward run`, one file per mechanism: the environment scrub
//! ([`env`]), Landlock ([`landlock`]), the seccomp filter ([`seccomp`]) and the supervisor's
//! side of its denials ([`notify`]), resource limits ([`cgroup`]), and the launcher that puts
//! them together with namespaces and a new root ([`launch`]).
//!
//! Each mechanism is prepared in the parent (where allocating is fine) and enforced in the
//! child between `fork` and `exec` with async-signal-safe calls only. Nothing here decides
//! what to allow: the grants come from the manifest. Start from [`landlock::Landlock::prepare`]
//! and [`seccomp::Filter::new`].

pub mod cgroup;
pub mod env;
mod error;
pub mod landlock;
pub mod late;
pub mod launch;
pub mod notify;
pub mod seccomp;

pub use error::SandboxError;
