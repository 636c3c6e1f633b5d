//! `ward status` and `ward kill`: the running sessions, and the kill switch.

use crate::{print_json, Outcome};
use anyhow::bail;
use serde_json::{json, Value};
use ward_supervisor::sessions::{kill as kill_sessions, running};

pub fn status(json: bool) -> Outcome {
    let sessions = running()?;
    if json {
        print_json(&json!(sessions));
    } else if sessions.is_empty() {
        println!("no running sessions");
    } else {
        for s in &sessions {
            println!(
                "{}  pid {}  since {}  {}  (in {})",
                s.session,
                s.pid,
                s.started,
                ward_core::inert::line(&s.command.join(" ")),
                ward_core::inert::path(&s.cwd)
            );
        }
    }
    Ok(0)
}

/// End sessions (see [`ward_supervisor::sessions::kill`]).
pub fn kill(session: Option<String>, all: bool, json: bool) -> Outcome {
    if session.is_none() && !all {
        bail!("name a session (see `ward status`) or pass --all");
    }
    let targets: Vec<_> = running()?
        .into_iter()
        .filter(|s| all || Some(s.session.as_str()) == session.as_deref())
        .collect();
    if targets.is_empty() {
        if json {
            print_json(&json!({"killed": []}));
        } else {
            println!("no running session matches");
        }
        return Ok(if all { 0 } else { 1 });
    }
    let killed = kill_sessions(&targets)?;
    if json {
        let list: Vec<Value> = killed
            .iter()
            .map(|k| json!({"session": k.session, "ended": k.ended, "ms": k.ms}))
            .collect();
        print_json(&json!({"killed": list}));
    } else {
        for k in &killed {
            println!(
                "killed {} ({:.1} ms){}",
                k.session,
                k.ms,
                if k.ended { "" } else { " -- still running!" }
            );
        }
    }
    Ok(0)
}
