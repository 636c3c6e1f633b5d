//! The resolver: names resolved once per decision, with the system's configuration or the
//! servers given; this machine's own addresses; the descriptor limit raised for many tunnels.

use super::*;

impl Proxy {
    pub(super) async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let Some(r) = &self.inner.resolver else {
            return Err(format!(
                "cannot resolve {name}: no DNS configuration ({})",
                self.inner.resolver_error
            ));
        };
        let fqdn = format!("{name}.");
        match tokio::time::timeout(Duration::from_secs(10), r.lookup_ip(fqdn.as_str())).await {
            Err(_) => Err(format!("resolving {name} timed out")),
            Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
            Ok(Ok(l)) => {
                let v: Vec<IpAddr> = l.iter().map(canon::unwrap_mapped).collect();
                if v.is_empty() {
                    Err(format!("{name} has no addresses"))
                } else {
                    Ok(v)
                }
            }
        }
    }

    // ----- HTTP -----
}

pub(super) fn build_resolver(dns: &Dns) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::config::{
        ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut b = match dns {
        Dns::System => {
            hickory_resolver::TokioResolver::builder_tokio().map_err(|e| e.to_string())?
        }
        Dns::Servers(list) => {
            let servers = list
                .iter()
                .map(|sa| {
                    let mut u = ConnectionConfig::udp();
                    u.port = sa.port();
                    let mut t = ConnectionConfig::tcp();
                    t.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![u, t])
                })
                .collect();
            let mut b = hickory_resolver::TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
    };
    let o = b.options_mut();
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.timeout = Duration::from_secs(5);
    o.attempts = 2;
    o.ndots = 0;
    b.build().map_err(|e| e.to_string())
}

/// This machine's own addresses: the proxy dials from the host's network, where a name that
/// resolves to one of them reaches services listening on all interfaces.
pub(super) fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifa) != 0 {
            return out;
        }
        let mut p = ifa;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match (*a).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifa);
    }
    out
}

/// A tunnel holds six descriptors (two sockets, two pipes): take the soft limit up to the
/// hard one, so the usual 1,024 does not cap a proxy at ~160 tunnels. (In `ward run` the agent
/// is forked before the proxy starts and keeps its own limits.)
pub(super) fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get and set this process's own limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
