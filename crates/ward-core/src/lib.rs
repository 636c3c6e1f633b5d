//! Ward's vocabulary: the [`Action`] an agent attempts, the [`Decision`] taken on it, and the
//! permission [`Manifest`] (schema, loading, validation and the managed overlay).
//!
//! This crate decides nothing and enforces nothing: `ward-policy` decides, the sandbox and the
//! proxy enforce. Its only I/O is reading the manifest files it is asked to load and looking up
//! the paths they grant. Start from [`Manifest::load`].

pub mod action;
pub mod bounded;
pub mod command;
pub mod dest;
pub mod glob;
pub mod inert;
mod jsonpos;
pub mod manifest;
pub mod size;

pub use action::{Action, ActionKind, By, Consented, Decision, Effect, EventKind, Source};
pub use dest::{plain_path, Destination, DestinationError, HostPattern, PathPattern};
pub use manifest::{
    git_push_repo, Access, Ceiling, CredentialSpec, DeviceGrant, Explanation, FileGrant, Findings,
    GitRepo, LoadOptions, Manifest, ManifestError, Mode, NetEntry, Origin, Placement, PolicyRef,
    Reaction, Rule, SecretSource, DEGRADABLE,
};
