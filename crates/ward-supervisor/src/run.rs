//! `ward run`'s supervisor: everything between a validated manifest and the agent's exit.

use anyhow::{bail, Context};
use serde_json::json;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use ward_audit::{AuditLog, Event, EventDecision, KeyStore, LogPaths, WriterOptions};
use ward_core::{Access, Action, ActionKind, Effect, Manifest, Mode};
use ward_policy::Pdp;
use ward_sandbox::cgroup::{Cgroups, Limit};
use ward_sandbox::SandboxError;

/// What to run, and under which manifest.
pub struct Request {
    /// The effective manifest (grants from the command line already added).
    pub manifest: Manifest,
    /// The agent's command line.
    pub cmd: Vec<String>,
    /// The working directory, re-entered inside the sandbox.
    pub cwd: PathBuf,
    /// What becomes of staged changes when the agent ends.
    pub review: Review,
}

/// `--review`: what happens to staged changes at the end of `ward run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Keep them for `ward review` (the default: nothing is applied without a person).
    Keep,
    /// Throw them away (recorded).
    Discard,
    /// Ask the person on the terminal (`/dev/tty`) when the agent ends; no answer keeps them.
    Ask,
    /// Apply them all (the person said so on the command line), conflicts held.
    Apply,
}

fn session_id() -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How many entries of the granted folders are checked against the mandatory denies before
/// the agent starts; past this Ward refuses rather than start with some left uncovered.
const MASK_SCAN_LIMIT: usize = 200_000;

/// What the sandbox covers inside the grants.
struct Inside {
    /// Paths the agent may not reach: covered with an empty read-only file or directory.
    masked: Vec<PathBuf>,
    /// Repositories' `.git` in writable grants: kept read-only.
    read_only: Vec<PathBuf>,
    /// The manifest's files inside writable grants: kept read-only too.
    protected: Vec<PathBuf>,
    /// Entries of staged grants owned by another user or group: the user namespace maps only
    /// the caller's, so overlay cannot copy them up (EOVERFLOW).
    unmapped: Vec<PathBuf>,
    /// The decision point, compiled (the session's broker decides with it).
    pdp: Pdp,
    /// Entries of direct grants a file rule denies or asks about, with that rule's decision:
    /// read-only inside (also in `read_only`).
    ruled: Vec<(PathBuf, ward_core::Decision)>,
}

/// The paths inside the grants the agent may not read (keys, `.env`, git hooks, the manifest's
/// denies): each is covered in the sandbox. Decided by the same decision point as every other
/// action, so the kernel plane and the broker plane deny the same paths. Unix sockets found in
/// a grant are covered too (a read-only mount does not stop `connect`, and Landlock cannot yet
/// on this kernel): they lead to services outside the sandbox. In writable grants a
/// repository's `.git` stays read-only: its config (`core.hooksPath`, `core.fsmonitor`,
/// filters) and hooks run code on the host the next time the user runs git there, and as a
/// mount point it cannot be renamed away and recreated.
fn inside(m: &Manifest) -> anyhow::Result<Inside> {
    use std::os::unix::fs::FileTypeExt;
    let mut pdp = Pdp::new(m.clone())?;
    // File rules: in a direct grant Ward sits at the mounts, so what they deny (or ask about:
    // nobody can be asked at the moment of a write) is read-only inside; in a staged grant the
    // review judges every change.
    let file_rules = m.has_file_rules();
    let mut asked_direct = Vec::new();
    let mut ruled = Vec::new();
    let mut out = Vec::new();
    let mut read_only = Vec::new();
    let mut unmapped = Vec::new();
    let mut seen = 0usize;
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if let Some((p, d)) = pdp.denied_file_grants().first() {
        bail!("{}", ward_policy::file_grant_refusal(p, d));
    }
    for g in &m.files {
        let writable = g.access == Access::ReadWrite;
        let staged = writable && g.mode == Mode::Staged;
        // A single file: nothing to list; a file rule on it holds a direct grant read-only,
        // and a staged one needs the file mapped in the user namespace to be copied up.
        if let Some(md) = std::fs::metadata(&g.path).ok().filter(|md| md.is_file()) {
            use std::os::unix::fs::MetadataExt;
            if staged && (md.uid() != uid || md.gid() != gid) {
                unmapped.push(g.path.clone());
            }
            if writable && !staged && file_rules {
                hold_ruled(
                    &mut pdp,
                    &g.path,
                    &mut asked_direct,
                    &mut read_only,
                    &mut ruled,
                );
            }
            continue;
        }
        let mut stack = vec![g.path.clone()];
        while let Some(dir) = stack.pop() {
            // A folder Ward cannot list could hide a key the agent (its owner) could chmod
            // its way to: refuse rather than leave it unchecked.
            let unreadable = |e: std::io::Error| {
                anyhow::anyhow!(
                    "cannot list {} ({e}); Ward checks every folder of a grant for keys and \
                     secrets before the agent starts: make it readable, or grant a narrower folder",
                    dir.display()
                )
            };
            let entries = std::fs::read_dir(&dir).map_err(unreadable)?;
            for e in entries {
                let e = e.map_err(unreadable)?;
                seen += 1;
                if seen > MASK_SCAN_LIMIT {
                    bail!(
                        "the granted folders hold more than {MASK_SCAN_LIMIT} entries; Ward checks each \
                         against the mandatory denies before the agent starts: grant a narrower folder"
                    );
                }
                let path = e.path();
                let d = pdp.decide(&Action::new(ActionKind::FileRead, path.to_string_lossy()));
                let ft = e.file_type().ok();
                if d.effect == Effect::Deny || ft.is_some_and(|t| t.is_socket()) {
                    out.push(path);
                    continue;
                }
                let is_dir = ft.is_some_and(|t| t.is_dir());
                if staged {
                    if let Ok(md) = e.metadata() {
                        use std::os::unix::fs::MetadataExt;
                        if md.uid() != uid || md.gid() != gid {
                            unmapped.push(path.clone());
                        }
                    }
                }
                if writable && crate::repos::is_repository(&path, is_dir) {
                    read_only.push(path.clone());
                } else if writable && !staged && file_rules {
                    hold_ruled(
                        &mut pdp,
                        &path,
                        &mut asked_direct,
                        &mut read_only,
                        &mut ruled,
                    );
                }
                // Git's object store is large and holds nothing a deny names.
                let objects = path.ends_with(".git/objects");
                if is_dir && !objects {
                    stack.push(path);
                }
            }
        }
    }
    // The manifest and its policies stay read-only wherever a grant makes them writable:
    // the agent must not write the rules of its next session.
    let writable: Vec<&PathBuf> = m
        .files
        .iter()
        .filter(|g| g.access == Access::ReadWrite)
        .map(|g| &g.path)
        .collect();
    if !asked_direct.is_empty() {
        eprintln!(
            "ward: a file rule asks before changing {} in a direct grant, where nobody can be \
             asked at the moment of a write: read-only for this session (a staged grant asks at \
             review)",
            asked_direct
                .iter()
                .map(|p| ward_core::inert::path(p).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let protected = crate::manifest_watch::files(m)
        .into_iter()
        .filter(|f| writable.iter().any(|g| f.starts_with(g)) && !out.contains(f))
        .collect();
    Ok(Inside {
        masked: out,
        read_only,
        protected,
        unmapped,
        pdp,
        ruled,
    })
}

/// In a direct grant, `path` read-only when a file rule denies or asks about writing or
/// deleting it (nobody can be asked at the moment of a write), with that rule's decision.
fn hold_ruled(
    pdp: &mut Pdp,
    path: &Path,
    asked: &mut Vec<PathBuf>,
    read_only: &mut Vec<PathBuf>,
    ruled: &mut Vec<(PathBuf, ward_core::Decision)>,
) {
    let p = path.to_string_lossy();
    let worst = [ActionKind::FileWrite, ActionKind::FileDelete]
        .into_iter()
        .map(|k| pdp.decide(&Action::new(k, p.clone())))
        .max_by_key(|d| d.effect);
    if let Some(d) = worst.filter(|d| d.effect != Effect::Allow) {
        if d.effect == Effect::Ask {
            asked.push(path.to_path_buf());
        }
        read_only.push(path.to_path_buf());
        ruled.push((path.to_path_buf(), d));
    }
}

/// SHA-256 of the manifest file and each managed file, in order (`None` for the built-in
/// default and command-line grants alone): which exact text governed the session.
fn manifest_hash(m: &Manifest) -> Option<String> {
    use sha2::{Digest, Sha256};
    let files: Vec<&PathBuf> = m.source.iter().chain(m.managed.iter()).collect();
    if files.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
/// A zombie (ended, not yet reaped) has none: it is not running.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    if after.starts_with('Z') || after.starts_with('X') {
        return None;
    }
    after.split(' ').nth(19)?.parse().ok()
}

/// Run the agent confined under `req.manifest`, recorded from start to end. Returns the
/// agent's exit status (128 + signal when killed); an error means the agent did not run, or
/// its end could not be recorded.
pub fn run(req: Request) -> anyhow::Result<u8> {
    let Request {
        manifest: m,
        cmd: agent_cmd,
        cwd,
        review,
    } = req;
    // The network inside, worked out once: the loopback services and the names the resolver
    // gives addresses (the launcher listens at each).
    let services = m.loopback_services();
    let names = ward_net::dns::names(&m);
    if let Some(s) = services.iter().find(
        |s| matches!(s.listen.ip(), std::net::IpAddr::V4(ip) if ip.octets()[..2] == [127, 77]),
    ) {
        bail!(
            "{} ({}) is in 127.77.0.0/16, where the sandbox's resolver gives the names the \
             manifest allows their addresses inside: name the service at another loopback address",
            s.listen,
            s.origin
        );
    }
    if let Some(s) = services.iter().find(|s| {
        s.listen
            == std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, ward_net::PROXY_PORT))
    }) {
        bail!(
            "{} ({}) is on port {}, where Ward's proxy listens inside the sandbox: a service \
             on this machine at that port cannot be reached from inside; move it to another port",
            s.listen,
            s.origin,
            ward_net::PROXY_PORT
        );
    }
    let session = session_id();
    // Landlock and the limits, decided before anything is made: PID 1 adds the system's
    // Landlock rules while the rest is worked out.
    let confinement = Confinement::decide(&m, &session)?;
    let paths = LogPaths::default_paths()?;
    let sessions = crate::sessions::sessions_dir(&paths);
    let session_dir = sessions.join(&session);
    let staging = session_dir.join("root");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    supervise_signals();
    // On a terminal the agent gets a pty of its own; the person's terminal stays Ward's.
    let mut agent_tty = crate::terminal::AgentTerminal::prepare()?;
    if let Some(t) = &agent_tty {
        t.announce(&session);
    }

    // The launcher starts first: its namespaces, PID 1 and the system part of the root do not
    // depend on what follows (the grant scan, the cgroups, stages, devices, the environment),
    // which is worked out meanwhile and sent to it (see `ward_sandbox::launch::Late`). The
    // agent starts only when the supervisor says go, after the session's start is on record.
    // Every descriptor stays close-on-exec: the launcher is a fork (it keeps the ones in
    // `keep` at their numbers), and nothing `ward run` may exec later inherits them.
    let (go_read, go_write) =
        ward_sys::pipe(libc::O_CLOEXEC).context("cannot create the start pipe")?;
    let mut go_write = std::fs::File::from(go_write);
    // The socket the agent sends its seccomp listener over.
    let (notify_ours, notify_theirs) =
        ward_sys::socket_pair().context("cannot create the denial socket")?;
    // The socket the launcher sends the proxy's listening socket over (bound to 127.0.0.1
    // inside the session's network namespace).
    let (proxy_ours, proxy_theirs) =
        ward_sys::socket_pair().context("cannot create the proxy socket")?;
    // The session's cgroups (to the launcher) and the rest of the configuration (to PID 1).
    let (cgroups_ours, cgroups_theirs) =
        ward_sys::socket_pair().context("cannot create the launcher's sockets")?;
    let (rest_ours, rest_theirs) =
        ward_sys::stream_pair().context("cannot create the launcher's sockets")?;
    let pty_theirs = agent_tty.as_ref().and_then(|t| t.theirs());
    let mut keep = vec![
        go_read.as_raw_fd(),
        notify_theirs.as_raw_fd(),
        proxy_theirs.as_raw_fd(),
        cgroups_theirs.as_raw_fd(),
        rest_theirs.as_raw_fd(),
    ];
    keep.extend(pty_theirs);
    let mut early = ward_sandbox::launch::Config::new(staging.clone(), cwd.clone(), vec![]);
    early.parent = Some(std::process::id() as i32);
    early.proxy_port = ward_net::PROXY_PORT;
    early.loopback = services
        .iter()
        .map(|s| s.listen)
        .chain(names.iter().map(|n| n.at))
        .collect();
    for n in &names {
        if !early.hosts.iter().any(|(x, _)| *x == n.name) {
            early.hosts.push((n.name.clone(), n.at.ip()));
        }
    }
    early.watch_exec = m.exec_checked();
    early.landlock = confinement.landlock;
    if m.exec_checked() {
        early.no_execute = crate::exec::kernel_denied(&m);
    }
    early.go_fd = Some(go_read.as_raw_fd());
    early.notify_fd = Some(notify_theirs.as_raw_fd());
    early.proxy_fd = Some(proxy_theirs.as_raw_fd());
    early.pty_fd = pty_theirs;
    early.late = Some(ward_sandbox::launch::Late {
        cgroups: cgroups_theirs.as_raw_fd(),
        rest: rest_theirs.as_raw_fd(),
    });
    let mut child = Launcher::start(&early, &keep).context("cannot start the sandbox launcher")?;
    if let Some(t) = agent_tty.as_mut() {
        t.launched();
    }
    drop((
        go_read,
        notify_theirs,
        proxy_theirs,
        cgroups_theirs,
        rest_theirs,
    ));
    LAUNCHER.store(child.id() as i32, std::sync::atomic::Ordering::Relaxed);

    // Everything else, while the sandbox is built. A failure ends the launcher (it sees its
    // sockets close) and leaves nothing behind. The audit log is opened meanwhile (its key and
    // anchors) on a thread of its own.
    let opening = {
        let paths = paths.clone();
        std::thread::spawn(move || {
            AuditLog::open(
                &paths.log,
                &KeyStore::new(&paths.keys),
                WriterOptions::default(),
            )
        })
    };
    // PID 1 needs the rest of its configuration to finish the root: it is worked out and
    // sent while the cgroups are made on a thread of their own (the launcher and PID 1 need
    // them only before the agent is forked, and the start record needs what they came to).
    // On an error, the confinement made so far comes back with it: its cgroups go only once
    // the go pipe is closed and the launcher (which may be in them, with an agent waiting for
    // the go) has ended.
    let prepared = {
        let Confinement {
            landlock,
            abi,
            mut cgroups,
            limits,
            mut degraded,
        } = confinement;
        let (p, made, cgroups, degraded) = std::thread::scope(|s| {
            let m = &m;
            // The socket stays open until both are done: a launcher told nothing yet keeps
            // reading PID 1's configuration, so the first failure is the one said.
            let sock = cgroups_ours.as_fd();
            let making = s.spawn(move || {
                let r = make_cgroups(m, &mut cgroups, &mut degraded, sock);
                (r, cgroups, degraded)
            });
            let p = prepare(
                m,
                &session,
                &paths,
                &session_dir,
                (&staging, &cwd, &agent_cmd),
                agent_tty.as_ref(),
                rest_ours,
            );
            let (made, cgroups, degraded) = match making.join() {
                Ok(v) => v,
                // Said like any other failure (its own cgroups went as it unwound).
                Err(_) => (
                    Err(anyhow::anyhow!(
                        "the thread making the session's cgroups failed"
                    )),
                    Cgroups::new(&session),
                    Vec::new(),
                ),
            };
            (p, made, cgroups, degraded)
        });
        drop(cgroups_ours);
        let confinement = Confinement {
            landlock,
            abi,
            cgroups,
            limits,
            degraded,
        };
        match p.and_then(|p| made.map(|()| p)) {
            Ok(p) => Ok((p, confinement)),
            Err(e) => Err((e, confinement)),
        }
    };
    // `session.json` is written on a thread of its own while the session's start is recorded;
    // the go waits for it to be in place (`ward status` and `ward kill` find the session by
    // it), not for it to reach the disk: that follows on the same thread once the go is given,
    // so that its sync does not share the disk with the start record's (nothing it names
    // outlives a power cut, and a damaged one from before the last boot is cleaned).
    let (went, go_seen) = std::sync::mpsc::channel::<()>();
    let describing = prepared.as_ref().ok().map(|(_, c)| {
        let info = session_dir.join("session.json");
        let file = crate::state::SessionFile {
            version: crate::state::VERSION,
            session: session.clone(),
            pid: child.id(),
            start_time: start_time(child.id()),
            command: agent_cmd.clone(),
            cwd: cwd.clone(),
            started: ward_audit::time::now_rfc3339(),
            supervisor: Some(std::process::id()),
            supervisor_start: start_time(std::process::id()),
            cgroups: c.cgroups.dirs().to_vec(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = crate::state::write_in_place(&info, &file)
                .with_context(|| format!("cannot write {}", info.display()));
            let placed = r.is_ok();
            let _ = tx.send(r);
            if placed {
                let _ = go_seen.recv();
                crate::state::sync(&info);
            }
        });
        rx
    });
    // The thread has put the file in place (or failed) before anything of the session is
    // removed or started.
    let described = move || -> anyhow::Result<()> {
        match describing.map(|rx| rx.recv()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("cannot write the session's state (its thread failed)"),
            None => Ok(()),
        }
    };
    let (
        Prepared {
            inside:
                Inside {
                    masked,
                    read_only,
                    protected,
                    unmapped,
                    pdp,
                    ruled,
                },
            home,
            repo_ids,
            manifest_changes,
            stages,
            token_ids,
            devices,
            env_credentials,
            env_removed,
            guarded,
            outside,
            hidden,
            intercept,
            credentials,
        },
        confinement,
    ) = match prepared {
        Ok(p) => p,
        Err((e, confinement)) => {
            drop(go_write);
            let status = child.wait();
            drop(confinement);
            let _ = described();
            // The log's thread may be making its key or first record: it finishes first.
            let _ = opening.join();
            let _ = ward_stage::deep::remove_all(&session_dir);
            // The launcher ended first and said why (125): not said twice.
            if e.is::<LauncherGone>() && status.ok().and_then(|s| s.code()) == Some(125) {
                return Err(Reported.into());
            }
            return Err(e);
        }
    };
    let limits = m.limits.effective();

    // From here on the launcher exists: every path waits for it and records the end.
    let log = match opening.join() {
        Ok(r) => r,
        Err(_) => Err(ward_audit::AuditError::Config(
            "the thread opening the log failed".into(),
        )),
    }
    .context("cannot open the audit log, and Ward does not run agents unrecorded");
    let log = log.map(std::sync::Arc::new).and_then(|log| {
        // The relay starts before the agent may: nothing it writes reaches the person unfiltered.
        let running = agent_tty
            .map(|t| t.start(log.clone(), session.clone()))
            .transpose()?;
        Ok((log, running))
    });
    let (log, running) = match log {
        Ok(v) => v,
        Err(e) => {
            // No go: the launcher sees the pipe close and ends without starting the agent.
            drop(go_write);
            let _ = child.wait();
            let _ = described();
            let _ = ward_stage::deep::remove_all(&session_dir);
            return Err(e);
        }
    };
    let recorded = (|| -> anyhow::Result<()> {
        let grants: Vec<_> = m
            .files
            .iter()
            .map(|g| json!({"path": g.path, "access": g.access.as_str(), "mode": g.mode.as_str(), "origin": g.origin.to_string()}))
            .collect();
        log.append(Event {
            session: Some(session.clone()),
            agent: agent_cmd.first().cloned(),
            detail: Some(json!({
                "manifest": m.source.as_ref().map(|p| p.display().to_string()),
                "managed": m.managed,
                "grants": grants,
                "masked": masked,
                "read_only": read_only,
                "staged": stages.iter().map(|s| &s.grant).collect::<Vec<_>>(),
                "tokens": token_ids,
                "unmapped": unmapped,
                "env_removed": env_removed,
                "env_credentials": env_credentials
                    .iter()
                    .map(|(k, rule)| json!({"name": k, "rule": rule}))
                    .collect::<Vec<_>>(),
                "manifest_sha256": manifest_hash(&m),
                "manifest_files": manifest_changes,
                "protected": protected,
                "network": crate::proxy::describe(&m),
                "limits": confinement.limits,
                "landlock_abi": confinement.landlock.then_some(confinement.abi),
                "degraded": confinement.degraded,
                "command": agent_cmd,
                "cwd": cwd,
                "home": home.as_ref().map(|h| json!({"path": h.host, "kept": h.kept})),
                "profile": m.profile.as_ref().map(|p| json!({"name": p.name, "chosen_by": p.chosen_by})),
                "env_set": m.env_set.iter().map(|(k, _, o)| json!({"name": k, "origin": o.to_string()})).collect::<Vec<_>>(),
            })),
            ..Event::new(ward_core::EventKind::SessionStart)
        })
        .context("cannot record the session start, so the agent does not start")?;
        // Each device: allowed or not, and how.
        if !devices.is_empty() {
            log.append_all(devices.iter().map(|d| d.event(&session)).collect())
                .context("cannot record the devices, so the agent does not start")?;
        }
        // What the file rules hold read-only in direct grants, each under its rule.
        if !ruled.is_empty() {
            log.append_all(
                ruled
                    .iter()
                    .take(DENIAL_RECORDS)
                    .map(|(p, d)| Event {
                        session: Some(session.clone()),
                        resource: Some(p.display().to_string()),
                        decision: Some(EventDecision {
                            result: Effect::Deny,
                            by: d.by.clone(),
                            reason: format!(
                                "{} (read-only inside the sandbox for this session)",
                                d.reason
                            ),
                        }),
                        detail: Some(json!({"enforced": "read-only", "effect": d.effect})),
                        kind: ward_core::ActionKind::FileWrite.as_str(),
                        ..Event::default()
                    })
                    .collect(),
            )
            .context("cannot record the file rules, so the agent does not start")?;
        }
        Ok(())
    })();
    // The state file's thread ends here, whatever happened to the records; the go only when
    // both are on disk.
    let described = described();
    let started = recorded.and(described).and_then(|()| {
        go_write
            .write_all(b"g")
            .context("the sandbox launcher stopped before the agent could start")
    });
    drop(go_write);
    drop(went);
    let word = running.as_ref().map(|r| r.word.clone());
    // The one path every action of the session takes: the proxy, exec and the denied-call
    // recorder decide, ask and record through it.
    let broker = session_broker(&m, pdp, &log, &session, &agent_cmd, running.as_ref());
    let proxy = crate::proxy::start(
        proxy_ours,
        broker.clone(),
        m.clone(),
        crate::proxy::Listened { services, names },
        (intercept, credentials),
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let watch = crate::watch::Watch {
        launcher: child.id(),
        uppers: stages.iter().map(|st| st.upper.clone()).collect(),
        stage_bytes: limits.stage.as_ref().map(|(n, _)| *n),
        stage_entries: limits.stage_entries.as_ref().map(|(n, _)| *n),
        disks: m
            .files
            .iter()
            .filter(|g| g.access == Access::ReadWrite && g.mode == Mode::Direct)
            .map(|g| g.path.clone())
            .chain(stages.first().map(|st| st.upper.clone()))
            // Ward's own state (the audit log grows with every request).
            .chain(std::iter::once(session_dir.clone()))
            .collect(),
    };
    let (status, denied, watched) = std::thread::scope(|s| {
        let (stop, log, session, watch) = (&stop, &log, &session, &watch);
        // The recorder ends when every process of the session is gone (the launcher's end
        // takes the whole namespace with it).
        let grants: Vec<PathBuf> = m.files.iter().map(|g| g.path.clone()).collect();
        let broker = &broker;
        let recorder = s.spawn(move || record_denials(notify_ours, stop, broker, &grants));
        let watcher = s.spawn(move || crate::watch::run(watch, stop, log, session));
        let status = child.wait();
        stop.store(true, std::sync::atomic::Ordering::Release);
        watcher.thread().unpark();
        (
            status,
            recorder.join().unwrap_or_default(),
            watcher.join().unwrap_or_default(),
        )
    });
    // The person's terminal is theirs again before Ward prints anything more.
    let terminal = running.map(|r| r.finish());
    let refused: Vec<String> = denied
        .iter()
        .filter_map(|(k, n)| {
            k.strip_prefix(EXEC_REFUSED)
                .map(|p| format!("{} ({n}x)", ward_core::inert::line(p)))
        })
        .collect();
    if !refused.is_empty() {
        // The agent only saw "Permission denied": say what the exec rules stopped.
        eprintln!(
            "ward: the manifest's exec rules refused: {} (details: `ward audit tail`)",
            refused.join(", ")
        );
    }
    let network = proxy.stop();
    let status = status.context("cannot wait for the sandbox launcher")?;
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 125,
    };
    // Repositories the agent created, replaced or moved away in writable grants: git would
    // run their config and hooks the next time someone works there. Ward cannot make them
    // read-only after the fact: it says so, on the terminal and in the log.
    crate::repos::report(&repo_ids, &m, &log, &session);
    // Files Ward denies (keys, .env, credentials) and sockets that appeared in the grants while
    // the agent ran were not covered: the sandbox covers what exists when it starts. Say so.
    report_appeared(&m, &masked, &ruled, &log, &session);
    let mut confinement = confinement;
    let limits_hit = record_limits(&mut confinement, &log, &session);
    let looked_for = record_hidden_opened(hidden, &ruled, &log, &session);
    crate::report::print(
        &crate::report::Ended {
            session: &session,
            network: &network,
            env_removed: &env_removed,
            not_found: &home
                .as_ref()
                .map(|h| crate::program::noted(&h.host, &outside))
                .unwrap_or_default(),
            hidden: &masked,
            looked_for: &looked_for,
            left_out: &home
                .as_ref()
                .map(|h| crate::home::settings_left_out(h, &m))
                .unwrap_or_default(),
            limits_hit: &limits_hit,
        },
        paths.state_dir(),
    );
    // Staged changes: kept for `ward review` unless discarded; counted in the end record.
    // The agent's own settings that run code later: what it changed is put back and held.
    let mut stages = stages;
    if let (Some(snap), Some(h)) = (&guarded, &home) {
        if let Err(e) = hold_home_settings(snap, h, &m, &session_dir, &session, &mut stages, &log) {
            eprintln!("ward: warning: cannot hold the agent's changed settings for review: {e}");
        }
    }
    let (staged, pending) = staged_summary(&stages);
    let keep = pending > 0 && review != Review::Discard;
    match review {
        _ if pending == 0 => {}
        Review::Keep => eprintln!(
            "ward: {pending} change(s) staged, nothing applied yet: `ward review {session}` shows them"
        ),
        Review::Discard => eprintln!("ward: {pending} staged change(s) discarded (--review discard)"),
        Review::Ask | Review::Apply => {}
    }
    let session_id = session.clone();
    let end_event = Event {
        session: Some(session),
        detail: Some(json!({
            "exit_code": code,
            "killed": status.code().is_none(),
            "started": started.is_ok(),
            "denied": denied,
            "limits_hit": limits_hit,
            "limits_reached": watched,
            "network": network,
            "terminal": terminal,
            "staged": staged,
            "review": if pending == 0 { "nothing staged" } else if keep { "kept" } else { "discarded" },
        })),
        ..Event::new(ward_core::EventKind::SessionExit)
    };
    // The session's directory and cgroups are removed while the end record is made durable;
    // a session with changes to review keeps its stage (and `stage.json`).
    let end = std::thread::scope(|s| {
        s.spawn(|| {
            // The cgroups first: while one still holds a process being reaped, the session's
            // folder (its session.json names them) stays for the next `ward` command to
            // remove them, instead of leaving them where nothing would find them.
            let left = confinement.cgroups.remove();
            if !left.is_empty() {
                eprintln!(
                    "ward: warning: could not remove the session's cgroups yet: {}; the next \
                     `ward status` or `ward run` removes them",
                    left.iter()
                        .map(|p| ward_core::inert::path(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            } else if keep {
                crate::sessions::forget_run(&session_dir);
            } else {
                let _ = ward_stage::deep::remove_all(&session_dir);
            }
        });
        // The proxy has stopped; a consent question still open on the terminal may hold the
        // log a moment longer. The session's broker (which shares it) is done.
        drop(broker);
        let mut log = log;
        for _ in 0..50 {
            match std::sync::Arc::try_unwrap(log) {
                Ok(l) => return l.close_with(end_event),
                Err(l) => log = l,
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        log.append(end_event)
    });
    started?;
    end.context("cannot record the session end")?;
    // What sessions killed outright left behind (their cgroups, their folders) goes now,
    // after the agent, off its start-up.
    let _ = crate::sessions::running();
    if keep && matches!(review, Review::Ask | Review::Apply) {
        review_after_run(review, &session_id, word)?;
    }
    Ok(u8::try_from(code).unwrap_or(125))
}

/// The agent's settings in its kept home as the session starts: compared with what Ward last
/// accepted (a change made while no session watched is put back now, said, and held with the
/// session's own at its end). A home that cannot be guarded is not used.
fn guard_home(
    h: &crate::home::Home,
    m: &Manifest,
    session_dir: &Path,
) -> anyhow::Result<crate::guard::Snapshot> {
    // Grants mounted below the home are the person's: their paths below it.
    let grants: Vec<String> = m
        .files
        .iter()
        .filter_map(|g| g.path.strip_prefix(&h.inside).ok())
        .map(|r| r.to_string_lossy().into_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let snap = crate::guard::snapshot(
        &h.host,
        &h.inside,
        &crate::home::guard_store(&h.host),
        m.profile.as_ref().map_or(&[][..], |p| p.guard.as_slice()),
        &grants,
        &session_dir.join("stage").join("home").join("upper"),
    )
    .map_err(|e| {
        // What could not be put back stays in the home: closed until a person has looked.
        if let Some(n) = e.downcast_ref::<crate::guard::NotPutBack>() {
            let mark = crate::home::unsettled_mark(&h.host);
            if let Err(w) = std::fs::write(&mark, format!("{n}\n")) {
                eprintln!("ward: warning: cannot write {}: {w}", mark.display());
            }
            return anyhow::anyhow!(
                "{n}; the agent's home {} is closed: check it, then remove {}",
                ward_core::inert::path(&h.host),
                ward_core::inert::path(&mark)
            );
        }
        anyhow::anyhow!(
            "the agent's settings in its home cannot be checked, so the home is not used: {e}"
        )
    })?;
    if !snap.at_start.is_empty() {
        eprintln!(
            "ward: the agent's settings that run code changed while no Ward session watched them \
             (an earlier session ended without its check): {}; the agent starts with what Ward \
             last accepted, and `ward review` shows the changed version after this session",
            snap.at_start
                .iter()
                .map(|h| format!("~/{} ({})", ward_core::inert::line(&h.rel), h.what))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(snap)
}

/// The hidden files the agent's programs opened (they read an empty file): recorded, one
/// record each, under the rule that hides it.
fn record_hidden_opened(
    hidden: Option<crate::hidden::Watch>,
    ruled: &[(PathBuf, ward_core::Decision)],
    log: &AuditLog,
    session: &str,
) -> Vec<PathBuf> {
    let opened = hidden.map(crate::hidden::Watch::opened).unwrap_or_default();
    let records: Vec<Event> = opened
        .iter()
        .map(|p| {
            let (by, reason) = match ruled.iter().find(|(r, _)| r == p) {
                Some((_, d)) => (d.by.clone(), d.reason.clone()),
                None => (
                    ward_core::By::builtin("deny-list"),
                    "always hidden: it can hold keys or credentials".to_string(),
                ),
            };
            Event {
                session: Some(session.to_string()),
                resource: Some(p.display().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by,
                    reason: format!("{reason}; a program inside opened it and read nothing"),
                }),
                ..Event::new(ward_core::EventKind::SandboxHidden)
            }
        })
        .collect();
    if let Err(e) = log.append_all(records) {
        eprintln!("ward: warning: cannot record the hidden files programs opened: {e}");
    }
    opened
}

/// Put back the guarded settings the agent changed in its home and hold its versions in a
/// stage of the home (its own capability token, beginning now), said and recorded.
fn hold_home_settings(
    snap: &crate::guard::Snapshot,
    home: &crate::home::Home,
    m: &Manifest,
    session_dir: &Path,
    session: &str,
    stages: &mut Vec<ward_stage::Stage>,
    log: &AuditLog,
) -> anyhow::Result<()> {
    let upper = session_dir.join("stage").join("home").join("upper");
    let held = crate::guard::hold(snap, &upper);
    if held.is_empty() {
        return Ok(());
    }
    let records: Vec<Event> = held
        .iter()
        .map(|h| Event {
            session: Some(session.to_string()),
            resource: Some(home.host.join(&h.rel).display().to_string()),
            decision: Some(EventDecision {
                result: Effect::Deny,
                by: ward_core::By::builtin("home.guard"),
                reason: format!(
                    "the agent changed its own settings that run code in later sessions: {}",
                    h.what
                ),
            }),
            detail: Some(json!({"restored": h.restored})),
            ..Event::new(ward_core::EventKind::ReviewHeld)
        })
        .collect();
    log.append_all(records)?;
    // What could not be put back stays in the home, so the home is closed until a person
    // has looked: the next session with it refuses to start (fail closed).
    let unsettled: Vec<&str> = held
        .iter()
        .filter(|h| !h.restored)
        .map(|h| h.rel.as_str())
        .collect();
    if !unsettled.is_empty() {
        let mark = crate::home::unsettled_mark(&home.host);
        std::fs::write(
            &mark,
            format!("session {session}: {}\n", unsettled.join(", ")),
        )?;
        eprintln!(
            "ward: WARNING: the agent left settings in its home that Ward could not put back: {}. \
             The home {} is closed: check them, then remove {}",
            unsettled
                .iter()
                .map(|r| format!("~/{}", ward_core::inert::line(r)))
                .collect::<Vec<_>>()
                .join(", "),
            ward_core::inert::path(&home.host),
            ward_core::inert::path(&mark)
        );
    }
    let copied = upper.exists();
    if copied {
        let info_path = session_dir.join("stage.json");
        let mut info: crate::state::StageFile = match crate::state::read(&info_path) {
            Ok(i) => i,
            Err(_) => crate::state::StageFile {
                version: crate::state::VERSION,
                session: session.to_string(),
                started: ward_audit::time::now_rfc3339(),
                started_ns: 0,
                command: vec![],
                cwd: home.host.clone(),
                stages: vec![],
                tokens: vec![],
                manifest: m.source.clone(),
                managed: m.managed.clone(),
                stage_started_ns: vec![],
            },
        };
        let stage = ward_stage::Stage {
            grant: home.host.clone(),
            upper,
        };
        let authority = crate::review::authority()?;
        let token = authority.issue(&ward_token::Grant {
            folder: stage.grant.clone(),
            rights: vec![ward_token::Right::Read, ward_token::Right::Write],
            session: session.to_string(),
            generation: 1,
            expires: std::time::SystemTime::now() + crate::review::TOKEN_TTL,
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        info.stage_started_ns.resize(info.stages.len(), None);
        info.stage_started_ns.push(Some(now));
        info.stages.push(stage.clone());
        info.tokens.push(token);
        crate::state::write(&info_path, &info)?;
        stages.push(stage);
    }
    eprintln!(
        "ward: the agent changed its own settings that run code in its later sessions (hooks, \
         MCP servers, permissions, shell start-up): {}{}",
        held.iter()
            .map(|h| format!("~/{} ({})", ward_core::inert::line(&h.rel), h.what))
            .collect::<Vec<_>>()
            .join("; "),
        if copied {
            format!("; `ward review {session}` shows them")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Denied paths (and sockets) in the grants now that were not there, so not covered, when the
/// agent started: reported on the terminal and recorded as `session.uncovered`.
fn report_appeared(
    m: &Manifest,
    masked: &[PathBuf],
    ruled: &[(PathBuf, ward_core::Decision)],
    log: &AuditLog,
    session: &str,
) {
    let now = match inside(m) {
        Ok(now) => now,
        Err(e) => {
            // The end scan failed (a folder made unreadable, too many entries): what appeared
            // is unknown, and that is said, not passed over.
            eprintln!(
                "ward: warning: the grants could not be scanned at the end of the session ({e}); \
                 files Ward denies that appeared meanwhile are not known"
            );
            let r = log.append(Event {
                session: Some(session.to_string()),
                detail: Some(json!({"error": e.to_string(), "scanned": false})),
                ..Event::new(ward_core::EventKind::SessionUncovered)
            });
            if let Err(e) = r {
                eprintln!("ward: warning: cannot record the failed scan: {e}");
            }
            return;
        }
    };
    // Files a file rule denies that were written in a direct grant during the session: they
    // did not exist at the start, so nothing held them read-only.
    let written: Vec<&(PathBuf, ward_core::Decision)> = now
        .ruled
        .iter()
        .filter(|(p, _)| !ruled.iter().any(|(q, _)| q == p))
        .collect();
    if !written.is_empty() {
        eprintln!(
            "ward: warning: written in a direct grant although a file rule denies it (it did \
             not exist when the session started; Ward holds read-only what exists then, and a \
             staged grant holds everything for review): {}",
            written
                .iter()
                .map(|(p, _)| ward_core::inert::path(p).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let r = log.append(Event {
            session: Some(session.to_string()),
            detail: Some(json!({
                "rule_writes": written
                    .iter()
                    .map(|(p, d)| json!({"path": p, "by": d.by, "reason": d.reason}))
                    .collect::<Vec<_>>(),
                "why": "a direct grant holds read-only only what exists when the agent starts",
            })),
            ..Event::new(ward_core::EventKind::SessionUncovered)
        });
        if let Err(e) = r {
            eprintln!("ward: warning: cannot record the uncovered files: {e}");
        }
    }
    let before: std::collections::BTreeSet<&PathBuf> = masked.iter().collect();
    let appeared: Vec<&PathBuf> = now.masked.iter().filter(|p| !before.contains(p)).collect();
    if appeared.is_empty() {
        return;
    }
    eprintln!(
        "ward: warning: files Ward denies (keys, credentials, .env, sockets) appeared in the \
         grants during the session and were not covered, so the agent could reach them: {} \
         (they are covered from the next session on)",
        appeared
            .iter()
            .map(|p| ward_core::inert::path(p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let r = log.append(Event {
        session: Some(session.to_string()),
        detail: Some(json!({
            "paths": appeared,
            "why": "the sandbox covers the denied paths that exist when the agent starts",
        })),
        ..Event::new(ward_core::EventKind::SessionUncovered)
    });
    if let Err(e) = r {
        eprintln!("ward: warning: cannot record the uncovered files: {e}");
    }
}

/// How many distinct denied calls get a record of their own; past this they are only counted
/// (in the session's end record), so a looping agent cannot flood the log.
const DENIAL_RECORDS: usize = 256;

/// End the session from the supervisor's side (the launcher's parent-death chain takes every
/// process with it).
pub(crate) fn end_session(why: &str) {
    eprintln!("ward: ending the session: {why}");
    let pid = LAUNCHER.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: SIGKILL to our own child, the launcher.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The key prefix of refused programs in the denied-call counts.
const EXEC_REFUSED: &str = "exec refused: ";

/// Receive the agent's seccomp listener, answer every denied call with `EPERM`, and record the
/// first of each kind. Returns the count per call, for the session's end record.
fn record_denials(
    sock: std::os::fd::OwnedFd,
    stop: &std::sync::atomic::AtomicBool,
    broker: &ward_broker::Broker,
    grants: &[PathBuf],
) -> std::collections::BTreeMap<String, u64> {
    // A unix socket inside a grant leads to a process outside the sandbox (the agent's own
    // belong in /tmp): those there at the start are covered, those that appear are refused.
    let unix_denied = |p: &std::path::Path| grants.iter().any(|g| p.starts_with(g));
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut direct = std::collections::BTreeSet::<String>::new();
    let listener = match ward_sandbox::notify::recv_fd(&sock) {
        Ok(Some(l)) => l,
        Ok(None) => return counts,
        Err(e) => {
            end_session(&format!(
                "cannot receive the sandbox's seccomp listener: {e}"
            ));
            return counts;
        }
    };
    // Execs that need a person are asked on their own thread, one at a time (the terminal
    // asks one question at a time anyway); the rest are answered at once.
    let (asks, held) = std::sync::mpsc::channel::<crate::exec::Held>();
    let asker = std::thread::Builder::new()
        .name("ward-exec-ask".into())
        .spawn({
            let broker = broker.clone();
            move || {
                for h in held {
                    crate::exec::ask(&broker, h);
                }
            }
        });
    let mut refused_execs = std::collections::BTreeMap::<String, u64>::new();
    let mut exec = |call, responder| {
        let refused = crate::exec::check(broker, call, responder, &|h| {
            if let Err(std::sync::mpsc::SendError(h)) = asks.send(h) {
                // No asker: nobody can answer, so the exec is refused.
                h.responder.send(false);
            }
        });
        if let Some(p) = refused {
            if refused_execs.len() < DENIAL_RECORDS || refused_execs.contains_key(&p) {
                *refused_execs.entry(p).or_insert(0) += 1;
            }
        }
    };
    let serve = std::panic::AssertUnwindSafe(|| {
        ward_sandbox::notify::serve(&listener, stop, &unix_denied, &mut exec, |d| {
            let n = counts.entry(d.call.clone()).or_insert(0);
            *n += 1;
            if d.call == "connect" {
                // A direct connection past the proxy: one record per destination (bounded).
                if direct.len() < DENIAL_RECORDS && direct.insert(d.args.clone()) {
                    let r = broker.refused(
                        ward_core::EventKind::NetDirect,
                        ward_broker::Refused::Dest(d.args.clone()),
                        ward_core::By::sandbox("network"),
                        if d.args.ends_with(":53") {
                            format!(
                                "a DNS query to {} (the sandbox's resolver is 127.0.0.1:53, which answers for the names the manifest allows; no other is reachable)",
                                d.args
                            )
                        } else {
                            format!(
                                "a direct connection to {} past the proxy (the sandbox has no route out). Programs must use HTTP_PROXY/HTTPS_PROXY",
                                d.args
                            )
                        },
                        json!({"pid": d.pid}),
                        false,
                    );
                    if let Err(e) = r {
                        eprintln!("ward: warning: cannot record a direct connection: {e}");
                    }
                }
                return;
            }
            if *n == 1 && counts.len() <= DENIAL_RECORDS {
                let r = broker.refused(
                    ward_core::EventKind::SandboxDenied,
                    ward_broker::Refused::Resource(d.call.clone()),
                    ward_core::By::sandbox("seccomp"),
                    "a system call the sandbox denies (EPERM)".into(),
                    json!({"pid": d.pid, "args": d.args}),
                    true,
                );
                if let Err(e) = r {
                    eprintln!(
                        "ward: warning: cannot record a denied call ({}): {e}",
                        d.call
                    );
                }
            }
        })
    });
    let served = std::panic::catch_unwind(serve)
        .unwrap_or_else(|_| Err(std::io::Error::other("the recorder panicked")));
    // Questions still open are answered (or time out) before the listener closes.
    drop(asks);
    for (p, n) in refused_execs {
        counts.insert(format!("{EXEC_REFUSED}{p}"), n);
    }
    if let Ok(t) = asker {
        let _ = t.join();
    }
    if let Err(e) = served {
        end_session(&format!(
            "the seccomp listener failed ({e}); denied calls would go unrecorded"
        ));
    }
    counts
}

/// The confinement `ward run` applies beyond the grants: Landlock (or, where the kernel lacks
/// it and the manifest allows, none), and the session's cgroup limits. Decided before the
/// agent starts, and recorded in the session's start.
struct Confinement {
    landlock: bool,
    abi: i32,
    cgroups: Cgroups,
    limits: serde_json::Value,
    /// The features run without, each with the reason: `[{feature, reason, allowed_by}]`.
    degraded: Vec<serde_json::Value>,
}

impl Confinement {
    /// Landlock, decided; the cgroups are made next ([`make_cgroups`], on a thread of their
    /// own beside PID 1's configuration): nothing waits on them until the agent.
    fn decide(m: &Manifest, session: &str) -> anyhow::Result<Confinement> {
        let mut degraded = Vec::new();
        let abi = ward_sandbox::landlock::kernel_abi();
        let mut landlock = true;
        if abi < 1 {
            Confinement::allow(
                m,
                &mut degraded,
                SandboxError::Unsupported {
                    feature: "landlock",
                    detail:
                        "this kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK \
                             and `landlock` in the lsm= boot list)"
                            .into(),
                },
            )?;
            landlock = false;
        }
        let l = m.limits.effective();
        let limits = json!({
            "memory": l.memory.as_ref().map(|(b, _)| b),
            "pids": l.pids.as_ref().map(|(n, _)| n),
            "cpu": l.cpu.as_ref().map(|(c, _)| c),
            "tmp": l.tmp.as_ref().map(|(b, _)| b),
            "shm": l.shm.as_ref().map(|(b, _)| b),
            "stage": l.stage.as_ref().map(|(b, _)| b),
            "stage_entries": l.stage_entries.as_ref().map(|(n, _)| n),
        });
        Ok(Confinement {
            landlock,
            abi,
            cgroups: Cgroups::new(session),
            limits,
            degraded,
        })
    }

    /// A feature the kernel lacks: allowed when the manifest's `allow_degraded` lists it
    /// (said, and kept for the record), refused otherwise.
    fn allow(
        m: &Manifest,
        degraded: &mut Vec<serde_json::Value>,
        e: SandboxError,
    ) -> anyhow::Result<()> {
        if let SandboxError::Unsupported { feature, detail } = &e {
            let (feature, detail) = (*feature, detail.clone());
            if let Some((_, origin)) = m.allow_degraded.iter().find(|(f, _)| f == feature) {
                eprintln!(
                    "ward: warning: running without {feature} (allow_degraded, {origin}): {detail}"
                );
                degraded.push(json!({
                    "feature": feature, "reason": detail, "allowed_by": origin.to_string(),
                }));
                return Ok(());
            }
            return Err(anyhow::Error::new(e).context(format!(
                    "Ward does not run agents with less confinement than asked for; list \"{feature}\" \
                     in the manifest's allow_degraded to run without it (recorded in the audit log)"
                )));
        }
        Err(e.into())
    }
}

/// Make the session's cgroups with the manifest's limits (a default ceiling this machine
/// cannot enforce is run without, said and kept in `degraded`; anything else not allowed
/// degraded is an error) and hand them to the launcher over `sock`, as descriptors of the
/// files a process writes to move itself in (`ward_sandbox::cgroup::join_file`): the launcher
/// and PID 1 each move themselves.
fn make_cgroups(
    m: &Manifest,
    cgroups: &mut Cgroups,
    degraded: &mut Vec<serde_json::Value>,
    sock: std::os::fd::BorrowedFd<'_>,
) -> anyhow::Result<()> {
    let l = m.limits.effective();
    let mut without_default = Vec::new();
    let wanted = [
        l.memory.as_ref().map(|(b, o)| (Limit::Memory(*b), o)),
        l.pids.as_ref().map(|(n, o)| (Limit::Pids(*n), o)),
        l.cpu.as_ref().map(|(c, o)| (Limit::Cpu(*c), o)),
    ];
    for (limit, origin) in wanted.into_iter().flatten() {
        match cgroups.apply(limit) {
            Ok(()) => {}
            // A default ceiling (the manifest asked for none) on a machine that cannot
            // enforce it: run without it, saying so and recording it.
            Err(SandboxError::Unsupported { feature, detail })
                if *origin == ward_core::Origin::Default =>
            {
                eprintln!("ward: warning: running without the default {feature} ceiling: {detail}");
                without_default.push(json!({
                    "feature": feature, "reason": detail, "allowed_by": "default limit",
                }));
            }
            Err(e) => Confinement::allow(m, degraded, e)?,
        }
    }
    degraded.extend(without_default);
    let files = ward_sandbox::cgroup::Joiner::open(cgroups.dirs())?;
    ward_sys::send_fds(sock, &files.fds())
        .map_err(|_| LauncherGone("it could join the session's cgroups"))?;
    Ok(())
}

/// The launcher's process name (`/proc/PID/comm`), by which `ward status` and `ward kill`
/// recognise it (with its start time and owner).
pub const LAUNCHER_NAME: &std::ffi::CStr = c"ward-launch";

/// The sandbox launcher: a fork of `ward run` that runs the launcher code directly. Forking
/// (not exec'ing `ward __launch`) saves loading the ward binary a second time on the path to
/// the agent's start; `ward run` has no other thread yet when it forks, so the child is a
/// complete single-threaded copy.
struct Launcher {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl Launcher {
    /// Fork and run the launcher on `cfg` (the value itself: nothing is re-parsed), keeping
    /// only stdio and the descriptors in `keep`.
    fn start(cfg: &ward_sandbox::launch::Config, keep: &[i32]) -> std::io::Result<Launcher> {
        let mut keep = keep.to_vec();
        keep.sort_unstable();
        debug_assert_eq!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("Threads:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()),
            Some("1".to_string()),
            "ward run must fork the launcher before starting any thread"
        );
        // SAFETY: fork of a process with a single thread (no thread is started before this
        // point in `run_inner`; debug builds check it); the child only closes
        // descriptors, resets the two handlers `ward run` installed, runs the launcher and
        // leaves with _exit (no destructors, no flushing of the parent's buffers).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the child of a single-threaded fork (see above): it names itself, resets
            // two handlers, closes descriptors and runs the launcher, then leaves with _exit.
            unsafe {
                libc::prctl(libc::PR_SET_NAME, LAUNCHER_NAME.as_ptr());
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                let mut from = 3u32;
                for &k in &keep {
                    if k as u32 > from {
                        libc::syscall(libc::SYS_close_range, from, k as u32 - 1, 0u32);
                    }
                    from = k as u32 + 1;
                }
                libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32);
                let code = ward_sandbox::launch::main(cfg);
                libc::_exit(code);
            }
        }
        Ok(Launcher { pid, status: None })
    }

    fn id(&self) -> u32 {
        self.pid as u32
    }

    fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                let s = std::os::unix::process::ExitStatusExt::from_raw(status);
                self.status = Some(s);
                return Ok(s);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The staged grants of the session: an upper layer (and overlay's work folder) per grant,
/// beside the session; a capability token each; and `stage.json`, which the review reads.
/// Returns the stages and their tokens' ids.
/// The launcher ended before the supervisor could hand it something (`until`).
#[derive(Debug)]
struct LauncherGone(&'static str);

impl std::fmt::Display for LauncherGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the sandbox launcher stopped before {}", self.0)
    }
}

impl std::error::Error for LauncherGone {}

/// `ward run` failed and the reason is already on the person's terminal (the launcher said
/// it): exit 125 without another message.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sandbox could not be set up (the reason is above)")
    }
}

impl std::error::Error for Reported {}

/// What `ward run` works out while the sandbox is built.
struct Prepared {
    /// The credentials' secrets and placeholders (for the proxy).
    credentials: Vec<ward_net::credentials::Credential>,
    inside: Inside,
    /// The agent's own home, when it has one (held for the session).
    home: Option<crate::home::Home>,
    repo_ids: crate::repos::Identities,
    manifest_changes: Vec<serde_json::Value>,
    stages: Vec<ward_stage::Stage>,
    token_ids: Vec<String>,
    devices: Vec<crate::devices::Outcome>,
    env_credentials: Vec<(String, String)>,
    env_removed: Vec<String>,
    /// The agent's settings that run code later, as they were at the start (a kept home).
    guarded: Option<crate::guard::Snapshot>,
    /// Programs on the host's PATH the sandbox does not show (explained by shells inside).
    outside: Vec<crate::program::Outside>,
    /// The hidden files' watched covers.
    hidden: Option<crate::hidden::Watch>,
    /// TLS inspection, when the manifest turns it on.
    intercept: Option<ward_net::Intercept>,
}

/// The session's configuration, worked out while the launcher builds the sandbox, and sent
/// to it: the cgroups as soon as they exist (the launcher moves itself and PID 1 into them),
/// the rest when everything is known (PID 1 completes the root with it).
#[allow(clippy::too_many_arguments)]
fn prepare(
    m: &Manifest,
    session: &str,
    paths: &LogPaths,
    session_dir: &Path,
    (staging, cwd, agent_cmd): (&Path, &Path, &[String]),
    agent_tty: Option<&crate::terminal::AgentTerminal>,
    rest_sock: OwnedFd,
) -> anyhow::Result<Prepared> {
    (|| {
        let inside = inside(m)?;
        if !inside.unmapped.is_empty() {
            eprintln!(
                "ward: warning: {} file(s) in staged grants belong to another user or group, \
                 which the sandbox cannot map: the agent can read them but not change them (it \
                 gets EOVERFLOW): {}{}",
                inside.unmapped.len(),
                inside
                    .unmapped
                    .iter()
                    .take(5)
                    .map(|p| ward_core::inert::path(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                if inside.unmapped.len() > 5 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        // Repositories are known by identity, not path: a `.git` renamed away with its
        // folder and a new one made in its place is a different repository.
        let repo_ids = crate::repos::identities(&inside.read_only);
        let sessions = crate::sessions::sessions_dir(paths);
        // What changed in the manifest since its last run is shown before the agent starts.
        let manifest_changes =
            crate::manifest_watch::check(m, sessions.parent().unwrap_or(&sessions))?;
        // Credentials' secrets, before anything is set up: one that cannot be had stops the
        // session here, saying where it was looked for.
        let credentials = crate::secrets::resolve(m)?;
        let (stages, token_ids) = prepare_stages(m, session_dir, session, agent_cmd, cwd)?;
        // Devices are asked for now, before anything of the agent's runs.
        let devices = crate::devices::decide(m, &inside.pdp, agent_tty.map(|t| t.word.as_str()));
        let (mut lc, env_credentials, env_removed) = launcher_config(
            m,
            staging,
            cwd,
            (agent_cmd, &credentials),
            (
                &inside.masked,
                &inside.read_only,
                &inside.protected,
                &stages,
            ),
        );
        lc.devices = devices
            .iter()
            .filter(|d| d.granted())
            .map(|d| PathBuf::from(&d.action.resource))
            .collect();
        let home = crate::home::own(
            m,
            paths.state_dir(),
            session_dir,
            m.profile.as_ref().map_or("default", |p| p.name.as_str()),
        )?;
        lc.home = home.as_ref().map(|h| (h.host.clone(), h.inside.clone()));
        // TLS inspection: the session's authority, and the bundle the agent trusts.
        let intercept = crate::proxy::interception(
            m,
            session,
            session_dir,
            home.as_ref().map(|h| h.host.as_path()),
        )?;
        lc.trust = intercept.as_ref().map(|(_, t)| t.clone());
        let intercept = intercept.map(|(i, _)| i);
        // Each hidden file gets an empty cover of its own, watched: the report names the ones
        // the agent's tools looked for.
        let hidden = crate::hidden::watch(&session_dir.join("masks"), &inside.masked);
        if hidden.is_some() {
            lc.mask_from = Some(session_dir.join("masks"));
        }
        // The agent's program is looked for now as the sandbox will look for it: one only on
        // the host is explained (exit 127), not left to fail bare inside.
        let grants: Vec<PathBuf> = m.files.iter().map(|g| g.path.clone()).collect();
        let agent_path = lc
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone());
        let host_path = std::env::var("PATH").ok();
        let seen_inside = crate::program::Inside {
            grants: &grants,
            home: lc.home.as_ref(),
            cwd,
        };
        if let Some(prog) = agent_cmd.first() {
            crate::program::check(
                prog,
                agent_path.as_deref(),
                host_path.as_deref(),
                &seen_inside,
            )?;
        }
        // A command a shell inside does not find is explained at once when it is only on the
        // host (bash's command_not_found_handle, exported), and noted for the report.
        let outside = crate::program::outside_cached(
            paths.state_dir(),
            agent_path.as_deref(),
            host_path.as_deref(),
            &seen_inside,
        );
        // Exported only when there is something to explain (bash's own message otherwise),
        // in place of any the environment had.
        const HANDLER: &str = "BASH_FUNC_command_not_found_handle%%";
        if !outside.is_empty() {
            lc.env.retain(|(k, _)| k != HANDLER);
            lc.env.push((
                HANDLER.into(),
                crate::program::handler(&outside, home.is_some()),
            ));
        }
        let mut rest = std::fs::File::from(rest_sock);
        rest.write_all(&ward_sandbox::late::encode(&lc))
            .map_err(|_| LauncherGone("it was configured"))?;
        drop(rest);
        let guarded = match home.as_ref().filter(|h| h.kept) {
            Some(h) => Some(guard_home(h, m, session_dir)?),
            None => None,
        };
        anyhow::Ok(Prepared {
            intercept,
            credentials,
            guarded,
            outside,
            hidden,
            inside,
            home,
            repo_ids,
            manifest_changes,
            stages,
            token_ids,
            devices,
            env_credentials,
            env_removed,
        })
    })()
}

fn prepare_stages(
    m: &Manifest,
    session_dir: &Path,
    session: &str,
    agent_cmd: &[String],
    cwd: &Path,
) -> anyhow::Result<(Vec<ward_stage::Stage>, Vec<String>)> {
    let session = session.to_string();
    // Staged grants: an upper layer (and overlay's work folder) per grant, beside the session.
    let mut stages = Vec::new();
    for (i, g) in m
        .files
        .iter()
        .filter(|g| g.access == Access::ReadWrite && g.mode == Mode::Staged)
        .enumerate()
    {
        let dir = session_dir.join("stage").join(i.to_string());
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        // A single file is staged in its folder's overlay (mounted apart, beside the upper),
        // of which only the file is shown inside: the review sees a change in that folder.
        let file = std::fs::symlink_metadata(&g.path).is_ok_and(|m| m.is_file());
        let merged = file.then(|| dir.join("merged"));
        for d in [Some(&upper), Some(&work), merged.as_ref()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        stages.push(ward_stage::Stage {
            grant: match g.path.parent() {
                Some(parent) if file => parent.to_path_buf(),
                _ => g.path.clone(),
            },
            upper,
        });
    }
    // Each staged grant is held as a capability token; applying verifies and rotates it.
    let mut tokens = Vec::new();
    if !stages.is_empty() {
        let authority = crate::review::authority()?;
        for st in &stages {
            tokens.push(
                authority
                    .issue(&ward_token::Grant {
                        folder: st.grant.clone(),
                        rights: vec![ward_token::Right::Read, ward_token::Right::Write],
                        session: session.clone(),
                        generation: 1,
                        expires: std::time::SystemTime::now() + crate::review::TOKEN_TTL,
                    })
                    .context("cannot issue the grant's capability token")?,
            );
        }
    }
    let token_ids: Vec<String> = {
        let authority = if tokens.is_empty() {
            None
        } else {
            Some(crate::review::authority()?)
        };
        tokens
            .iter()
            .filter_map(|t| authority.as_ref()?.inspect(t).ok().map(|i| i.id))
            .collect()
    };
    if !stages.is_empty() {
        let info = session_dir.join("stage.json");
        crate::state::write(
            &info,
            &crate::state::StageFile {
                version: crate::state::VERSION,
                session: session.clone(),
                started: ward_audit::time::now_rfc3339(),
                started_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                command: agent_cmd.to_vec(),
                cwd: cwd.to_path_buf(),
                stages: stages.clone(),
                tokens: tokens.clone(),
                // The review judges the changes by this manifest's file rules.
                manifest: m.source.clone(),
                managed: m.managed.clone(),
                stage_started_ns: vec![],
            },
        )
        .with_context(|| format!("cannot write {}", info.display()))?;
    }
    Ok((stages, token_ids))
}

/// The launcher's configuration for this session (without its descriptors, which the caller
/// sets): the grants, masks and read-only paths, stages, limits, exec watch, the proxy's
/// variables and the scrubbed environment. Also returns the variables removed for holding
/// credentials (with the rule that found each) and every name removed, for the start record.
#[allow(clippy::type_complexity)]
fn launcher_config(
    m: &Manifest,
    staging: &Path,
    cwd: &Path,
    (agent_cmd, credentials): (&[String], &[ward_net::credentials::Credential]),
    (masked, read_only, protected, stages): (
        &[PathBuf],
        &[PathBuf],
        &[PathBuf],
        &[ward_stage::Stage],
    ),
) -> (
    ward_sandbox::launch::Config,
    Vec<(String, String)>,
    Vec<String>,
) {
    // The launcher's configuration, as a value: the forked launcher runs it as it is.
    let mut lc = ward_sandbox::launch::Config::new(
        staging.to_path_buf(),
        cwd.to_path_buf(),
        agent_cmd.to_vec(),
    );
    lc.parent = Some(std::process::id() as i32);
    lc.proxy_port = ward_net::PROXY_PORT;
    lc.set_env = crate::proxy::agent_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        // The manifest's and the profile's `env.set` (never a name Ward sets: refused there).
        .chain(m.env_set.iter().map(|(k, v, _)| (k.clone(), v.clone())))
        // Credentials: the placeholder, never the secret.
        .chain(credentials.iter().filter_map(|c| {
            c.spec
                .env
                .as_ref()
                .map(|e| (e.clone(), c.placeholder.clone()))
        }))
        .collect();
    // With TLS inspected, clients that read a variable for their trusted certificates are
    // pointed at the session's bundle (unless the manifest sets the variable itself).
    if crate::proxy::opens_tls(m) {
        for k in crate::proxy::TRUST_VARS {
            if !m.env_set.iter().any(|(s, _, _)| s.as_str() == *k) {
                lc.set_env.push((
                    k.to_string(),
                    ward_sandbox::launch::TRUST_BUNDLE.to_string(),
                ));
            }
        }
    }
    if m.exec_checked() {
        lc.watch_exec = true;
    }
    let limits = m.limits.effective();
    lc.tmp_size = limits.tmp.as_ref().map(|(n, _)| *n);
    lc.shm_size = limits.shm.as_ref().map(|(n, _)| *n);
    let mut scrub_extra: Vec<String> = m.env_scrub.iter().map(|(p, _)| p.clone()).collect();
    // A credential's secret read from a variable never reaches the agent by that variable.
    scrub_extra.extend(credentials.iter().filter_map(|c| match &c.spec.source {
        ward_core::SecretSource::Env(v) => Some(v.clone()),
        _ => None,
    }));
    let scrub_keep: Vec<String> = m.env_keep.iter().map(|(k, _)| k.clone()).collect();
    let (kept, _) = ward_sandbox::env::Scrub::default()
        .with(&scrub_extra, &scrub_keep)
        .apply(std::env::vars_os());
    // Credentials whatever the variable's name (a name the manifest keeps stays: the person
    // decided).
    let env_credentials = crate::envscan::credentials(
        kept.into_iter()
            .filter(|(k, _)| !scrub_keep.iter().any(|x| k.to_str() == Some(x))),
    );
    scrub_extra.extend(env_credentials.iter().map(|(k, _)| k.clone()));
    if !env_credentials.is_empty() {
        eprintln!(
            "ward: removed from the agent's environment, their values being credentials: {} \
             (keep one with [env] keep in the manifest)",
            env_credentials
                .iter()
                .map(|(k, r)| format!("{} ({r})", ward_core::inert::line(k)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (_, env_removed) = ward_sandbox::env::Scrub::default()
        .with(&scrub_extra, &scrub_keep)
        .apply(std::env::vars_os());
    lc.scrub_env(&scrub_extra, &scrub_keep);
    lc.grants = m
        .files
        .iter()
        .map(|g| (g.path.clone(), g.access != Access::Read))
        .collect();
    lc.masks = masked.to_vec();
    lc.read_only = read_only.iter().chain(protected).cloned().collect();
    // Each stage with its grant's own path (a staged file's stage is its folder's).
    lc.stages = m
        .files
        .iter()
        .filter(|g| g.access == Access::ReadWrite && g.mode == Mode::Staged)
        .zip(stages)
        .map(|(g, st)| {
            (
                g.path.clone(),
                st.upper.clone(),
                st.upper.with_file_name("work"),
            )
        })
        .collect();
    (lc, env_credentials, env_removed)
}

/// The cgroup limits the session reached, each recorded (`sandbox.limit`): what they stopped
/// is a denial Ward observed. Returns the counts for the end record.
fn record_limits(
    confinement: &mut Confinement,
    log: &AuditLog,
    session: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let limits_hit: serde_json::Map<String, serde_json::Value> = confinement
        .cgroups
        .events()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    // What the limits stopped is a denial Ward observed: one record each, beside the counts.
    let limit_records: Vec<Event> = limits_hit
        .iter()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| Event {
            session: Some(session.to_string()),
            resource: Some(k.clone()),
            decision: Some(EventDecision {
                result: Effect::Deny,
                by: ward_core::By::sandbox("cgroup"),
                reason: format!("the session reached its limit {v} time(s): {k}"),
            }),
            detail: Some(json!({"count": v, "limits": confinement.limits})),
            ..Event::new(ward_core::EventKind::SandboxLimit)
        })
        .collect();
    if !limit_records.is_empty() {
        if let Err(e) = log.append_all(limit_records) {
            eprintln!("ward: warning: cannot record the limits reached: {e}");
        }
    }
    limits_hit
}

/// Each stage's count of changes (an unreadable stage counts as one: it is kept, whatever it
/// holds), and the total.
fn staged_summary(stages: &[ward_stage::Stage]) -> (Vec<serde_json::Value>, usize) {
    let mut staged = Vec::new();
    let mut pending = 0usize;
    for st in stages {
        match ward_stage::changes(st) {
            Ok(cs) => {
                pending += cs.len();
                staged.push(json!({"grant": st.grant, "changes": cs.len()}));
            }
            Err(e) => {
                // Unreadable stage: keep it, whatever it holds.
                pending += 1;
                staged.push(json!({"grant": st.grant, "error": e.to_string()}));
            }
        }
    }
    (staged, pending)
}

/// The end-of-run review the person asked for: apply everything (`--review apply`, what runs
/// code held) or ask on the terminal.
fn review_after_run(review: Review, session_id: &str, word: Option<String>) -> anyhow::Result<()> {
    let this = crate::sessions::staged()?
        .into_iter()
        .find(|s| s.session == session_id);
    if let Some(s) = this {
        if review == Review::Apply {
            for d in crate::review::apply_changes(
                &s,
                crate::review::Selection::All,
                "command line (--review apply)",
            )? {
                eprintln!(
                    "ward: applied {} step(s) to {}; {} held{}",
                    d.applied,
                    ward_core::inert::path(&d.grant),
                    d.conflicts.len() + d.refused.len() + d.flagged.len(),
                    if d.flagged.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} would run code: `ward review {}` to apply them knowingly)",
                            d.flagged.len(),
                            session_id
                        )
                    }
                );
            }
        } else {
            let mut consent: Box<dyn ward_consent::Consent> = match ward_consent::Terminal::open() {
                Ok(t) => match word {
                    Some(w) => Box::new(t.with_word(w)),
                    None => Box::new(t),
                },
                Err(reason) => Box::new(ward_consent::Headless { reason }),
            };
            crate::review::interactive(&s, consent.as_mut())?;
        }
    }
    Ok(())
}

/// The session's broker: the decision point, the audit log, the person's terminal as the
/// consent channel (its questions pause the relay and carry the session's word), "always"
/// answers written to the user's own manifest.
fn session_broker(
    m: &Manifest,
    pdp: Pdp,
    log: &std::sync::Arc<AuditLog>,
    session: &str,
    agent_cmd: &[String],
    running: Option<&crate::terminal::Running>,
) -> ward_broker::Broker {
    let consent: Option<Box<dyn ward_consent::Consent + Send>> =
        ward_consent::Terminal::open().ok().map(|t| {
            let t = match running {
                Some(r) => t.with_relay(r.handle()).with_word(r.word.clone()),
                None => t,
            };
            Box::new(t) as Box<dyn ward_consent::Consent + Send>
        });
    ward_broker::Broker::new(ward_broker::Config {
        pdp,
        log: log.clone(),
        session: Some(session.to_string()),
        agent: agent_cmd.first().cloned(),
        channels: consent.into_iter().collect(),
        ask_timeout: ward_consent::ask_timeout(std::time::Duration::from_secs(60)),
        // "Always" answers go to the user's own manifest (a TOML file of theirs).
        always: m.source.clone().map(|manifest| ward_broker::Always {
            manifest,
            managed: m.managed.clone(),
            who: crate::review::who(),
        }),
    })
}
