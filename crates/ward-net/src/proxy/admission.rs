//! Admission: decide on a destination (through the broker), resolve it once, vet every
//! address, record the outcome durably before anything is dialled; and what each
//! destination has been sent this session.

use super::*;

impl Proxy {
    /// The action of reaching `auth` over `scheme` (what is decided and recorded).
    pub(super) fn net_action(&self, scheme: &str, auth: &Authority) -> Action {
        Action {
            dest: Some(auth.host.as_match()),
            port: Some(auth.port),
            scheme: Some(scheme.to_string()),
            agent: self.inner.broker.agent().map(str::to_string),
            ..Action::new(ActionKind::NetConnect, format!("{scheme}://{auth}"))
        }
    }

    /// Decide on reaching `auth` over `scheme`, resolve it once, vet every address, and record
    /// the outcome. Allowed destinations are recorded durably before this returns.
    pub(super) async fn admit(
        &self,
        via: &str,
        scheme: &str,
        auth: &Authority,
    ) -> Result<Vetted, Refusal> {
        let started = Instant::now();
        let target = format!("{scheme}://{auth}");
        let action = self.net_action(scheme, auth);
        let d = self.policy(&action);
        let outcome = if d.effect == Effect::Ask {
            let text = format!(
                "The agent wants to connect to {} ({via}): {}",
                ward_core::inert::Inert(&target),
                ward_core::inert::Inert(&d.reason)
            );
            self.ask(d, target.clone(), text, Some(auth.host.as_match()))
                .await
        } else {
            Outcome {
                decision: d,
                consent: None,
                channel: None,
            }
        };
        // What asking came to stays on every record of this connection below.
        let with = |d: Decision| Outcome {
            decision: d,
            ..outcome.clone()
        };
        let d = outcome.decision.clone();
        if d.effect != Effect::Allow {
            self.note(self.outcome_event(&action, &outcome, json!({"via": via})));
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                socks::REP_NOT_ALLOWED,
                d.by.clone(),
                d.reason,
            ));
        }
        // A name that carries data (DNS exfiltration) is judged before it is looked up,
        // unless the manifest names that very host.
        let mut host_leaks = Vec::new();
        if let Host::Name(n) = &auth.host {
            let named = self
                .inner
                .manifest
                .network
                .iter()
                .any(|e| matches!(&e.dest.host, HostPattern::Name(x) if x == n));
            if self.scanning() && !named {
                if let Some(leak) = crate::dlp::host(n) {
                    // On record by the masked name only.
                    let a = Action {
                        kind: ActionKind::NetUpload,
                        resource: format!("{scheme}://{}:{}", leak.excerpt, auth.port),
                        dest: Some(leak.excerpt.clone()),
                        ..action.clone()
                    };
                    host_leaks = self.react(&a, vec![leak], via).await?;
                }
            }
        }
        // `localhost` is this machine's loopback (RFC 6761), never a DNS question; it is
        // reached only where the manifest names `localhost` itself, at this scheme and port.
        let localhost = matches!(&auth.host, Host::Name(n) if n == "localhost")
            && self.localhost_named(scheme, auth.port);
        let answers: Vec<IpAddr> = match &auth.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(n) if n == "localhost" => {
                vec![
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ]
            }
            Host::Name(n) => match self.resolve(n).await {
                Ok(a) => a,
                Err(why) => {
                    // Allowed, but not reachable: a failure, not a refusal (the decision on
                    // record is the one that allowed it).
                    let mut ev = self.outcome_event(
                        &action,
                        &outcome,
                        json!({"via": via, "failed": "dns", "error": why}),
                    );
                    ev.kind = ward_core::EventKind::NetFailed.as_str().into();
                    self.note(ev);
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_HOST_UNREACHABLE,
                        By::builtin("dns"),
                        why,
                    ));
                }
            },
        };
        let own = lock(&self.inner.own).clone();
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for ip in &answers {
            let sa = SocketAddr::new(*ip, auth.port);
            if own
                .iter()
                .any(|o| *o == sa || (o.port() == sa.port() && o.ip().is_unspecified()))
            {
                refused.push(format!("{ip} (the proxy itself)"));
            } else if let Some(class) = classify::non_public(*ip) {
                if self.named(scheme, *ip, auth.port) || (localhost && ip.is_loopback()) {
                    ok.push(sa);
                } else {
                    refused.push(format!("{ip} ({class})"));
                }
            } else if self.inner.local.contains(ip)
                && !self.named(scheme, *ip, auth.port)
                && !(localhost && ip.is_loopback())
            {
                refused.push(format!("{ip} (this machine)"));
            } else {
                ok.push(sa);
            }
        }
        let mut detail = json!({
            "via": via,
            "addresses": answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "refused": refused,
            "ms": started.elapsed().as_secs_f64() * 1e3,
        });
        if !host_leaks.is_empty() {
            detail["findings"] = host_leaks.iter().map(crate::dlp::Leak::json).collect();
        }
        if ok.is_empty() {
            let why = format!(
                "{} resolves only to addresses the manifest does not name: {}; name the address itself (e.g. {scheme}://{}:{}) to allow it",
                auth.host,
                refused.join(", "),
                answers.first().map(|a| Host::Ip(*a).as_match()).unwrap_or_default(),
                auth.port
            );
            let d2 = Decision::new(Effect::Deny, By::builtin("ssrf"), why.clone());
            self.note(self.outcome_event(&action, &with(d2), detail));
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                socks::REP_NOT_ALLOWED,
                By::builtin("ssrf"),
                why,
            ));
        }
        let ev = self.outcome_event(&action, &outcome, detail);
        let broker = self.inner.broker.clone();
        let durable = tokio::task::spawn_blocking(move || broker.record(ev)).await;
        match durable {
            Ok(Ok(())) => {
                self.inner.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Vetted { addrs: ok })
            }
            Ok(Err(e)) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                socks::REP_FAILURE,
                By::builtin("audit"),
                format!("the audit log could not record this connection, so it is refused: {e}"),
            )),
            Err(_) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                socks::REP_FAILURE,
                By::builtin("audit"),
                "the audit log could not record this connection",
            )),
        }
    }

    /// Does the manifest name this address itself (an IP destination), so that reaching it is
    /// the person's explicit choice even though it is not public?
    pub(super) fn named(&self, scheme: &str, ip: IpAddr, port: u16) -> bool {
        let hit = self.inner.manifest.network.iter().any(|e| {
            e.effect == Effect::Allow
                && e.dest.scheme == scheme
                && e.dest.port == port
                && match (&e.dest.host, ip) {
                    (HostPattern::V4(a), IpAddr::V4(b)) => *a == b,
                    (HostPattern::V6(a), IpAddr::V6(b)) => *a == b,
                    _ => false,
                }
        });
        if !hit {
            return false;
        }
        // And the whole decision point (managed ceilings included) agrees.
        let a = Action {
            dest: Some(Host::Ip(ip).as_match()),
            port: Some(port),
            scheme: Some(scheme.into()),
            ..Action::new(
                ActionKind::NetConnect,
                format!("{scheme}://{}", Host::Ip(ip)),
            )
        };
        self.policy(&a).effect == Effect::Allow
    }

    /// Does an `allow` entry of the manifest name `localhost` itself at this scheme and port?
    fn localhost_named(&self, scheme: &str, port: u16) -> bool {
        self.inner.manifest.network.iter().any(|e| {
            e.effect == Effect::Allow
                && e.dest.scheme == scheme
                && e.dest.port == port
                && e.dest.host == HostPattern::Name("localhost".into())
        })
    }

    /// Take back `n` bytes counted for a request that was refused.
    pub(super) fn refund_sent(&self, key: &str, n: u64) {
        if let Some(t) = lock(&self.inner.tunnel_sent).get_mut(key) {
            *t = t.saturating_sub(n);
        }
    }

    /// Add `n` bytes to what the session has sent to `key`; the new total.
    pub(super) fn count_sent(&self, key: &str, n: u64) -> u64 {
        let mut m = lock(&self.inner.tunnel_sent);
        let t = m.entry(key.to_string()).or_insert(0);
        *t = t.saturating_add(n);
        *t
    }

    pub(super) fn upload_by(&self) -> By {
        self.inner
            .manifest
            .limits
            .upload
            .as_ref()
            .map_or_else(|| By::builtin("upload"), |(_, o)| By::manifest(o))
    }
}
