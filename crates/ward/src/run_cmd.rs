use crate::manifest_cmd::LoadArgs;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use ward_audit::{AuditLog, Event, KeyStore, LogPaths, WriterOptions};
use ward_core::{Access, Action, ActionKind, Effect, Manifest, Mode};
use ward_policy::Pdp;

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward run --grant .:direct -- claude           # the agent may change this folder, nothing else
  ward run --grant ~/notes:ro -- python3 agent.py
  ward run -m ward.toml -- codex

Grants: PATH (read-write, staged for review), PATH:ro, PATH:rw (staged), PATH:direct (writes
go straight to the folder). Staged grants come with `ward review` and are refused until then.
The agent runs in new user, mount, pid, ipc, uts, net and cgroup namespaces, on a read-only
root with only system directories and its grants, under Landlock and a seccomp filter, with
no network, credentials scrubbed from its environment, and its own session. The session's
start and end are recorded in the audit log.
Exit codes: the agent's own; 125 Ward could not set up the sandbox (the reason is printed);
126 the command is not executable; 127 not found.")]
pub struct RunArgs {
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// PATH[:ro|:rw|:direct]; repeatable.
    #[arg(long = "grant", value_name = "PATH[:MODE]")]
    grants: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// The agent's command line.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

fn session_id() -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `ward run`: returns the agent's exit status, or 125 with the reason on stderr.
pub fn run(a: RunArgs) -> u8 {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            crate::report(&e);
            125
        }
    }
}

/// How many entries of the granted folders are checked against the mandatory denies before
/// the agent starts; past this Ward refuses rather than start with some left uncovered.
const MASK_SCAN_LIMIT: usize = 200_000;

/// The paths inside the grants the agent may not read (keys, `.env`, git hooks, the manifest's
/// denies): each is covered in the sandbox. Decided by the same decision point as every other
/// action, so the kernel plane and the broker plane deny the same paths.
fn masks(m: &Manifest) -> anyhow::Result<Vec<PathBuf>> {
    let mut pdp = Pdp::new(m.clone())?;
    let mut out = Vec::new();
    let mut seen = 0usize;
    for g in &m.files {
        let mut stack = vec![g.path.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                seen += 1;
                if seen > MASK_SCAN_LIMIT {
                    bail!(
                        "the granted folders hold more than {MASK_SCAN_LIMIT} entries; Ward checks each \
                         against the mandatory denies before the agent starts: grant a narrower folder"
                    );
                }
                let path = e.path();
                let d = pdp.decide(&Action::new(ActionKind::FileRead, path.to_string_lossy()));
                if d.effect == Effect::Deny {
                    out.push(path);
                    continue;
                }
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                // Git's object store is large and holds nothing a deny names.
                let objects = path.ends_with(".git/objects");
                if is_dir && !objects {
                    stack.push(path);
                }
            }
        }
    }
    Ok(out)
}

static LAUNCHER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let pid = LAUNCHER.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Terminal signals reach the launcher directly (same process group); termination requests
/// sent to `ward run` are passed on; neither ends `ward run` before it has recorded the end.
fn supervise_signals() {
    // SAFETY: setting dispositions: ignore, or a handler that only calls kill.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, pass_on as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, pass_on as *const () as libc::sighandler_t);
    }
}

/// The start time of `pid` (field 22 of /proc/PID/stat), to tell it from a recycled pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

fn run_inner(a: RunArgs) -> anyhow::Result<u8> {
    let opts = a.load.options();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut m = match (&a.manifest, a.grants.is_empty()) {
        (Some(p), _) => Manifest::load(p, &opts)?,
        (None, _) if Path::new("ward.toml").exists() => {
            Manifest::load(Path::new("ward.toml"), &opts)?
        }
        (None, false) => Manifest::empty(&opts)?,
        (None, true) => Manifest::builtin_default(&cwd, &opts)?,
    };
    for g in &a.grants {
        m.add_cli_grant(g, &cwd, &opts)?;
    }
    if let Some(g) = m
        .files
        .iter()
        .find(|g| g.access == Access::ReadWrite && g.mode == Mode::Staged)
    {
        bail!(
            "the grant {} is staged (edits held for `ward review`), which this version cannot do yet; \
             grant it with --grant {}:direct (edits go straight to the folder) or :ro",
            g.path.display(),
            g.path.display()
        );
    }
    let masked = masks(&m)?;

    let paths = LogPaths::default_paths()?;
    let log = AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log, and Ward does not run agents unrecorded")?;
    let session = session_id();
    let state = paths.state_dir().unwrap_or(Path::new("."));
    let session_dir = state.join("sessions").join(&session);
    let staging = session_dir.join("root");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    supervise_signals();

    // The launcher builds the sandbox while the session's start is being made durable; the
    // agent starts only when the supervisor says go, after the record is on disk.
    let mut go = [0i32; 2];
    // SAFETY: pipe2 fills the array. The read end is left inheritable so the launcher gets it
    // at the same number without a pre_exec hook (which would force a full fork of this
    // multi-threaded process instead of a cheap spawn); the write end closes on exec.
    if unsafe { libc::pipe2(go.as_mut_ptr(), 0) } != 0
        || unsafe { libc::fcntl(go[1], libc::F_SETFD, libc::FD_CLOEXEC) } != 0
    {
        return Err(std::io::Error::last_os_error()).context("cannot create the start pipe");
    }
    // SAFETY: both descriptors were just created and are owned here alone.
    let (go_read, mut go_write) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(go[0]),
            std::fs::File::from(std::os::fd::OwnedFd::from_raw_fd(go[1])),
        )
    };
    let mut cmd = Command::new(std::env::current_exe().context("cannot find the ward binary")?);
    cmd.arg("__launch")
        .arg("--staging")
        .arg(&staging)
        .arg("--cwd")
        .arg(&cwd)
        .arg("--go-fd")
        .arg(go_read.as_raw_fd().to_string())
        .arg("--parent")
        .arg(std::process::id().to_string());
    for g in &m.files {
        cmd.arg(if g.access == Access::Read {
            "--ro"
        } else {
            "--rw"
        })
        .arg(&g.path);
    }
    for p in &masked {
        cmd.arg("--mask").arg(p);
    }
    cmd.arg("--").args(&a.cmd);
    let mut child = cmd.spawn().context("cannot start the sandbox launcher")?;
    drop(go_read);
    LAUNCHER.store(child.id() as i32, std::sync::atomic::Ordering::Relaxed);

    // From here on the launcher exists: every path waits for it and records the end.
    let started = (|| -> anyhow::Result<()> {
        let info = session_dir.join("session.json");
        std::fs::write(
            &info,
            serde_json::to_vec(&json!({
                "session": session, "pid": child.id(), "start_time": start_time(child.id()),
                "command": a.cmd, "cwd": cwd, "started": ward_audit::time::now_rfc3339(),
            }))?,
        )
        .with_context(|| format!("cannot write {}", info.display()))?;
        let grants: Vec<_> = m
            .files
            .iter()
            .map(|g| json!({"path": g.path, "access": g.access.as_str(), "mode": g.mode.as_str(), "origin": g.origin.to_string()}))
            .collect();
        log.append(Event {
            session: Some(session.clone()),
            agent: a.cmd.first().cloned(),
            detail: Some(json!({
                "manifest": m.source.as_ref().map(|p| p.display().to_string()),
                "managed": m.managed,
                "grants": grants,
                "masked": masked,
                "network": "none",
                "command": a.cmd,
                "cwd": cwd,
            })),
            ..Event::new("session.start")
        })
        .context("cannot record the session start, so the agent does not start")?;
        go_write
            .write_all(b"g")
            .context("the sandbox launcher stopped before the agent could start")
    })();
    drop(go_write);
    let status = child
        .wait()
        .context("cannot wait for the sandbox launcher")?;
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 125,
    };
    let _ = std::fs::remove_dir_all(&session_dir);
    let end = log.close_with(Event {
        session: Some(session),
        detail: Some(json!({
            "exit_code": code,
            "killed": status.code().is_none(),
            "started": started.is_ok(),
        })),
        ..Event::new("session.exit")
    });
    started?;
    end.context("cannot record the session end")?;
    Ok(u8::try_from(code).unwrap_or(125))
}
