use crate::manifest_cmd::LoadArgs;
use anyhow::{bail, Context};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use ward_audit::{AuditLog, Event, KeyStore, LogPaths, WriterOptions};
use ward_core::Manifest;

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward proxy -m ward.toml                      # 127.0.0.1:3128, the manifest's [network]
  HTTPS_PROXY=http://127.0.0.1:3128 HTTP_PROXY=http://127.0.0.1:3128 my-agent
  ward proxy -m ward.toml --listen 127.0.0.1:8888 --json

The same proxy `ward run` puts between a confined agent and the network, on its own: HTTP
proxy requests, CONNECT (TLS only; the ClientHello's server name must be the CONNECT host) and
SOCKS5 (socks5h://, TLS only) on one port. Each destination is decided on its name first (the
manifest's [network] allow/ask entries and its Rego policies; nothing is resolved for a refused
name), resolved once, and refused when it resolves to a loopback, private, link-local
(metadata), carrier-NAT or other non-public address the manifest does not name itself. Request
bodies are uploads: [limits] upload and policies bound to net.upload decide them. `ask`
destinations are asked about on this terminal, once per destination (no terminal: refused).
Every connection and request goes to the audit log (`ward audit tail`).
Without a sandbox, programs that ignore the proxy variables are not stopped: use `ward run`.")]
pub struct ProxyArgs {
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// Address to listen on (loopback only: anything else would make it an open proxy).
    #[arg(long, default_value = "127.0.0.1:3128", value_name = "ADDR")]
    listen: SocketAddr,
    /// Resolve names with these DNS servers (IP[:PORT], repeatable) instead of the system's.
    #[arg(long = "dns", value_name = "ADDR")]
    dns: Vec<String>,
    /// Print the listening address as one JSON line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(a: ProxyArgs) -> crate::Outcome {
    if !a.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {}: a proxy reachable from other machines would let them use \
             this manifest's destinations; listen on 127.0.0.1 or ::1",
            a.listen
        );
    }
    let opts = a.load.options();
    let m = match &a.manifest {
        Some(p) => Manifest::load(p, &opts)?,
        None if Path::new("ward.toml").exists() => Manifest::load(Path::new("ward.toml"), &opts)?,
        None => {
            eprintln!(
                "ward: warning: no manifest (-m, or ./ward.toml): every destination is refused"
            );
            Manifest::empty(&opts)?
        }
    };
    // Inspection needs the agent to trust the session's authority, which only `ward run`
    // arranges: a standalone proxy would break every client silently.
    if let Some(o) = &m.inspect {
        anyhow::bail!(
            "`[network] inspect` ({o}) works under `ward run`, which makes the sandbox trust \
             the session's own certificate authority; `ward proxy` does not inspect TLS: \
             remove it for this command"
        );
    }
    if let Some(r) = m.git_push.as_ref().and_then(|l| l.first()) {
        anyhow::bail!(
            "`git_push` ({}) is checked under `ward run`, which opens TLS to see pushes; \
             `ward proxy` cannot: remove it for this command",
            r.origin
        );
    }
    if let Some(c) = m.credentials.first() {
        anyhow::bail!(
            "credentials ({}) are put in under `ward run`, which opens TLS to their \
             destinations; `ward proxy` cannot: remove them for this command",
            c.origin
        );
    }
    if let Some(e) = m
        .network
        .iter()
        .find(|e| e.path.is_some() && e.dest.scheme == "https")
    {
        anyhow::bail!(
            "`{}` ({}) names paths of an https destination, decided request by request under \
             `ward run`, which opens TLS to it; `ward proxy` cannot: name the host alone for \
             this command",
            e.shown(),
            e.origin
        );
    }
    let dns = if a.dns.is_empty() {
        ward_net::Dns::System
    } else {
        ward_net::Dns::Servers(
            a.dns
                .iter()
                .map(|s| {
                    s.parse::<SocketAddr>()
                        .or_else(|_| {
                            s.parse::<std::net::IpAddr>()
                                .map(|ip| SocketAddr::new(ip, 53))
                        })
                        .with_context(|| format!("--dns {s}: expected IP or IP:PORT"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    };
    // A peer that resets a tunnel mid-splice must cost that tunnel, not the proxy (and its
    // log's final checkpoint).
    // SAFETY: setting a signal disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let paths = LogPaths::default_paths()?;
    let log = Arc::new(
        AuditLog::open(
            &paths.log,
            &KeyStore::new(&paths.keys),
            WriterOptions::default(),
        )
        .context("cannot open the audit log, and Ward does not proxy unrecorded")?,
    );
    let destinations: Vec<String> = m
        .network
        .iter()
        .map(|e| format!("{} {}", e.effect, e.dest))
        .collect();
    let unknown = m.unknown_network.0;
    let mut cfg = ward_net::Config::new(m, log.clone());
    cfg.dns = dns;
    cfg.consent = if crate::run_cmd::on_terminal() {
        ward_consent::Terminal::open()
            .ok()
            .map(|t| Box::new(t) as Box<dyn ward_consent::Consent + Send>)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the proxy's runtime")?;
    let r = rt.block_on(async {
        let l = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = l.local_addr()?;
        log.append(Event {
            detail: Some(serde_json::json!({
                "listen": addr.to_string(), "destinations": destinations, "unknown": unknown.as_str(),
            })),
            ..Event::new(ward_core::EventKind::ProxyStart)
        })
        .context("cannot record the proxy's start")?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"listen": addr.to_string(), "destinations": destinations, "unknown": unknown.as_str()})
            );
        } else {
            eprintln!(
                "ward: proxy on {addr} ({} destination(s), unknown: {unknown}); point agents at it with\n  \
                 HTTP_PROXY=http://{addr} HTTPS_PROXY=http://{addr}\nCtrl-C stops it.",
                destinations.len()
            );
        }
        let proxy = ward_net::Proxy::new(cfg)?;
        let p = proxy.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = p.serve(l) => r.context("the proxy stopped")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, anyhow::Error>(proxy.stats())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let stats = r?;
    let end = Event {
        detail: Some(stats),
        ..Event::new(ward_core::EventKind::ProxyStop)
    };
    match Arc::try_unwrap(log) {
        Ok(l) => l.close_with(end)?,
        Err(l) => l.append(end)?,
    }
    Ok(0)
}
