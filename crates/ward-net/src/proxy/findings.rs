//! What a secret or personal data found in a request does (the manifest's
//! `[network.findings]`, by the finding's confidence): refused before anything leaves, asked
//! about, or let through with the finding on the request's record. Bodies up to
//! [`SCAN_HOLD`] are held and read whole (their decoded forms too) before the request is
//! sent; past it the rest streams through the plain scan and leaves only once it is cleared.

use super::*;
use crate::dlp::{self, Leak};
use std::collections::VecDeque;
use ward_core::{Findings, Reaction};
use ward_scan::{Confidence, StreamScanner};

/// A body up to this size is read whole, decoded forms included, before the request leaves.
pub(super) const SCAN_HOLD: usize = 8 << 20;

fn reaction(f: &Findings, c: Confidence) -> &(Reaction, ward_core::Origin) {
    match c {
        Confidence::High => &f.high,
        Confidence::Medium => &f.medium,
        Confidence::Low => &f.low,
    }
}

fn by(o: &ward_core::Origin) -> By {
    match o {
        ward_core::Origin::Default => By::builtin("findings"),
        o => By::manifest(o),
    }
}

impl Proxy {
    /// Whether requests are read at all: some confidence does more than `allow`, or there
    /// are credentials' placeholders to look for.
    pub(super) fn scanning(&self) -> bool {
        let f = &self.inner.manifest.findings;
        !self.inner.marks.is_empty()
            || [&f.high, &f.medium, &f.low]
                .iter()
                .any(|(r, _)| *r != Reaction::Allow)
    }

    /// The placeholders found that stand where their credential goes, in a request to its
    /// destination (`path`): not findings (the secret is put in there); every other one is.
    pub(super) fn placed(
        &self,
        leaks: &mut Vec<Leak>,
        (scheme, host, port): (&str, &str, u16),
        path: &str,
    ) {
        leaks.retain(|l| {
            let Some(name) = &l.credential else {
                return true;
            };
            let ok = self.inner.credentials.iter().any(|c| {
                c.spec.name == *name
                    && c.spec.goes_to(scheme, host, port, path)
                    && crate::credentials::allowed_place(c, &l.place)
            });
            !ok
        });
    }

    /// Apply the manifest's word to what was found in one request (`a`: the request as an
    /// upload). `Ok`: the findings to keep on the request's record. `Err`: refused, and on
    /// record.
    pub(super) async fn react(
        &self,
        a: &Action,
        leaks: Vec<Leak>,
        via: &str,
    ) -> Result<Vec<Leak>, Refusal> {
        let f = &self.inner.manifest.findings;
        let mut leaks: Vec<Leak> = leaks
            .into_iter()
            .filter(|l| reaction(f, l.confidence).0 != Reaction::Allow)
            .collect();
        // The strictest first: it decides.
        leaks.sort_by_key(|l| std::cmp::Reverse(reaction(f, l.confidence).0));
        let Some(worst) = leaks.first() else {
            return Ok(leaks);
        };
        // A credential's placeholder where it does not go is refused, whatever the settings.
        if let Some(p) = leaks.iter().find(|l| l.credential.is_some()) {
            let spec = self
                .inner
                .credentials
                .iter()
                .find(|c| Some(&c.spec.name) == p.credential.as_ref())
                .map(|c| {
                    format!(
                        " (it goes only in the {} of requests to {}{})",
                        c.spec.placement, c.spec.to, c.spec.path
                    )
                })
                .unwrap_or_default();
            let why = format!(
                "the request carries {} in the {}{spec}",
                p.description, p.place
            );
            let d = Decision::new(Effect::Deny, By::builtin("credentials"), why);
            self.note(self.event(
                a,
                &d,
                json!({"via": via, "findings": leaks.iter().map(Leak::json).collect::<Vec<_>>()}),
            ));
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                socks::REP_NOT_ALLOWED,
                d.by,
                d.reason,
            ));
        }
        let (r, origin) = reaction(f, worst.confidence).clone();
        let level = dlp::level(worst.confidence);
        let detail = json!({
            "via": via,
            "findings": leaks.iter().map(Leak::json).collect::<Vec<_>>(),
        });
        let why = format!(
            "the request carries {} ([network.findings] {level} = {})",
            worst.summary(),
            r.as_str()
        );
        let outcome = match r {
            Reaction::Allow | Reaction::Record => return Ok(leaks),
            Reaction::Deny => Outcome {
                decision: Decision::new(Effect::Deny, by(&origin), why),
                consent: None,
                channel: None,
            },
            Reaction::Ask => {
                let d = Decision::new(Effect::Ask, by(&origin), why);
                let text = format!(
                    "The agent's request {} carries {}. Let it leave?",
                    ward_core::inert::Inert(&a.resource),
                    ward_core::inert::Inert(&worst.summary()),
                );
                // Each question its own: a yes to one masked excerpt is not a yes to every
                // later secret of that kind.
                static ASKED: AtomicU64 = AtomicU64::new(0);
                let n = ASKED.fetch_add(1, Ordering::Relaxed);
                self.ask(d, format!("finding {} #{n}", worst.rule), text, None)
                    .await
            }
        };
        let allowed = outcome.decision.effect == Effect::Allow;
        self.note(self.outcome_event(a, &outcome, detail));
        if allowed {
            return Ok(leaks);
        }
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            socks::REP_NOT_ALLOWED,
            outcome.decision.by.clone(),
            outcome.decision.reason,
        ))
    }

    /// A streamed body stopped on a finding (the request was cut short upstream): on record,
    /// and the client told why.
    pub(super) fn stopped(&self, a: &Action, leak: &Leak, via: &str) -> Refusal {
        let f = &self.inner.manifest.findings;
        let (r, origin) = reaction(f, leak.confidence);
        let why = format!(
            "the upload carries {} past the first {} MiB, where a person cannot be asked \
             ([network.findings] {} = {}); the request was cut short",
            leak.summary(),
            SCAN_HOLD >> 20,
            dlp::level(leak.confidence),
            r.as_str()
        );
        let d = Decision::new(Effect::Deny, by(origin), why.clone());
        self.note(self.event(
            a,
            &d,
            json!({"via": via, "findings": [leak.json()], "streamed": true}),
        ));
        Refusal::new(StatusCode::FORBIDDEN, socks::REP_NOT_ALLOWED, d.by, why)
    }
}

/// What a streamed body's scan found, shared with the request's record.
#[derive(Default)]
pub(super) struct Found {
    /// Findings let through (on the request's record).
    pub kept: Mutex<Vec<Leak>>,
    /// The finding that stopped the body.
    pub stopped: Mutex<Option<Leak>>,
    /// Some decoded forms of the body were left unread for want of budget.
    pub partly: std::sync::atomic::AtomicBool,
    /// The credentials whose secrets were put in.
    pub put: Mutex<Vec<String>>,
}

/// A request body passed up only as far as the scan has cleared it; a finding the manifest
/// does not let through ends it with an error (the upstream request is cut short, and the
/// bytes of the finding never leave).
pub(super) struct Scanning {
    inner: ProxyBody,
    scan: Option<StreamScanner<'static>>,
    /// Bytes received and not yet passed up, from stream offset `released`.
    pending: VecDeque<Bytes>,
    released: usize,
    /// The held prefix's length (its findings were judged with it).
    judged: usize,
    findings: Findings,
    dest: String,
    found: Arc<Found>,
    ended: bool,
    /// Bytes not yet read for encoded forms (base64, escapes, ...), behind the last
    /// [`VIEW_OVERLAP`] bytes of the window read before; and the stream offset up to which
    /// they have been read (an encoded secret across a window's end is read with the next).
    window: Vec<u8>,
    viewed: usize,
    marks: Vec<dlp::Mark>,
}

/// A window of a streamed body is read for encoded forms once it has this many new bytes.
const VIEW_WINDOW: usize = 256 << 10;
/// What a window keeps of the one before: longer than any encoded secret the rules find.
const VIEW_OVERLAP: usize = 8 << 10;

impl Scanning {
    /// `seen`: bytes of the body already sent up in whole (a held prefix), scanned again here
    /// so that a finding across its end is seen.
    pub(super) fn new(
        inner: ProxyBody,
        seen: &[u8],
        (findings, marks): (Findings, Vec<dlp::Mark>),
        dest: String,
        found: Arc<Found>,
    ) -> Scanning {
        let mut scan = StreamScanner::new(dlp::scanner());
        // Already judged whole; only what crosses into the rest counts.
        let _ = scan.push(seen);
        Scanning {
            inner,
            released: seen.len(),
            judged: seen.len(),
            scan: Some(scan),
            pending: VecDeque::new(),
            findings,
            dest,
            found,
            ended: false,
            window: seen[seen.len().saturating_sub(VIEW_OVERLAP)..].to_vec(),
            viewed: seen.len(),
            marks,
        }
    }

    /// Read the window for encoded forms (all of it at the end); false when a finding stops
    /// the body.
    fn view(&mut self, end: bool) -> bool {
        let fresh = self
            .window
            .len()
            .min(self.offset().saturating_sub(self.viewed));
        if fresh == 0 || (!end && fresh < VIEW_WINDOW) {
            return true;
        }
        let leaks = dlp::streamed_views(&self.window, &self.dest, &self.marks);
        self.viewed = if end {
            usize::MAX
        } else {
            self.offset() - VIEW_OVERLAP.min(self.window.len())
        };
        let keep = self.window.len().saturating_sub(VIEW_OVERLAP);
        self.window.drain(..keep);
        self.judge_leaks(leaks)
    }

    /// Stream offset of the bytes received so far.
    fn offset(&self) -> usize {
        self.released + self.pending.iter().map(|b| b.len()).sum::<usize>()
    }

    /// Findings from the scan: false when one stops the body.
    fn judge(&mut self, mut found: Vec<ward_scan::Finding>) -> bool {
        // Findings inside the held prefix were judged with it.
        found.retain(|f| f.end > self.judged);
        let leaks = dlp::streamed(found, &self.dest);
        self.judge_leaks(leaks)
    }

    fn judge_leaks(&mut self, leaks: Vec<Leak>) -> bool {
        for l in leaks {
            // A placeholder in a body is never where its credential goes.
            let r = if l.credential.is_some() {
                Reaction::Deny
            } else {
                reaction(&self.findings, l.confidence).0
            };
            match r {
                Reaction::Allow => {}
                Reaction::Record => lock(&self.found.kept).push(l),
                Reaction::Ask | Reaction::Deny => {
                    *lock(&self.found.stopped) = Some(l);
                    return false;
                }
            }
        }
        true
    }

    /// The next piece that may leave: everything before the scan's cleared offset (all of it
    /// once the body has ended).
    fn ready(&mut self) -> Option<Bytes> {
        let limit = match &self.scan {
            Some(s) => s.cleared(),
            None => usize::MAX,
        }
        .min(self.viewed);
        let front = self.pending.front_mut()?;
        let room = limit.saturating_sub(self.released);
        if room == 0 {
            return None;
        }
        let piece = if front.len() <= room {
            self.pending.pop_front()?
        } else {
            front.split_to(room)
        };
        self.released += piece.len();
        Some(piece)
    }
}

impl Body for Scanning {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(b) = self.ready() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => {
                        let found = match self.scan.as_mut() {
                            Some(s) => s.push(&d),
                            None => Vec::new(),
                        };
                        if !self.judge(found) {
                            return Poll::Ready(Some(Err("stopped by a finding".into())));
                        }
                        if !d.is_empty() {
                            self.window.extend_from_slice(&d);
                            self.pending.push_back(d);
                        }
                        if !self.view(false) {
                            return Poll::Ready(Some(Err("stopped by a finding".into())));
                        }
                    }
                    // Trailers (rare on uploads, and a place to hide data): the body ends
                    // here, without them.
                    Err(_trailers) => {
                        let found = self.scan.take().map(|s| s.finish()).unwrap_or_default();
                        if !self.judge(found) || !self.view(true) {
                            return Poll::Ready(Some(Err("stopped by a finding".into())));
                        }
                        self.ended = true;
                    }
                },
                Poll::Ready(None) => {
                    let found = self.scan.take().map(|s| s.finish()).unwrap_or_default();
                    if !self.judge(found) || !self.view(true) {
                        return Poll::Ready(Some(Err("stopped by a finding".into())));
                    }
                    self.ended = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.ended && self.pending.is_empty()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose first bytes were already read: those, then the rest.
pub(super) struct Prefixed<B> {
    pub first: Option<Bytes>,
    pub rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match Pin::new(&mut self.rest).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }
    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// Read `body` until it ends or passes `limit` bytes (the data so far, and whether it ended),
/// within `within`.
pub(super) async fn gather<B>(
    body: &mut B,
    limit: usize,
    within: Duration,
) -> Result<(Bytes, bool), String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = bytes::BytesMut::new();
    let read = async {
        while let Some(f) = body.frame().await {
            let f = f.map_err(|e| e.to_string())?;
            if let Ok(d) = f.into_data() {
                buf.extend_from_slice(&d);
                if buf.len() > limit {
                    return Ok(false);
                }
            }
        }
        Ok::<bool, String>(true)
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(done)) => Ok((buf.freeze(), done)),
        Ok(Err(e)) => Err(format!("the upload could not be read: {e}")),
        Err(_) => Err(format!(
            "the upload did not arrive within {} s",
            within.as_secs()
        )),
    }
}
