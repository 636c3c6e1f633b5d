//! Ward's decision point: every [`Action`](ward_core::Action) gets a
//! [`Decision`](ward_core::Decision) — allow, ask or deny — with the rule or policy that decided.
//!
//! Manifest rules first (deny > ask > allow, deny for anything ungranted), then the Rego policies
//! the manifest binds to the action's kind, evaluated by regorus in Rego v1. This crate decides;
//! it neither enforces, asks the user, nor writes the audit log. Start from [`Pdp::new`].

mod error;
pub mod fix;
mod pdp;
pub mod rego;
mod rules;
pub mod testing;

pub use error::PolicyError;
pub use pdp::{file_grant_refusal, Pdp};
pub use rego::{check_source, RegoPolicy};
