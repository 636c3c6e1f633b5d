//! `ward status` and `ward kill`: the running sessions, and the kill switch.

use crate::{print_json, Outcome};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ward_audit::{AuditLog, Event, KeyStore, LogPaths, WriterOptions};

fn sessions_dir() -> anyhow::Result<PathBuf> {
    let paths = LogPaths::default_paths()?;
    Ok(paths.state_dir().unwrap_or(Path::new(".")).join("sessions"))
}

/// Whether `pid` is the launcher `session.json` describes: alive, named `ward-launch` (the
/// name `ward run` gives its launcher), started when recorded (not a recycled pid), and ours.
fn is_launcher(pid: u32, start: Option<u64>) -> bool {
    let named = std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| {
        c.strip_suffix(b"\n").unwrap_or(&c) == crate::run_cmd::LAUNCHER_NAME.to_bytes()
    });
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let ours = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
        .unwrap_or(false);
    named && ours && start.is_some() && crate::run_cmd::start_time(pid) == start
}

/// The running sessions: their recorded info, for launchers still alive.
pub fn running() -> anyhow::Result<Vec<Value>> {
    let dir = sessions_dir()?;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let Ok(bytes) = std::fs::read(e.path().join("session.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        if pid > 0 && is_launcher(pid, v["start_time"].as_u64()) {
            out.push(v);
        } else {
            // A session whose launcher is gone (crashed supervisor): clean its directory.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    out.sort_by(|a, b| a["started"].as_str().cmp(&b["started"].as_str()));
    Ok(out)
}

pub fn status(json: bool) -> Outcome {
    let sessions = running()?;
    if json {
        print_json(&json!(sessions));
    } else if sessions.is_empty() {
        println!("no running sessions");
    } else {
        for s in &sessions {
            let cmd: Vec<&str> = s["command"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "{}  pid {}  since {}  {}  (in {})",
                s["session"].as_str().unwrap_or("?"),
                s["pid"],
                s["started"].as_str().unwrap_or("?"),
                cmd.join(" "),
                s["cwd"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(0)
}

/// End sessions: SIGKILL to each launcher; its PID 1 dies with it (parent-death signal), and
/// with PID 1 every process of the session's pid namespace.
pub fn kill(session: Option<String>, all: bool, json: bool) -> Outcome {
    if session.is_none() && !all {
        bail!("name a session (see `ward status`) or pass --all");
    }
    let targets: Vec<Value> = running()?
        .into_iter()
        .filter(|s| all || s["session"].as_str() == session.as_deref())
        .collect();
    if targets.is_empty() {
        if json {
            print_json(&json!({"killed": []}));
        } else {
            println!("no running session matches");
        }
        return Ok(if all { 0 } else { 1 });
    }
    let paths = LogPaths::default_paths()?;
    let log = AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log")?;
    let mut killed = Vec::new();
    for s in &targets {
        let pid = s["pid"].as_u64().unwrap_or(0) as i32;
        let start = s["start_time"].as_u64();
        if !is_launcher(pid as u32, start) {
            continue;
        }
        let started = Instant::now();
        // SAFETY: kill with a pid we read from the session file and checked is a launcher.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        // Wait until the launcher is gone (it is reaped by `ward run`), at most 2 s.
        while is_launcher(pid as u32, start) && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let gone = !is_launcher(pid as u32, start);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        log.append(Event {
            session: s["session"].as_str().map(str::to_string),
            detail: Some(json!({"pid": pid, "ended": gone, "ms": ms})),
            ..Event::new("session.kill")
        })
        .context("cannot record the kill")?;
        killed.push(json!({"session": s["session"], "ended": gone, "ms": ms}));
        if !json {
            println!(
                "killed {} ({:.1} ms){}",
                s["session"].as_str().unwrap_or("?"),
                ms,
                if gone { "" } else { " -- still running!" }
            );
        }
    }
    log.close()?;
    if json {
        print_json(&json!({"killed": killed}));
    }
    Ok(0)
}
