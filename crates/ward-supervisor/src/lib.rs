//! The supervisor: runs an agent under [`ward_sandbox`] with a manifest, and keeps the session
//! on record. [`run`] is `ward run` (scan the grants, decide the confinement, fork the
//! launcher, record the start, let the agent go, answer and record its denied calls, record
//! the end); [`sessions`] is `ward status` and `ward kill` (the running sessions, found by
//! their `session.json`, and the kill switch).
//!
//! Printing here is limited to warnings on stderr while a session runs; results go back to
//! the `ward` binary, which prints them.

mod devices;
mod envscan;
mod exec;
mod guard;
mod hidden;
mod home;
mod manifest_watch;
pub mod program;
mod proxy;
mod report;
mod repos;
pub mod review;
pub mod run;
pub mod secrets;
pub mod sessions;
pub mod state;
mod terminal;
mod watch;
