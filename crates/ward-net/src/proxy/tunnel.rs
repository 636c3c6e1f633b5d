//! CONNECT tunnels (HTTP and raw): the ClientHello's server name must be the decided host
//! (or, in a tunnel for a `ws://` WebSocket, one checked upgrade request: [`crate::ws`]);
//! then bytes both ways, counted as uploads, with an idle limit; or, when the proxy inspects
//! TLS, the requests inside, each decided like a plain one ([`Proxy::inspect`]).

use super::*;

impl Proxy {
    pub(super) async fn connect(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let raw = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let auth = match canon::authority(&raw, None) {
            Ok(a) => a,
            Err(e) => {
                let r = self.bad_request("connect", &raw, &format!("bad CONNECT target: {e}"));
                return refusal_response(&r);
            }
        };
        let scheme = self.tunnel_scheme(&auth);
        let vetted = match self.admit("connect", scheme, &auth).await {
            Ok(v) => v,
            Err(r) => return refusal_response(&r),
        };
        let p = self.clone();
        tokio::spawn(async move {
            if let Ok(up) = hyper::upgrade::on(req).await {
                p.carry(
                    TokioIo::new(up),
                    scheme,
                    auth,
                    vetted,
                    "connect",
                    Vec::new(),
                )
                .await
            }
        });
        Response::new(empty())
    }

    /// A connection whose first request is CONNECT (what clients do): read its head here, so
    /// that the tunnel keeps the plain socket and can move bytes with `splice` (no copies
    /// through the proxy). The same decisions as [`Proxy::connect`].
    pub(super) async fn raw_connect(&self, mut s: TcpStream) {
        let mut buf = Vec::with_capacity(1024);
        let Ok(end) = read_head(&mut s, &mut buf).await else {
            let r = self.bad_request(
                "connect",
                "CONNECT",
                "incomplete or oversized CONNECT request",
            );
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        };
        let early = buf[end..].to_vec();
        let Ok(head) = std::str::from_utf8(&buf[..end]) else {
            let r = self.bad_request("connect", "CONNECT", "the CONNECT request is not text");
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        };
        let line = head.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (m, target, version) = (parts.next(), parts.next(), parts.next());
        if m != Some("CONNECT")
            || !matches!(version, Some("HTTP/1.1") | Some("HTTP/1.0"))
            || parts.next().is_some()
            || head.contains("\r\n ")
            || head.contains("\r\n\t")
            || head[..end.saturating_sub(4)]
                .split("\r\n")
                .any(|l| l.contains('\n'))
        {
            let r = self.bad_request("connect", line, "malformed CONNECT request");
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        }
        let raw = target.unwrap_or("");
        let auth = match canon::authority(raw, None) {
            Ok(a) => a,
            Err(e) => {
                let r = self.bad_request("connect", raw, &format!("bad CONNECT target: {e}"));
                let _ = s.write_all(&refusal_bytes(&r)).await;
                return;
            }
        };
        let scheme = self.tunnel_scheme(&auth);
        match self.admit("connect", scheme, &auth).await {
            Ok(v) => {
                if s.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    self.carry(s, scheme, auth, v, "connect", early).await;
                }
            }
            Err(r) => {
                let _ = s.write_all(&refusal_bytes(&r)).await;
            }
        }
    }

    /// What a CONNECT tunnel to `auth` carries: TLS (`https`), unless the manifest allows the
    /// destination over plain `http` and not `https`: then it is a `ws://` WebSocket, which
    /// clients tunnel through CONNECT too, and the tunnel passes one checked upgrade request
    /// before the frames ([`crate::ws`]).
    fn tunnel_scheme(&self, auth: &Authority) -> &'static str {
        let effect = |scheme: &str| self.policy(&self.net_action(scheme, auth)).effect;
        if effect("https") == Effect::Deny && effect("http") != Effect::Deny {
            "http"
        } else {
            "https"
        }
    }

    /// A connection accepted at a loopback service's address inside the sandbox: decided,
    /// recorded and carried like a tunnel to it; refused, it is closed (the client sees the
    /// connection reset, and the record says why).
    pub(super) async fn loopback(&self, s: TcpStream, to: &Forward) {
        if let Ok(v) = self.admit(to.via, &to.scheme, &to.to).await {
            let scheme = to.scheme.clone();
            self.carry(s, &scheme, to.to.clone(), v, to.via, vec![])
                .await;
        }
    }

    /// The body of a CONNECT or SOCKS tunnel to `auth` over `scheme`, dialled at the vetted
    /// address, bytes passed both ways, what went through recorded: for `https`, only TLS whose
    /// ClientHello names the name decided on (opened and served request by request when the
    /// proxy inspects TLS); otherwise (a loopback service, `ssh`) the bytes as they come.
    pub(super) async fn carry<S>(
        &self,
        mut client: S,
        scheme: &str,
        auth: Authority,
        vetted: Vetted,
        via: &str,
        early: Vec<u8>,
    ) where
        S: Relay,
    {
        let started = Instant::now();
        let target = format!("{scheme}://{auth}");
        let action = self.net_action(scheme, &auth);
        let mut buf = early;
        let tls = scheme == "https";
        // A `ws://` tunnel: the client's one request, read and checked before anything is
        // dialled (see `crate::ws`).
        let ws = scheme == "http" && via == "connect";
        let mut head = 0;
        if ws {
            let got = match read_head(&mut client, &mut buf).await {
                Ok(_) => crate::ws::check_request(&buf, &auth),
                Err(e) => Err(e.why("the upgrade request", "the client")),
            };
            match got {
                Ok(n) => head = n,
                Err(why) => {
                    let d = Decision::new(Effect::Deny, By::builtin("websocket"), why);
                    self.note(self.event(&action, &d, json!({"via": via, "stage": "websocket"})));
                    let r = Refusal::new(
                        StatusCode::FORBIDDEN,
                        socks::REP_NOT_ALLOWED,
                        d.by,
                        d.reason,
                    );
                    let _ = client.write_all(&refusal_bytes(&r)).await;
                    return;
                }
            }
        }
        let hello = tokio::time::timeout(Duration::from_secs(30), async {
            if !tls {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            loop {
                if buf.len() >= tls::need(&buf) || buf.first().is_some_and(|b| *b != 0x16) {
                    match tls::parse(&buf) {
                        Ok(Some(h)) => return Ok(Some(h)),
                        Ok(None) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if buf.len() > tls::MAX_HELLO + 1024 {
                    return Err("ClientHello too large".into());
                }
                let n = client.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the client closed before its TLS ClientHello".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| Err("no TLS ClientHello within 30 s".into()));
        let refuse = |why: String| Decision::new(Effect::Deny, By::builtin("sni"), why);
        let checked = match hello {
            Err(e) => Err(refuse(format!(
                "tunnels carry TLS only ({e}); send plain HTTP as a proxy request (HTTP_PROXY)"
            ))),
            Ok(None) => Ok(()),
            Ok(Some(h)) if h.esni => Err(refuse(
                "the ClientHello hides its server name (encrypted_server_name)".into(),
            )),
            Ok(Some(h)) => match (&auth.host, h.sni.as_deref()) {
                (Host::Name(n), Some(s))
                    if s.strip_suffix('.').unwrap_or(s).eq_ignore_ascii_case(n) =>
                {
                    Ok(())
                }
                (Host::Name(n), Some(s)) => Err(refuse(format!(
                    "TLS server name `{}` is not the CONNECT host {n} (domain fronting)",
                    s.escape_default()
                ))),
                (Host::Name(n), None) => Err(refuse(format!(
                    "the ClientHello names no server (SNI), so {n} cannot be checked"
                ))),
                (Host::Ip(_), None) => Ok(()),
                (Host::Ip(ip), Some(s)) => Err(refuse(format!(
                    "TLS server name `{}` sent to the address {ip}",
                    s.escape_default()
                ))),
            },
        };
        if let Err(d) = checked {
            self.note(self.event(&action, &d, json!({"via": via, "stage": "tls"})));
            return;
        }
        let inspects = self
            .inner
            .intercept
            .as_ref()
            .is_some_and(|i| i.inspects(&auth.host.as_match(), auth.port));
        // A destination with path rules is reached only with its requests in view.
        // (Whatever the tunnel's scheme: a loopback service or a `ws://` tunnel carries raw
        // bytes whose paths nobody decides.)
        let host = auth.host.as_match();
        let pathy = self.inner.has_paths
            && ["https", "http"]
                .iter()
                .any(|s| self.inner.manifest.has_paths_at(s, &host, auth.port));
        if pathy && !(tls && inspects) {
            let why = format!(
                "{auth} has path rules: its requests are decided one by one, which needs them \
                 in view (TLS opened: ward run opens it; `ward proxy`, raw tunnels and \
                 loopback services cannot show them)"
            );
            let d = Decision::new(Effect::Deny, By::builtin("paths"), why);
            self.note(self.event(&action, &d, json!({"via": via})));
            return;
        }
        if tls && inspects {
            return self.inspect(client, buf, auth, vetted, via, &action).await;
        }
        let mut upstream = None;
        let mut last_err = String::new();
        for a in &vetted.addrs {
            match tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(a)).await {
                Ok(Ok(s)) => {
                    upstream = Some((s, *a));
                    break;
                }
                Ok(Err(e)) => last_err = format!("{a}: {e}"),
                Err(_) => last_err = format!("{a}: timed out"),
            }
        }
        let Some((mut up, addr)) = upstream else {
            let d = Decision::new(
                Effect::Allow,
                By::builtin("dial"),
                format!("dial failed: {last_err}"),
            );
            // Allowed, but nobody answered there.
            self.note_failed(
                &action,
                &d,
                json!({"via": via, "failed": "dial", "error": last_err}),
            );
            return;
        };
        let _ = up.set_nodelay(true);
        // The upgrade goes up alone; what the client sent after it waits for the switch.
        let mut switched = 0;
        if ws {
            match switch(&mut up, &buf[..head]).await {
                Ok(resp) => {
                    if client.write_all(&resp).await.is_err() {
                        return;
                    }
                    switched = resp.len() as u64;
                    buf.drain(..head);
                }
                Err(why) => {
                    let d = Decision::new(Effect::Allow, By::builtin("websocket"), why.clone());
                    self.note_failed(
                        &action,
                        &d,
                        json!({"via": via, "failed": "websocket", "error": why}),
                    );
                    let r = Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_FAILURE,
                        By::builtin("websocket"),
                        why,
                    );
                    let _ = client.write_all(&refusal_bytes(&r)).await;
                    return;
                }
            }
        }
        let limit = self.inner.manifest.limits.upload.as_ref().map(|(v, _)| *v);
        let mut gate = Gate {
            proxy: self,
            key: target,
            action: action.clone(),
            next: TUNNEL_FREE,
            limit,
            refusal: None,
            total: 0,
        };
        let already = (head + buf.len()) as u64;
        let res = if gate.add(already) {
            async {
                up.write_all(&buf)
                    .await
                    .map_err(|e| PipeError::Io(0, 0, e))?;
                match client.tcp() {
                    Some(c) => splice_pipe(c, &up, already, |n| gate.add(n)).await,
                    None => pipe(&mut client, &mut up, already, |n| gate.add(n)).await,
                }
            }
            .await
        } else {
            Err(PipeError::Limit(0, 0))
        };
        let res = res.map(|(s, r)| (s, r + switched));
        let (sent, received, end) = match res {
            Ok((s, r)) => (s, r, "closed".to_string()),
            Err(PipeError::Io(s, r, e)) => (s, r, format!("error: {e}")),
            Err(PipeError::Limit(s, r)) => (s, r, "upload limit".to_string()),
        };
        let mut detail = json!({
            "via": via, "addr": addr.to_string(), "up": sent, "down": received,
            "ms": started.elapsed().as_secs_f64() * 1e3, "end": end,
        });
        if ws {
            detail["websocket"] = json!(true);
        }
        if end == "upload limit" {
            let d = gate
                .refusal
                .take()
                .unwrap_or_else(|| Decision::new(Effect::Deny, self.upload_by(), "upload refused"));
            let a = Action {
                kind: ActionKind::NetUpload,
                size: Some(gate.total),
                ..action.clone()
            };
            self.note(self.event(&a, &d, detail));
        } else {
            let d = Decision::new(Effect::Allow, By::session(), "tunnel ended");
            self.note(Event {
                kind: ward_core::EventKind::NetClose.as_str().into(),
                ..self.event(&action, &d, detail)
            });
        }
    }
}

/// Send the checked upgrade `head` to the server and read its answer: the response head
/// (with any frames that came with it) when it switched protocols (101), why not otherwise.
async fn switch(up: &mut TcpStream, head: &[u8]) -> Result<Vec<u8>, String> {
    up.write_all(head).await.map_err(|e| e.to_string())?;
    let mut resp = Vec::with_capacity(1024);
    read_head(up, &mut resp)
        .await
        .map_err(|e| e.why("the answer to the WebSocket upgrade", "the server"))?;
    match crate::ws::response_status(&resp)? {
        (101, _) => Ok(resp),
        (status, _) => Err(format!(
            "the server answered the WebSocket upgrade with {status}, not 101 Switching \
             Protocols"
        )),
    }
}

/// Ends with an error once `last` (seconds since `started` of the last byte either way) is
/// [`TUNNEL_IDLE`] old.
pub(super) async fn idle_watchdog(started: Instant, last: &AtomicU64) -> std::io::Result<()> {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if started.elapsed().as_secs() - last.load(Ordering::Relaxed) >= TUNNEL_IDLE.as_secs() {
            return Err(std::io::Error::other("idle"));
        }
    }
}

/// Copy both ways until both sides are done. `gate` sees every chunk going up before it is
/// passed on, and stops the copy by returning `false`.
pub(super) async fn pipe<A, B>(
    a: &mut A,
    b: &mut B,
    already_up: u64,
    mut gate: impl FnMut(u64) -> bool,
) -> Result<(u64, u64), PipeError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let up = AtomicU64::new(already_up);
    let down = AtomicU64::new(0);
    let over = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(started.elapsed().as_secs(), Ordering::Relaxed);
    let watchdog = idle_watchdog(started, &last);
    let upward = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = ar.read(&mut buf).await?;
            if n == 0 {
                let _ = bw.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            touch();
            if !gate(n as u64) {
                over.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("upload refused"));
            }
            up.fetch_add(n as u64, Ordering::Relaxed);
            bw.write_all(&buf[..n]).await?;
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = br.read(&mut buf).await?;
            if n == 0 {
                let _ = aw.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            touch();
            down.fetch_add(n as u64, Ordering::Relaxed);
            aw.write_all(&buf[..n]).await?;
        }
    };
    let both = async { tokio::try_join!(upward, downward) };
    let r = tokio::select! {
        r = both => r.map(|_| ()),
        r = watchdog => r,
    };
    let (u, d) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    match r {
        Ok(_) => Ok((u, d)),
        Err(_) if over.load(Ordering::Relaxed) => Err(PipeError::Limit(u, d)),
        Err(e) => Err(PipeError::Io(u, d, e)),
    }
}

impl Relay for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Relay for TokioIo<hyper::upgrade::Upgraded> {}

/// Why an HTTP head (a request's or a response's) could not be read.
enum Unread {
    TooLarge,
    Closed,
    Slow,
    Io(std::io::Error),
}

impl Unread {
    /// Say so, naming the head (`what`) and the peer that was to send it (`who`).
    fn why(&self, what: &str, who: &str) -> String {
        match self {
            Unread::TooLarge => format!("{what} is larger than {} KiB", crate::ws::MAX_HEAD / 1024),
            Unread::Closed => format!("{who} closed before sending {what}"),
            Unread::Slow => format!("{what} did not arrive within 30 s"),
            Unread::Io(e) => format!("{what} could not be read: {e}"),
        }
    }
}

/// Read from `s` into `buf` (which may already hold the start) until a head ends (its blank
/// line), within 30 s and [`crate::ws::MAX_HEAD`]; where it ends. What follows it stays in
/// `buf`.
async fn read_head<R: AsyncRead + Unpin>(s: &mut R, buf: &mut Vec<u8>) -> Result<usize, Unread> {
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(end) = crate::ws::head_end(buf) {
                return Ok(end);
            }
            if buf.len() > crate::ws::MAX_HEAD {
                return Err(Unread::TooLarge);
            }
            match s.read(&mut chunk).await {
                Ok(0) => return Err(Unread::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Unread::Io(e)),
            }
        }
    })
    .await
    .unwrap_or(Err(Unread::Slow))
}

/// A stream whose first bytes were already read (a ClientHello looked at): they are read
/// again first.
struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Proxy {
    /// An inspected tunnel to `auth` (its ClientHello, in `hello`, already checked to name
    /// it): TLS ends here with a certificate from the session's authority, the real server is
    /// reached over TLS verified against the system's roots, and every request inside is one
    /// more request, decided, counted and recorded like a plain one ([`Proxy::forward`]), its
    /// Host the tunnel's host.
    async fn inspect<S: Relay>(
        &self,
        client: S,
        hello: Vec<u8>,
        auth: Authority,
        vetted: Vetted,
        via: &str,
        action: &Action,
    ) {
        let Some(i) = self.inner.intercept.clone() else {
            return;
        };
        let failed = |what: &str, why: String| {
            let d = Decision::new(Effect::Allow, By::builtin("inspect"), why.clone());
            self.note_failed(
                action,
                &d,
                json!({"via": via, "failed": what, "error": why}),
            );
        };
        let cfg = match i.authority.server_config(&auth.host.as_match()) {
            Ok(c) => c,
            Err(e) => return failed("certificate", e.to_string()),
        };
        let accepted = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_rustls::TlsAcceptor::from(cfg).accept(Prefixed {
                head: hello,
                at: 0,
                inner: client,
            }),
        )
        .await;
        let tls = match accepted {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return failed(
                    "tls",
                    format!(
                        "the client's TLS with Ward failed: {e} (inside the sandbox, clients \
                         must trust the session's certificate authority)"
                    ),
                )
            }
            Err(_) => return failed("tls", "no TLS handshake within 30 s".into()),
        };
        // The real server, reached now: a failure is recorded, and each request then tries
        // again (admitted anew) and is answered 502 with the reason.
        let conn = Arc::new(ClientConn {
            upstream: Mutex::new(None),
        });
        match self.dial(&vetted, auth.clone(), "https").await {
            Ok(u) => *lock(&conn.upstream) = Some(u),
            Err(e) => failed("dial", e),
        }
        let started = Instant::now();
        let requests = Arc::new(AtomicU64::new(0));
        let p = self.clone();
        let counted = requests.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let (p, conn, auth) = (p.clone(), conn.clone(), auth.clone());
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                let r = match inside_uri(&req, &auth) {
                    Ok(u) => {
                        *req.uri_mut() = u;
                        p.forward(req, conn, "https", "inspected").await
                    }
                    Err(why) => Err(p.bad_request("inspected", &req.uri().to_string(), &why)),
                };
                Ok::<_, std::convert::Infallible>(r.unwrap_or_else(|r| refusal_response(&r)))
            }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(tls), svc)
            .await;
        // Each request is on record by itself; the tunnel's end says how many and how.
        let d = Decision::new(Effect::Allow, By::session(), "tunnel ended");
        self.note(Event {
            kind: ward_core::EventKind::NetClose.as_str().into(),
            ..self.event(
                action,
                &d,
                json!({
                    "via": via, "inspected": true,
                    "requests": requests.load(Ordering::Relaxed),
                    "ms": started.elapsed().as_secs_f64() * 1e3,
                    "end": match served {
                        Ok(()) => "closed".to_string(),
                        Err(e) => format!("error: {e}"),
                    },
                }),
            )
        });
    }
}

/// The absolute URI of a request inside a tunnel to `auth`: its path on the tunnel's host
/// (a request in absolute form must name that host itself).
fn inside_uri(req: &Request<Incoming>, auth: &Authority) -> Result<hyper::Uri, String> {
    let u = req.uri();
    if let Some(a) = u.authority() {
        let same = u.scheme_str() == Some("https")
            && canon::authority(a.as_str(), Some(443)).is_ok_and(|x| x == *auth);
        if !same {
            return Err(format!(
                "a request for `{}` inside the tunnel to {auth}",
                u.to_string().escape_default()
            ));
        }
    }
    let path = u.path_and_query().map_or("/", |p| p.as_str());
    if !path.starts_with('/') {
        return Err(format!(
            "request target `{}` is not a path",
            path.escape_default()
        ));
    }
    format!("https://{}:{}{path}", auth.host.as_match(), auth.port)
        .parse()
        .map_err(|e| format!("request target `{}`: {e}", path.escape_default()))
}
