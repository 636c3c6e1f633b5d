use crate::manifest_cmd::LoadArgs;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use ward_audit::{AuditLog, Event, KeyStore, LogPaths, WriterOptions};
use ward_core::{Access, Manifest, Mode};

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
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("ward: {msg}");
            125
        }
    }
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

    let paths = LogPaths::default_paths()?;
    let log = AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log, and Ward does not run agents unrecorded")?;
    let session = session_id();
    let state = paths
        .log
        .parent()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let staging = state.join("sessions").join(&session).join("root");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;

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
        .arg(go_read.as_raw_fd().to_string());
    for g in &m.files {
        cmd.arg(if g.access == Access::Read {
            "--ro"
        } else {
            "--rw"
        })
        .arg(&g.path);
    }
    cmd.arg("--").args(&a.cmd);
    let mut child = cmd.spawn().context("cannot start the sandbox launcher")?;
    drop(go_read);

    let grants: Vec<_> = m
        .files
        .iter()
        .map(|g| json!({"path": g.path, "access": g.access.as_str(), "mode": g.mode.as_str(), "origin": g.origin.to_string()}))
        .collect();
    let recorded = log.append(Event {
        session: Some(session.clone()),
        agent: a.cmd.first().cloned(),
        detail: Some(json!({
            "manifest": m.source.as_ref().map(|p| p.display().to_string()),
            "managed": m.managed,
            "grants": grants,
            "network": "none",
            "command": a.cmd,
            "cwd": cwd,
        })),
        ..Event::new("session.start")
    });
    if let Err(e) = recorded {
        drop(go_write);
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(staging.parent().unwrap_or(&staging));
        return Err(e).context("cannot record the session start, so the agent does not start");
    }
    go_write
        .write_all(b"g")
        .context("cannot tell the launcher to start")?;
    drop(go_write);
    let info = staging.with_file_name("session.json");
    std::fs::write(
        &info,
        serde_json::to_vec(&json!({
            "session": session, "pid": child.id(), "command": a.cmd, "cwd": cwd,
            "started": ward_audit::time::now_rfc3339(),
        }))?,
    )
    .with_context(|| format!("cannot write {}", info.display()))?;
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
    let _ = std::fs::remove_dir_all(staging.parent().unwrap_or(&staging));
    log.close_with(Event {
        session: Some(session),
        detail: Some(json!({"exit_code": code, "killed": status.code().is_none()})),
        ..Event::new("session.exit")
    })
    .context("cannot record the session end")?;
    Ok(u8::try_from(code).unwrap_or(125))
}
