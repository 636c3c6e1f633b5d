//! The session's egress proxy: `ward run`'s agent lives in a network namespace whose only
//! interface is loopback. The launcher listens on `127.0.0.1:3128` there and hands the socket
//! over; the supervisor accepts the agent's connections from outside the namespace and serves
//! them with [`ward_net::Proxy`], which dials from the host's network after deciding. Programs
//! find it through the usual proxy variables; one that ignores them gets no route (and its
//! `connect` is recorded by the seccomp recorder as `net.direct`).

use serde_json::json;
use std::os::fd::{FromRawFd, OwnedFd};
use ward_broker::Broker;
use ward_core::Manifest;

/// The variables the agent gets (after scrubbing its own `*_PROXY`).
pub fn agent_env() -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{}", ward_net::PROXY_PORT);
    let local = "localhost,127.0.0.1,::1".to_string();
    vec![
        ("HTTP_PROXY", url.clone()),
        ("HTTPS_PROXY", url.clone()),
        ("ALL_PROXY", url.clone()),
        ("http_proxy", url.clone()),
        ("https_proxy", url.clone()),
        ("all_proxy", url),
        ("NO_PROXY", local.clone()),
        ("no_proxy", local),
        // Node's built-in fetch ignores the variables unless told (Node 22.21+/24.5+).
        ("NODE_USE_ENV_PROXY", "1".into()),
    ]
}

/// The variables clients read for the certificates they trust, pointed at the session's
/// bundle when TLS is inspected (OpenSSL and Go, Python requests and pip, curl, Node, git).
pub const TRUST_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    // Codex CLI's own (its HTTP client reads it beside SSL_CERT_FILE).
    "CODEX_CA_CERTIFICATE",
];

/// Whether a session opens TLS to some destinations: `inspect`, credentials, or `https` entries
/// with paths.
pub fn opens_tls(m: &Manifest) -> bool {
    m.inspect.is_some()
        || m.git_push.is_some()
        || !m.credentials.is_empty()
        || m.path_destinations().iter().any(|d| d.scheme == "https")
}

/// TLS inspection for a session whose manifest turns it on: the session's own certificate
/// authority (its key only in this process), the client toward the real servers (the
/// system's roots and the manifest's `ca_file`s), and the bundle the agent trusts (the
/// system's roots and the session's authority) written to `dir/trust.pem`.
pub fn interception(
    m: &Manifest,
    session: &str,
    dir: &std::path::Path,
    home: Option<&std::path::Path>,
) -> anyhow::Result<Option<(ward_net::Intercept, std::path::PathBuf)>> {
    use anyhow::Context;
    use ward_net::intercept;
    if !opens_tls(m) {
        return Ok(None);
    }
    // Without `inspect`, only the credentials' destinations and those with path rules are
    // opened.
    // (`git_push`: a push could go to any of them.)
    let only = (m.inspect.is_none() && m.git_push.is_none()).then(|| {
        let name = |d: &ward_core::Destination| match &d.host {
            ward_core::HostPattern::Name(h) => Some((h.clone(), d.port)),
            _ => None,
        };
        m.credentials
            .iter()
            .filter_map(|c| name(&c.to))
            .chain(
                m.path_destinations()
                    .into_iter()
                    .filter(|d| d.scheme == "https")
                    .filter_map(name),
            )
            .collect()
    });
    let system = std::path::Path::new(intercept::SYSTEM_ROOTS);
    let roots = intercept::read_bounded(system)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .with_context(|| {
            format!(
                "inspecting TLS ([network] inspect) needs the system's certificates at {} \
                 (Debian: apt install ca-certificates)",
                system.display()
            )
        })?;
    let mut extra = Vec::new();
    for (p, o) in &m.ca_files {
        extra.extend(ca_file(m, p, home).with_context(|| format!("network.ca_file ({o})"))?);
    }
    let alpn: &[&[u8]] = &[b"http/1.1"];
    let upstream = intercept::upstream_config(system, &extra, alpn)?;
    let authority = std::sync::Arc::new(intercept::Authority::new(session, alpn)?);
    let path = dir.join("trust.pem");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A new file of Ward's own (never through a link), read-only.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| f.write_all(intercept::trust_bundle(&roots, &authority).as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Some((
        ward_net::Intercept {
            authority,
            upstream,
            only,
        },
        path,
    )))
}

/// The certificates of a manifest's `ca_file`, from a file the agent cannot have written: not
/// inside a writable grant or the agent's home by its name or its real path, not a second
/// name of another file (a hard link), read from the one descriptor opened along its real
/// path without following any link.
fn ca_file(
    m: &Manifest,
    p: &std::path::Path,
    home: Option<&std::path::Path>,
) -> anyhow::Result<Vec<ward_net::intercept::CertificateDer<'static>>> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(p)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ward_core::inert::path(p)))?;
    let writable = m
        .files
        .iter()
        .filter(|g| g.access == ward_core::manifest::Access::ReadWrite)
        .map(|g| {
            (
                g.path.clone(),
                format!(
                    "the writable grant {} ({})",
                    ward_core::inert::path(&g.path),
                    g.origin
                ),
            )
        })
        .chain(home.map(|h| (h.to_path_buf(), "the agent's home".to_string())));
    for (w, what) in writable {
        let w_real = std::fs::canonicalize(&w).unwrap_or_else(|_| w.clone());
        if p.starts_with(&w) || real.starts_with(&w_real) || real.starts_with(&w) {
            anyhow::bail!(
                "{} is inside {what}: the agent could choose the certificates Ward trusts; keep \
                 it outside every writable grant",
                ward_core::inert::path(p)
            );
        }
    }
    let root = std::fs::File::open("/")?;
    let rel = std::ffi::CString::new(
        real.strip_prefix("/")
            .unwrap_or(&real)
            .as_os_str()
            .as_encoded_bytes(),
    )?;
    let fd = ward_sys::openat2(
        std::os::fd::AsFd::as_fd(&root),
        &rel,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e} (changed while read?)", ward_core::inert::path(p)))?;
    let f = std::fs::File::from(fd);
    let md = f.metadata()?;
    if !md.is_file() {
        anyhow::bail!("{} is not a regular file", ward_core::inert::path(p));
    }
    if md.nlink() > 1 {
        anyhow::bail!(
            "{} has other names (hard links), any of which could be written: copy it to a \
             file of its own",
            ward_core::inert::path(p)
        );
    }
    let bytes = ward_core::bounded::read_open(f, ward_net::intercept::MAX_PEM)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ward_core::inert::path(p)))?;
    Ok(ward_net::intercept::certificates_in(
        &bytes,
        &p.display().to_string(),
    )?)
}

/// What the session's start record says about the network.
pub fn describe(m: &Manifest) -> serde_json::Value {
    json!({
        "proxy": format!("127.0.0.1:{}", ward_net::PROXY_PORT),
        "inspect": m.inspect.is_some(),
        "destinations": m.network.iter().map(|e| json!({"dest": e.shown(), "effect": e.effect.as_str()})).collect::<Vec<_>>(),
        "unknown": m.unknown_network.0.as_str(),
    })
}

pub struct Handle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Wakes the thread while it waits for the first connection.
    wake: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<serde_json::Value>>,
}

impl Handle {
    /// Stop serving (the agent is gone) and return the proxy's counts.
    pub fn stop(mut self) -> serde_json::Value {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Closing the write end wakes the thread's poll (end of file).
        drop(self.wake.take());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The type of a socket (`SOCK_STREAM`, `SOCK_DGRAM`).
fn socket_type(fd: &OwnedFd) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut t: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int of the size passed, on a descriptor we own.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            &mut t as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(t)
}

/// What the launcher listens at inside the sandbox besides the proxy, as `ward run` worked it
/// out from the manifest: the loopback services and the resolver's names.
#[derive(Clone)]
pub struct Listened {
    pub services: Vec<ward_core::manifest::LoopbackService>,
    pub names: Vec<ward_net::dns::Named>,
}

/// Receive the listening socket from the launcher and serve it on a thread of its own.
pub fn start(
    sock: OwnedFd,
    broker: Broker,
    manifest: Manifest,
    listened: Listened,
    net: (
        Option<ward_net::Intercept>,
        Vec<ward_net::credentials::Credential>,
    ),
) -> Handle {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (wake_r, wake_w) = match ward_sys::pipe(libc::O_CLOEXEC) {
        Ok((r, w)) => (Some(r), Some(w)),
        Err(_) => (None, None),
    };
    let thread = std::thread::Builder::new()
        .name("ward-proxy".into())
        .spawn(move || serve(sock, broker, manifest, listened, net, rx, wake_r))
        .ok();
    Handle {
        stop: Some(tx),
        wake: wake_w,
        thread,
    }
}

fn serve(
    sock: OwnedFd,
    broker: Broker,
    manifest: Manifest,
    Listened { services, names }: Listened,
    (intercept, credentials): (
        Option<ward_net::Intercept>,
        Vec<ward_net::credentials::Credential>,
    ),
    mut stop: tokio::sync::oneshot::Receiver<()>,
    wake: Option<OwnedFd>,
) -> serde_json::Value {
    let listener = match ward_sandbox::notify::recv_fd(&sock) {
        Ok(Some(fd)) => fd,
        Ok(None) => return json!({"error": "the sandbox sent no proxy socket"}),
        Err(e) => {
            crate::run::end_session(&format!("cannot receive the proxy's socket: {e}"));
            return json!({"error": e.to_string()});
        }
    };
    // SAFETY: a listening TCP socket we now own alone.
    let std_listener = unsafe {
        std::net::TcpListener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(listener))
    };
    // Then the resolver's socket and the listeners of the loopback services and of the names
    // the resolver gives addresses, until the launcher closes its end; each known by its
    // type and address.
    let mut forwards: Vec<(std::net::TcpListener, ward_net::Forward)> = Vec::new();
    let mut dns: Option<std::net::UdpSocket> = None;
    while let Ok(Some(fd)) = ward_sandbox::notify::recv_fd(&sock) {
        if socket_type(&fd) == Some(libc::SOCK_DGRAM) {
            dns = Some(std::net::UdpSocket::from(fd));
            continue;
        }
        let l = std::net::TcpListener::from(fd);
        let Ok(at) = l.local_addr() else {
            continue;
        };
        let to = |host, port, scheme: &str, via| ward_net::Forward {
            scheme: scheme.to_string(),
            to: ward_net::canon::Authority { host, port },
            via,
        };
        if let Some(svc) = services.iter().find(|s| s.listen == at) {
            let host = match &svc.host {
                ward_core::dest::HostPattern::Name(n) => ward_net::canon::Host::Name(n.clone()),
                _ => ward_net::canon::Host::Ip(at.ip()),
            };
            forwards.push((l, to(host, at.port(), &svc.scheme, "loopback")));
        } else if let Some(n) = names.iter().find(|n| n.at == at) {
            let host = ward_net::canon::Host::Name(n.name.clone());
            forwards.push((l, to(host, at.port(), &n.scheme, "name")));
        }
    }
    // Nothing is started (runtime, resolver, terminal) until the agent first connects: most
    // sessions' start-up should not pay for a network they may never use.
    {
        use std::os::fd::AsRawFd;
        let mut fds = vec![libc::pollfd {
            fd: std_listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let first_service = fds.len() + usize::from(wake.is_some());
        if let Some(w) = &wake {
            fds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for fd in forwards
            .iter()
            .map(|(l, _)| l.as_raw_fd())
            .chain(dns.as_ref().map(|d| d.as_raw_fd()))
        {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        loop {
            // Without the wake pipe, look at the stop channel every 100 ms instead.
            let wait = if wake.is_some() { -1 } else { 100 };
            // SAFETY: a valid array of pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if r == 0
                && !matches!(
                    stop.try_recv(),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                )
            {
                return json!({"admitted": 0, "refused": 0, "used": false});
            }
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if r < 0 || (wake.is_some() && fds.get(1).is_some_and(|f| f.revents != 0)) {
                return json!({"admitted": 0, "refused": 0, "used": false});
            }
            if fds[0].revents != 0 || fds[first_service..].iter().any(|f| f.revents != 0) {
                break;
            }
        }
    }
    for l in std::iter::once(&std_listener).chain(forwards.iter().map(|(l, _)| l)) {
        if let Err(e) = l.set_nonblocking(true) {
            crate::run::end_session(&format!("cannot use the proxy's socket: {e}"));
            return json!({"error": e.to_string()});
        }
    }
    if let Some(d) = &dns {
        if let Err(e) = d.set_nonblocking(true) {
            crate::run::end_session(&format!("cannot use the resolver's socket: {e}"));
            return json!({"error": e.to_string()});
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ward-proxy")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::run::end_session(&format!("cannot start the proxy: {e}"));
            return json!({"error": e.to_string()});
        }
    };
    let mut cfg = ward_net::Config::new(manifest, broker.log().clone());
    cfg.broker = Some(broker);
    cfg.intercept = intercept;
    cfg.credentials = credentials;
    let stats = rt.block_on(async move {
        let proxy = match ward_net::Proxy::new(cfg) {
            Ok(p) => p,
            Err(e) => {
                crate::run::end_session(&format!("cannot start the proxy: {e}"));
                return json!({"error": e.to_string()});
            }
        };
        let l = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                crate::run::end_session(&format!("cannot use the proxy's socket: {e}"));
                return json!({"error": e.to_string()});
            }
        };
        let mut serving = Vec::new();
        for (l, to) in forwards {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    let p = proxy.clone();
                    serving.push(tokio::spawn(async move { p.serve_forward(l, to).await }));
                }
                Err(e) => eprintln!("ward: a loopback service's socket is unusable: {e}"),
            }
        }
        if let Some(d) = dns.and_then(|d| tokio::net::UdpSocket::from_std(d).ok()) {
            let p = proxy.clone();
            let names = names.clone();
            serving.push(tokio::spawn(async move { p.serve_dns(d, names).await }));
        }
        let p = proxy.clone();
        tokio::select! {
            r = p.serve(l) => {
                if let Err(e) = r {
                    eprintln!("ward: the proxy stopped: {e}");
                }
            }
            _ = stop => {}
        }
        for t in &serving {
            t.abort();
        }
        // The agent is gone, so its ends of the connections are closed: give the tunnels and
        // requests still in flight a moment to see that and write their records.
        let settle = std::time::Instant::now();
        while proxy.active() > 0 && settle.elapsed() < std::time::Duration::from_secs(1) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        proxy.stats()
    });
    // Tunnels still open end with the session: their tasks are dropped (and with them their
    // hold on the audit log) here.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    stats
}
