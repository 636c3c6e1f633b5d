//! Plain HTTP forwarding: every request decided (its line, headers and body counted as an
//! upload), hop-by-hop headers dropped, one kept-alive upstream per client connection.

use super::findings::{gather, Found, Prefixed, Scanning, SCAN_HOLD};
use super::*;
use crate::dlp;

impl Proxy {
    pub(super) async fn request(
        &self,
        req: Request<Incoming>,
        conn: Arc<ClientConn>,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        match self.forward(req, conn, "http", "http").await {
            Ok(r) => r,
            Err(r) => refusal_response(&r),
        }
    }

    /// A request with an absolute-form URI of `scheme`: a plain-HTTP proxy request (`http`,
    /// via `http`), or one inside an inspected tunnel (`https`, via `inspected`, its URI made
    /// from the tunnel's host): decide, forward to the vetted address, record.
    pub(super) async fn forward(
        &self,
        req: Request<Incoming>,
        conn: Arc<ClientConn>,
        scheme: &'static str,
        via: &'static str,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let started = Instant::now();
        let uri = req.uri().clone();
        let mut shown = uri.to_string();
        let scanning = self.scanning();
        // A URL that carries a secret is never written to a record as it is (refusals of
        // malformed requests below included).
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        if scanning && dlp::target_carries(target) {
            shown = format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or(scheme),
                uri.authority().map_or("", |a| a.as_str()),
                dlp::redact(target)
            );
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        match uri.scheme_str() {
            Some(s) if s == scheme => {}
            Some("https") => {
                return Err(self.bad_request(
                    via,
                    &shown,
                    "https:// URLs go through CONNECT (set HTTPS_PROXY), not as a proxy request",
                ))
            }
            Some(other) => {
                let why = format!("unsupported scheme `{other}`");
                return Err(self.bad_request(via, &shown, &why));
            }
            None => {
                return Err(self.bad_request(
                    via,
                    &shown,
                    "a proxy request needs an absolute URL (GET http://host/path); this is a \
                     proxy, not a web server",
                ))
            }
        }
        let raw = uri.authority().map(|a| a.as_str()).unwrap_or("");
        let auth = canon::authority(raw, Some(default_port))
            .map_err(|e| self.bad_request(via, &shown, &format!("bad host in the URL: {e}")))?;
        // The host as rules and records name it (formatted once per request).
        let dest = auth.host.as_match();
        // This request as an upload (what its refusals and its upload decision are recorded as).
        let upload = Action {
            dest: Some(dest.clone()),
            port: Some(auth.port),
            scheme: Some(scheme.into()),
            agent: self.inner.broker.agent().map(str::to_string),
            ..Action::new(ActionKind::NetUpload, shown.clone())
        };
        // The Host header must name what the URL names: a server behind the vetted address
        // may route on Host, so a different one would reach a host nobody decided on.
        for h in req.headers().get_all(HOST) {
            let same = h
                .to_str()
                .ok()
                .and_then(|s| canon::authority(s, Some(default_port)).ok())
                .is_some_and(|a| a == auth);
            if !same {
                let why = format!(
                    "the Host header `{}` does not name the URL's host {auth}",
                    String::from_utf8_lossy(h.as_bytes()).escape_default()
                );
                return Err(self.bad_request(via, &shown, &why));
            }
        }
        if req.headers().contains_key(hyper::header::UPGRADE) {
            return Err(self.bad_request(
                via,
                &shown,
                "protocol upgrades (WebSocket, h2c) through a proxy request are not supported; \
                 use wss:// (CONNECT)",
            ));
        }
        // Path rules: each request to a destination some entries name paths of is decided by
        // its path (before its body is read).
        if self.inner.has_paths && self.inner.manifest.has_paths_at(scheme, &dest, auth.port) {
            let a = Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some(scheme.into()),
                agent: self.inner.broker.agent().map(str::to_string),
                ..Action::new(ActionKind::NetConnect, format!("{scheme}://{auth}{target}"))
            };
            let d = self.policy(&a);
            let shown_a = Action {
                resource: shown.clone(),
                ..a.clone()
            };
            let outcome = match d.effect {
                Effect::Allow => None,
                Effect::Deny => Some(Outcome {
                    decision: d,
                    consent: None,
                    channel: None,
                }),
                Effect::Ask => {
                    let text = format!(
                        "The agent wants to send {} {} ({via}): {}",
                        req.method(),
                        ward_core::inert::Inert(&shown),
                        ward_core::inert::Inert(&d.reason)
                    );
                    let path = ward_core::plain_path(target).unwrap_or(target).to_string();
                    let o = self
                        .ask(d, format!("request {scheme}://{auth}{path}"), text, None)
                        .await;
                    (!o.allowed()).then_some(o)
                }
            };
            if let Some(o) = outcome {
                self.note(self.outcome_event(&shown_a, &o, json!({"via": via, "path": true})));
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    socks::REP_NOT_ALLOWED,
                    o.decision.by.clone(),
                    o.decision.reason,
                ));
            }
        }
        // Git-aware: a push over smart HTTP reaches only the repositories `git_push` names.
        if let (Some(repos), Some(repo)) = (
            self.inner.manifest.git_push.as_ref(),
            ward_core::git_push_repo(target),
        ) {
            let named = ward_core::plain_path(&repo).is_some_and(|r| {
                repos
                    .iter()
                    .any(|g| g.dest.matches(scheme, &dest, auth.port) && g.path.matches(r, false))
            });
            if !named {
                let why =
                    format!(
                    "git push to {scheme}://{auth}{} refused: [network] git_push allows pushes \
                     only to {}",
                    ward_core::inert::line(&repo),
                    if repos.is_empty() {
                        "no repository".to_string()
                    } else {
                        repos.iter().map(|r| r.shown()).collect::<Vec<_>>().join(", ")
                    }
                );
                let by = repos
                    .first()
                    .map_or(By::builtin("git_push"), |r| By::manifest(&r.origin));
                let d = Decision::new(Effect::Deny, by, why);
                self.note(self.event(&upload, &d, json!({"via": via, "git": "push"})));
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    socks::REP_NOT_ALLOWED,
                    d.by,
                    d.reason,
                ));
            }
        }
        // Judge the body as an upload before anything is sent.
        let (mut parts, mut body) = req.into_parts();
        let hint = body.size_hint();
        let declared = hint.exact();
        let has_body = declared.map_or(!body.is_end_stream(), |n| n > 0);
        let mut upload_size = None;
        // What actually went up (a streamed body is counted as it passes).
        let sent_up = Arc::new(AtomicU64::new(0));
        // A body read before anything is sent: to know its size (unknown length, and upload
        // rules to judge it by: whole, up to the cap), or to scan it (up to SCAN_HOLD; past
        // that the rest streams through the scan).
        let whole = self.inner.has_upload_rules && declared.is_none();
        let hold = if !has_body {
            None
        } else if whole {
            Some(self.inner.upload_cap as usize)
        } else if scanning {
            Some(SCAN_HOLD)
        } else {
            None
        };
        let mut held: Option<(Bytes, bool)> = None;
        if let Some(limit) = hold {
            let want = declared.map_or(limit, |n| n as usize).min(limit);
            let kib = (want / 1024 + 1).min(BUFFER_BUDGET_KIB) as u32;
            let Ok(_permit) = self.inner.buffering.clone().try_acquire_many_owned(kib) else {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    socks::REP_FAILURE,
                    By::builtin("busy"),
                    "too many uploads are being checked at once; retry",
                ));
            };
            let got = gather(&mut body, limit, Duration::from_secs(120)).await;
            let why = match got {
                Ok((_, false)) if whole => {
                    Some(format!("chunked upload larger than {limit} bytes"))
                }
                Ok(b) => {
                    held = Some(b);
                    None
                }
                Err(e) => Some(e),
            };
            if let Some(why) = why {
                let d = Decision::new(Effect::Deny, self.upload_by(), why.clone());
                self.note(self.event(&upload, &d, json!({"via": via})));
                return Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    socks::REP_NOT_ALLOWED,
                    d.by.clone(),
                    why,
                ));
            }
        }
        // What goes up: the held part (whole, or the first SCAN_HOLD bytes), then the rest
        // as it comes (wrapped in the scan below when there is one).
        let rest = match &held {
            Some((b, ended)) => {
                sent_up.store(b.len() as u64, Ordering::Relaxed);
                if *ended {
                    upload_size = Some(b.len() as u64);
                }
                (!*ended).then_some(body)
            }
            None if has_body => {
                upload_size = declared;
                Some(body)
            }
            None => None,
        };
        let rest = rest.map(|b| {
            Counting {
                inner: b,
                counter: sent_up.clone(),
            }
            .boxed()
        });
        // The destination, then (for a body) the upload.
        let key = auth.clone();
        let mut cached = lock(&conn.upstream).take();
        if cached.as_ref().is_some_and(|c| c.auth != key) {
            cached = None;
        }
        let reuse = cached.is_some();
        if reuse {
            // Already vetted and recorded when it was dialed; the name is decided again.
            let a = Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some(scheme.into()),
                ..Action::new(ActionKind::NetConnect, format!("{scheme}://{auth}"))
            };
            let d = self.policy(&a);
            if d.effect != Effect::Allow {
                // Asks were answered when the connection was made; anything else is a change.
                if d.effect == Effect::Deny {
                    self.note(self.event(&a, &d, json!({"via": via})));
                    return Err(Refusal::new(
                        StatusCode::FORBIDDEN,
                        socks::REP_NOT_ALLOWED,
                        d.by.clone(),
                        d.reason,
                    ));
                }
            }
        }
        let vetted = if reuse {
            None
        } else {
            Some(self.admit(via, scheme, &auth).await?)
        };
        // What the request carries (its target, headers and body: held, read whole and
        // decoded; streamed, as it passes), judged before anything is sent. Not toward a
        // service on this machine's loopback: nothing leaves.
        // (A kept-alive upstream may be dialled afresh below: its requests are always read.)
        let local = vetted
            .as_ref()
            .is_some_and(|v| v.addrs.iter().all(|a| a.ip().is_loopback()));
        let found = Arc::new(Found::default());
        let mut rest = rest;
        // (Toward loopback only credentials' placeholders are looked for.)
        if scanning && (!local || !self.inner.marks.is_empty()) {
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let marks = &self.inner.marks;
            let mut leaks = dlp::head(target, &parts.headers, &dest, marks);
            // Every coding listed, however many headers list them.
            let codings: Vec<&[u8]> = parts
                .headers
                .get_all(hyper::header::CONTENT_ENCODING)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let encoding = (!codings.is_empty()).then(|| codings.join(&b","[..]));
            let ended = matches!(held, Some((_, true)));
            let unread = if has_body && encoding.is_some() && !ended {
                Some(format!(
                    "a compressed upload larger than {} MiB cannot be inspected; send it \
                     uncompressed",
                    SCAN_HOLD >> 20
                ))
            } else if let Some((b, _)) = &held {
                // Off the proxy's threads: decoding and scanning megabytes takes milliseconds.
                let (b, enc, to) = (b.clone(), encoding.clone(), dest.clone());
                let marks = marks.clone();
                let scanned =
                    tokio::task::spawn_blocking(move || dlp::body(&b, enc.as_deref(), &to, &marks))
                        .await
                        .unwrap_or_else(|_| {
                            Err(ward_scan::decode::DecodeError::Corrupt(
                                "scan",
                                "the scan failed".into(),
                            ))
                        });
                match scanned {
                    Ok(scan) => {
                        leaks.extend(scan.leaks);
                        found.partly.store(scan.partly, Ordering::Relaxed);
                        None
                    }
                    Err(e) => Some(format!("{e}; an upload Ward cannot read does not leave")),
                }
            } else {
                None
            };
            if let Some(why) = unread {
                let d = Decision::new(Effect::Deny, By::builtin("findings"), why.clone());
                self.note(self.event(&upload, &d, json!({"via": via, "unread": true})));
                return Err(Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    socks::REP_NOT_ALLOWED,
                    d.by,
                    why,
                ));
            }
            if local {
                leaks.retain(|l| l.credential.is_some());
            }
            self.placed(&mut leaks, (scheme, &dest, auth.port), parts.uri.path());
            let kept = self.react(&upload, leaks, via).await?;
            *lock(&found.kept) = kept;
            rest = rest.map(|r| {
                let seen = held.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
                Scanning::new(
                    r,
                    &seen,
                    (
                        if local {
                            // Toward loopback: placeholders only.
                            let allow = (ward_core::Reaction::Allow, ward_core::Origin::Default);
                            ward_core::Findings {
                                high: allow.clone(),
                                medium: allow.clone(),
                                low: allow,
                            }
                        } else {
                            self.inner.manifest.findings.clone()
                        },
                        self.inner.marks.clone(),
                    ),
                    dest.clone(),
                    found.clone(),
                )
                .boxed()
            });
        }
        let body: ProxyBody = match (held.map(|h| h.0), rest) {
            (None, None) => empty(),
            (Some(first), None) => Full::new(first).map_err(|e| match e {}).boxed(),
            (None, Some(rest)) => rest,
            (Some(first), Some(rest)) => Prefixed {
                first: Some(first),
                rest,
            }
            .boxed(),
        };
        // The credentials bound for this request: their secrets in place of their
        // placeholders, after everything was decided and read (and never on a record).
        if !self.inner.credentials.is_empty() {
            let to = (scheme, dest.as_str(), auth.port);
            match crate::credentials::put_in(&self.inner.credentials, &mut parts, to) {
                Ok(names) => *lock(&found.put) = names,
                Err(why) => {
                    let d = Decision::new(Effect::Deny, By::builtin("credentials"), why);
                    self.note(self.event(&upload, &d, json!({"via": via})));
                    return Err(Refusal::new(
                        StatusCode::FORBIDDEN,
                        socks::REP_NOT_ALLOWED,
                        d.by,
                        d.reason,
                    ));
                }
            }
        }
        // Everything that leaves counts, per destination for the session: the request line and
        // headers (a query string or a header can carry data too) and the body. Past the free
        // allowance, or with a body, the upload policy and limit decide on the running total.
        let head = request_head_len(&parts);
        let sent_key = format!("{scheme}://{auth}");
        let mine = head + upload_size.unwrap_or(0);
        // Counted now, so that requests in parallel see each other; given back if refused (a
        // refused request sends nothing).
        let total = self.count_sent(&sent_key, mine);
        let over_limit = self
            .inner
            .manifest
            .limits
            .upload
            .as_ref()
            .is_some_and(|(l, _)| total > *l);
        if has_body || total > TUNNEL_FREE || over_limit {
            let a = Action {
                size: Some(total),
                ..upload.clone()
            };
            // Decided on the real target (the one recorded may have a secret withheld).
            let d = self.policy(&Action {
                resource: format!("{scheme}://{auth}{target}"),
                ..a.clone()
            });
            let ok = d.effect == Effect::Allow;
            if !ok {
                let status = if over_limit {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::FORBIDDEN
                };
                let d = if d.effect == Effect::Ask {
                    Decision::new(
                        Effect::Deny,
                        d.by,
                        format!("{} (uploads are not asked about yet)", d.reason),
                    )
                } else {
                    d
                };
                self.note(self.event(
                    &a,
                    &d,
                    json!({"via": via, "body": upload_size, "request_bytes": mine}),
                ));
                self.refund_sent(&sent_key, mine);
                return Err(Refusal::new(
                    status,
                    socks::REP_NOT_ALLOWED,
                    d.by.clone(),
                    d.reason,
                ));
            }
            self.note(self.event(
                &a,
                &d,
                json!({"via": via, "body": upload_size, "request_bytes": mine}),
            ));
        }
        let mut up = match cached {
            Some(c) => c,
            None => {
                let Some(v) = vetted else {
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_FAILURE,
                        By::builtin("proxy"),
                        "no admitted destination to dial",
                    ));
                };
                self.dial(&v, key.clone(), scheme).await.map_err(|e| {
                    self.refund_sent(&sent_key, mine);
                    self.unreachable(scheme, &auth, via, "dial", e)
                })?
            }
        };
        // Origin-form upstream, our own framing, the canonical Host.
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
            )
            .version(hyper::Version::HTTP_11)
            .body(body)
            .map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    socks::REP_FAILURE,
                    By::builtin("malformed"),
                    e.to_string(),
                )
            })?;
        *out.headers_mut() = parts.headers;
        strip_hop_by_hop(out.headers_mut());
        // Headers some servers and fronts route by instead of Host: the request goes to the
        // host decided on, and says nothing else.
        for h in ROUTING {
            out.headers_mut().remove(h);
        }
        let host = if auth.port == default_port {
            dest.clone()
        } else {
            auth.to_string()
        };
        out.headers_mut().insert(
            HOST,
            HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static("invalid")),
        );
        let meter = Arc::new(Meter {
            proxy: self.clone(),
            action: Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some(scheme.into()),
                agent: self.inner.broker.agent().map(str::to_string),
                ..Action::new(ActionKind::NetConnect, shown.clone())
            },
            method: parts.method.to_string(),
            via,
            addr: up.addr,
            up: sent_up,
            down: AtomicU64::new(0),
            status: AtomicU64::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
            started,
            count_after: (has_body && upload_size.is_none()).then(|| format!("{scheme}://{auth}")),
            found,
        });
        if up.send.ready().await.is_err() {
            // The kept-alive upstream went away between requests: dial afresh (vetted anew).
            let v = self.admit(via, scheme, &auth).await?;
            up = self.dial(&v, key.clone(), scheme).await.map_err(|e| {
                meter.failed.store(true, Ordering::Relaxed);
                self.refund_sent(&sent_key, mine);
                self.unreachable(scheme, &auth, via, "dial", e)
            })?;
        }
        let resp = up.send.send_request(out).await.map_err(|e| {
            meter.failed.store(true, Ordering::Relaxed);
            if let Some(leak) = lock(&meter.found.stopped).take() {
                let a = Action {
                    kind: ActionKind::NetUpload,
                    ..meter.action.clone()
                };
                return self.stopped(&a, &leak, via);
            }
            self.unreachable(
                scheme,
                &auth,
                via,
                "upstream",
                format!(
                    "the upstream failed ({} {}, {} bytes of body sent): {e}",
                    parts.method,
                    shown,
                    meter.up.load(Ordering::Relaxed)
                ),
            )
        })?;
        meter
            .status
            .store(resp.status().as_u16() as u64, Ordering::Relaxed);
        *lock(&conn.upstream) = Some(up);
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let put = lock(&meter.found.put).clone();
        if !put.is_empty() {
            crate::credentials::mask_response(&self.inner.credentials, &put, &mut parts.headers);
        }
        let counted = Counting {
            inner: body,
            counter: meter,
        };
        Ok(Response::from_parts(parts, counted.boxed()))
    }

    /// An allowed destination that could not be reached, or failed mid-request: recorded
    /// (a failure, not a refusal), and the client told why.
    fn unreachable(
        &self,
        scheme: &str,
        auth: &Authority,
        via: &str,
        what: &'static str,
        why: String,
    ) -> Refusal {
        let a = self.net_action(scheme, auth);
        let d = Decision::new(Effect::Allow, By::builtin(what), why.clone());
        self.note_failed(&a, &d, json!({"via": via, "failed": what, "error": why}));
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            socks::REP_FAILURE,
            By::builtin(what),
            why,
        )
    }

    // ----- SOCKS5 -----
}

/// An HTTP/1.1 client connection over `io`, its driver spawned.
async fn http1<IO>(io: IO) -> hyper::Result<hyper::client::conn::http1::SendRequest<ProxyBody>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(conn);
    Ok(send)
}

impl Proxy {
    /// A kept-alive HTTP/1.1 connection to the vetted address: plain for `http`, TLS for
    /// `https` (an inspected tunnel's), the server's certificate verified for `auth`'s host.
    pub(super) async fn dial(
        &self,
        v: &Vetted,
        auth: Authority,
        scheme: &str,
    ) -> Result<Upstream, String> {
        let mut last = String::from("no address");
        for a in &v.addrs {
            let s = match tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(a)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = format!("cannot connect to {a}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("cannot connect to {a}: timed out");
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
            let send = if scheme == "https" {
                let Some(i) = self.inner.intercept.as_ref() else {
                    return Err("no TLS client for inspected tunnels".into());
                };
                let name = match &auth.host {
                    Host::Name(n) => {
                        tokio_rustls::rustls::pki_types::ServerName::try_from(n.clone())
                            .map_err(|e| format!("{n}: {e}"))?
                    }
                    Host::Ip(ip) => {
                        tokio_rustls::rustls::pki_types::ServerName::IpAddress((*ip).into())
                    }
                };
                let tls = tokio::time::timeout(
                    Duration::from_secs(15),
                    tokio_rustls::TlsConnector::from(i.upstream.clone()).connect(name, s),
                )
                .await
                .map_err(|_| format!("TLS with {auth} at {a}: timed out"))?
                .map_err(|e| format!("TLS with {auth} at {a} failed: {e}"))?;
                http1(tls).await.map_err(|e| format!("{a}: {e}"))?
            } else {
                http1(s).await.map_err(|e| format!("{a}: {e}"))?
            };
            return Ok(Upstream {
                auth,
                addr: *a,
                send,
            });
        }
        Err(last)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(k) = &self.count_after {
            self.proxy.count_sent(k, self.up.load(Ordering::Relaxed));
        }
        // The upstream failed: that is on record already (`net.failed`). A request left with
        // no answer otherwise (the client gone meanwhile) is recorded with status 0.
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let d = Decision::new(Effect::Allow, By::session(), "request forwarded");
        let mut detail = json!({
            "via": self.via, "method": self.method, "addr": self.addr.to_string(),
            "status": self.status.load(Ordering::Relaxed),
            "up": self.up.load(Ordering::Relaxed), "down": self.down.load(Ordering::Relaxed),
            "ms": self.started.elapsed().as_secs_f64() * 1e3,
        });
        let kept = lock(&self.found.kept);
        if !kept.is_empty() {
            detail["findings"] = kept.iter().map(crate::dlp::Leak::json).collect();
        }
        if self.found.partly.load(Ordering::Relaxed) {
            detail["inspected"] = json!("partly");
        }
        let put = lock(&self.found.put);
        if !put.is_empty() {
            detail["credentials"] = json!(*put);
        }
        drop(put);
        drop(kept);
        let ev = Event {
            kind: ward_core::EventKind::NetRequest.as_str().into(),
            ..self.proxy.event(&self.action, &d, detail)
        };
        self.proxy.note(ev);
    }
}

impl Count for AtomicU64 {
    fn add(&self, n: u64) {
        self.fetch_add(n, Ordering::Relaxed);
    }
}

impl Count for Meter {
    fn add(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }
}

impl<C: Count> Body for Counting<C> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.counter.add(d.len() as u64);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The bytes of a request's line and headers as the client sent them (close enough: the
/// method, target, version and each `name: value\r\n`).
pub(super) fn request_head_len(p: &hyper::http::request::Parts) -> u64 {
    let line = p.method.as_str().len() + p.uri.to_string().len() + 12;
    let headers: usize = p
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers + 2) as u64
}

impl Gate<'_> {
    pub(super) fn add(&mut self, n: u64) -> bool {
        let total = self.proxy.count_sent(&self.key, n);
        self.total = total;
        if total < self.next && self.limit.is_none_or(|l| total <= l) {
            return true;
        }
        while self.next <= total {
            self.next = self.next.saturating_mul(2);
        }
        let a = Action {
            kind: ActionKind::NetUpload,
            size: Some(total),
            ..self.action.clone()
        };
        let d = self.proxy.policy(&a);
        if d.effect == Effect::Allow {
            return true;
        }
        self.refusal = Some(Decision::new(
            Effect::Deny,
            d.by,
            format!(
                "{} bytes sent to {} through tunnels this session: {} (the tunnel was closed)",
                total, self.key, d.reason
            ),
        ));
        false
    }
}

/// Request headers that name another host or path to route to (reverse proxies, CDNs and
/// frameworks honour them): never sent up.
const ROUTING: [HeaderName; 9] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-host-override"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("x-forwarded-prefix"),
];

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    use hyper::header;
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in listed {
            h.remove(n);
        }
    }
    // Names known in advance: no parsing per request.
    const HOP: [HeaderName; 9] = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    for n in &HOP {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}
