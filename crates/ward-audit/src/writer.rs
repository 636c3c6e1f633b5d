//! [`AuditLog`]: the appending side, with group commit.
//!
//! Callers on any thread hand events to one committer thread, which takes everything pending,
//! writes it with one `write`, makes it durable with one `fdatasync`, updates the anchor, and
//! only then wakes the callers. Each commit holds an exclusive `flock` on the log and first
//! catches up with records other processes appended, so several writers can share one log.

use crate::error::AuditError;
use crate::hex;
use crate::keys::{Anchor, KeyStore, SigningIdentity};
use crate::merkle::{Frontier, Hash};
use crate::record::{checkpoint_message, encode_line, parse_head, split_line, Event, GENESIS_PREV};
use crate::time::now_rfc3339;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use ward_core::{Action, Decision, Effect};

/// How long submitted (not awaited) events may wait for company before their batch commits.
const SUBMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);
/// A batch of submitted events this large commits at once.
const SUBMIT_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Sign a checkpoint after this many records (and always on close).
    pub checkpoint_every: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            checkpoint_every: 1000,
        }
    }
}

#[derive(Default)]
struct Queue {
    pending: Vec<Event>,
    next_ticket: u64,
    /// Every ticket below this has been committed or has failed.
    finished: u64,
    /// Tickets from this one on failed; the log is poisoned.
    failed_from: Option<(u64, String)>,
    closing: bool,
    /// The number of the batch that pending events will be committed in.
    open_batch: u64,
    /// Someone waits for a pending event to be durable (an `append`): commit at once. Events
    /// only `submit`ted may wait a little to share a batch (and its fsync).
    urgent: bool,
}

struct Shared {
    q: Mutex<Queue>,
    work: Condvar,
    /// Waiters of even and odd batches apart, so finishing one batch does not wake the callers
    /// already queued for the next (with many appenders that herd costs more than the fsync).
    done: [Condvar; 2],
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere must not stop the log from answering (with an error if need be).
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An open audit log. Dropping it closes it (final checkpoint); prefer [`AuditLog::close`] to
/// see the error.
pub struct AuditLog {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<Result<(), AuditError>>>,
    log_id: String,
    path: PathBuf,
}

impl AuditLog {
    /// Open (or create) the log at `log`, signing with the key in `keys`. Refuses a log that
    /// does not match its anchor: extending a truncated or rewritten log would launder it.
    pub fn open(log: &Path, keys: &KeyStore, opts: WriterOptions) -> Result<AuditLog, AuditError> {
        keys.check_outside(log)?;
        let identity = keys.signing_identity()?;
        if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AuditError::io(dir, e))?;
        }
        let existed = log.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(log)
            .map_err(|e| AuditError::io(log, e))?;
        if !existed {
            // The new file's name must survive a crash as surely as its first records.
            if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| AuditError::io(dir, e))?;
            }
        }
        let canon = log
            .canonicalize()
            .map_err(|e| AuditError::io(log, e))?
            .to_string_lossy()
            .into_owned();
        let mut st = State {
            file,
            path: log.to_path_buf(),
            canon,
            anchor_slot: 0,
            keys: keys.clone(),
            id: identity,
            log_id: String::new(),
            seq: 0,
            prev: GENESIS_PREV,
            frontier: Frontier::new(),
            len: 0,
            since_checkpoint: 0,
            every: opts.checkpoint_every.max(1),
            buf: Vec::with_capacity(1 << 16),
            scratch: Vec::with_capacity(1024),
            ts: String::new(),
            notes: Vec::new(),
        };
        st.file.lock().map_err(|e| AuditError::io(log, e))?;
        let r = st.start();
        let _ = st.file.unlock();
        r?;
        let log_id = st.log_id.clone();
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: [Condvar::new(), Condvar::new()],
        });
        let sh = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("ward-audit".into())
            .spawn(move || committer(sh, st))
            .map_err(|e| AuditError::io(log, e))?;
        Ok(AuditLog {
            shared,
            worker: Some(worker),
            log_id,
            path: log.to_path_buf(),
        })
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record `ev` and return once it is on disk. An error means it is not recorded: the
    /// caller must deny the action it describes.
    pub fn append(&self, ev: Event) -> Result<(), AuditError> {
        self.append_all(vec![ev])
    }

    /// Record a decision on an action and return the decision that stands: `decision` itself
    /// once its record is on disk, or a deny saying why when the record could not be written.
    /// This is the one way callers should turn a decision into an effect: an action whose audit
    /// write failed does not happen.
    pub fn record_decision(&self, action: &Action, decision: Decision) -> Decision {
        match self.append(Event::action(action, &decision)) {
            Ok(()) => decision,
            Err(e) => Decision::new(
                Effect::Deny,
                ward_core::By::builtin("audit"),
                format!("the audit log could not record this action, so it is denied: {e}"),
            ),
        }
    }

    /// Record several events; all are durable when this returns `Ok`.
    pub fn append_all(&self, evs: Vec<Event>) -> Result<(), AuditError> {
        if evs.is_empty() {
            return Ok(());
        }
        let mut q = self.shared.lock();
        if let Some((_, why)) = &q.failed_from {
            return Err(AuditError::Poisoned(why.clone()));
        }
        if q.closing {
            return Err(AuditError::Closed);
        }
        q.next_ticket += evs.len() as u64;
        let last = q.next_ticket - 1;
        q.pending.extend(evs);
        q.urgent = true;
        let done = &self.shared.done[(q.open_batch % 2) as usize];
        self.shared.work.notify_one();
        while q.finished <= last {
            q = done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        match &q.failed_from {
            Some((from, why)) if last >= *from => Err(AuditError::Poisoned(why.clone())),
            _ => Ok(()),
        }
    }

    /// Queue `ev` for the next commit and return at once, without waiting for it to be
    /// durable: for records of what already happened (a connection's bytes and duration), where
    /// waiting would only slow the traffic down. An error means the log no longer takes records
    /// (poisoned or closing); callers deny what would otherwise go unrecorded.
    pub fn submit(&self, ev: Event) -> Result<(), AuditError> {
        let mut q = self.shared.lock();
        if let Some((_, why)) = &q.failed_from {
            return Err(AuditError::Poisoned(why.clone()));
        }
        if q.closing {
            return Err(AuditError::Closed);
        }
        q.next_ticket += 1;
        q.pending.push(ev);
        // The committer needs waking for the first event of a batch (it then waits out the
        // window by itself) and when the batch is full; not for each one between.
        if q.pending.len() == 1 || q.pending.len() >= SUBMIT_BATCH {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// Commit what is pending, sign a final checkpoint and stop the committer.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    /// Record `ev` and close, in one durable write (`ward run` ends a session this way).
    pub fn close_with(mut self, ev: Event) -> Result<(), AuditError> {
        {
            let mut q = self.shared.lock();
            if let Some((_, why)) = &q.failed_from {
                return Err(AuditError::Poisoned(why.clone()));
            }
            q.next_ticket += 1;
            q.pending.push(ev);
        }
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        {
            let mut q = self.shared.lock();
            q.closing = true;
            self.shared.work.notify_all();
        }
        match self.worker.take() {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(AuditError::Poisoned("the committer thread panicked".into()))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn committer(sh: Arc<Shared>, mut st: State) -> Result<(), AuditError> {
    loop {
        let (batch, end, closing, number) = {
            let mut q = sh.lock();
            while q.pending.is_empty() && !q.closing {
                q = sh.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            // Only submitted events: give others a moment to join the batch, so a stream of
            // them (a proxy's requests) costs one fsync per few milliseconds, not one each.
            let deadline = std::time::Instant::now() + SUBMIT_WINDOW;
            while !q.urgent && !q.closing && q.pending.len() < SUBMIT_BATCH {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                q = sh
                    .work
                    .wait_timeout(q, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            q.urgent = false;
            let number = q.open_batch;
            if !q.pending.is_empty() {
                q.open_batch += 1;
            }
            (
                std::mem::take(&mut q.pending),
                q.next_ticket,
                q.closing,
                number,
            )
        };
        if !batch.is_empty() {
            // When closing, nothing more can be queued: the last batch carries the final
            // checkpoint, so closing costs no extra fsync.
            let r = st.commit(batch, closing);
            let mut q = sh.lock();
            let failed = r.is_err();
            if let Err(e) = r {
                if q.failed_from.is_none() {
                    q.failed_from = Some((q.finished, e.to_string()));
                }
            }
            q.finished = end;
            sh.done[(number % 2) as usize].notify_all();
            if closing && !failed && q.pending.is_empty() {
                return match &q.failed_from {
                    Some((_, why)) => Err(AuditError::Poisoned(why.clone())),
                    None => Ok(()),
                };
            }
        }
        if closing {
            let q = sh.lock();
            if !q.pending.is_empty() {
                continue;
            }
            if let Some((_, why)) = &q.failed_from {
                return Err(AuditError::Poisoned(why.clone()));
            }
            drop(q);
            return st.commit(Vec::new(), true);
        }
    }
}

struct State {
    file: File,
    path: PathBuf,
    /// The log's canonical path, as anchors record it.
    canon: String,
    /// Which of the two anchor slots the next commit writes.
    anchor_slot: usize,
    keys: KeyStore,
    id: SigningIdentity,
    log_id: String,
    seq: u64,
    prev: Hash,
    frontier: Frontier,
    /// Bytes of the log this writer has accounted for.
    len: u64,
    since_checkpoint: u64,
    every: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// The commit time, shared by the records of one batch.
    ts: String,
    /// Events Ward itself must record next (crash recovery).
    notes: Vec<Event>,
}

impl State {
    fn tampered(&self, message: String) -> AuditError {
        AuditError::Tampered {
            path: self.path.clone(),
            message: format!(
                "{message}; run `ward audit verify`, and to start a new log move this one aside"
            ),
        }
    }

    /// Called under the lock at open: create the log, or resume it from its anchor.
    fn start(&mut self) -> Result<(), AuditError> {
        let size = self.file_len()?;
        let others = self.keys.anchors_for_path(&self.canon)?;
        if size == 0 {
            let mut id = [0u8; 16];
            getrandom::getrandom(&mut id)
                .map_err(|e| AuditError::Config(format!("no randomness: {e}")))?;
            self.log_id = hex::encode(&id);
            let mut detail =
                json!({"log_id": self.log_id, "key": self.id.key_id, "format": "ward-audit/1"});
            if !others.is_empty() {
                // A log was here and is gone (deleted or emptied): the new log's first record
                // says so, and the old anchors are retired so that this log is the path's log.
                detail["previous"] = json!(others
                    .iter()
                    .map(|a| json!({"log_id": a.log_id, "records": a.seq, "head": a.head}))
                    .collect::<Vec<_>>());
            }
            let open = Event {
                detail: Some(detail),
                ..Event::new(ward_core::EventKind::AuditOpen)
            };
            self.commit_locked(vec![open], false)?;
            for a in &others {
                self.keys.retire(&a.log_id)?;
            }
            return Ok(());
        }
        let first = self.read_first_line()?;
        self.log_id = serde_json::from_slice::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v["detail"]["log_id"].as_str().map(str::to_string))
            .filter(|id| crate::keys::valid_log_id(id))
            .ok_or_else(|| {
                self.tampered("the first record is not an `audit.open` record with a log id".into())
            })?;
        if let Some(other) = others.iter().find(|a| a.log_id != self.log_id) {
            return Err(self.tampered(format!(
                "this is not the log Ward keeps here: the key directory holds the signed head of \
                 log {} ({} records) for this path, and this file is log {}; it was replaced",
                other.log_id, other.seq, self.log_id
            )));
        }
        match self.keys.read_anchor(&self.log_id)? {
            Some(a) if a.verify(&self.id.verifying_key()) => {
                if size < a.offset {
                    return Err(self.tampered(format!(
                        "the log is {size} bytes but its anchor says {} bytes ({} records): it was truncated",
                        a.offset, a.seq
                    )));
                }
                let line = self.read_line_ending_at(a.offset)?;
                let head_ok = split_line(&line).is_some_and(|p| {
                    hex::encode(&p.hash) == a.head && Sha256::digest(p.body).as_slice() == p.hash
                });
                if !head_ok {
                    return Err(
                        self.tampered(format!("record {} does not match the anchored head", a.seq))
                    );
                }
                let frontier = a
                    .frontier()
                    .ok_or_else(|| self.tampered("the anchor is malformed".into()))?;
                self.seq = a.seq;
                self.prev = hex::decode32(a.head.as_bytes()).unwrap_or(GENESIS_PREV);
                self.frontier = frontier;
                self.len = a.offset;
                // The cadence restarts; the Merkle root of the next checkpoint covers everything.
                self.since_checkpoint = 0;
                // Complete records after the signed head: a writer stopped between its write and
                // its anchor, or someone appended. They are taken in, and the log says so.
                let before = self.seq;
                self.sync_tail()?;
                if self.seq > before {
                    self.notes.push(Event {
                        detail: Some(json!({
                            "adopted_records": self.seq - before,
                            "first_seq": before + 1,
                            "last_seq": self.seq,
                            "why": "records after the signed head, left by a writer that stopped \
                                    before signing them (or appended by someone else)",
                        })),
                        ..Event::new(ward_core::EventKind::AuditRecovered)
                    });
                }
                Ok(())
            }
            Some(_) => {
                Err(self.tampered("the anchor's signature does not verify with this key".into()))
            }
            None => {
                // No anchor (first use of this key directory with an existing log): accept the
                // log only if it verifies in full under this key.
                let report = crate::verify::verify_bytes(
                    &std::fs::read(&self.path).map_err(|e| AuditError::io(&self.path, e))?,
                    &self.id.verifying_key(),
                    None,
                );
                if let Some(p) = report.problem {
                    return Err(self.tampered(format!(
                        "the log has no anchor here and does not verify: {}",
                        p.message
                    )));
                }
                self.sync_tail()
            }
        }
    }

    fn file_len(&self) -> Result<u64, AuditError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| AuditError::io(&self.path, e))
    }

    fn read_first_line(&mut self) -> Result<Vec<u8>, AuditError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut off = 0u64;
        loop {
            let n = read_at(&mut self.file, off, &mut chunk)
                .map_err(|e| AuditError::io(&self.path, e))?;
            if n == 0 {
                return Ok(out);
            }
            if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&chunk[..i]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            off += n as u64;
            if out.len() > 1 << 20 {
                return Err(self.tampered("the first record is not a record".into()));
            }
        }
    }

    /// The line whose newline is the byte before `end`, without the newline.
    fn read_line_ending_at(&mut self, end: u64) -> Result<Vec<u8>, AuditError> {
        let mut start = end.saturating_sub(1);
        let mut chunk = [0u8; 4096];
        loop {
            let from = start.saturating_sub(chunk.len() as u64);
            let want = (start - from) as usize;
            let n = read_at(&mut self.file, from, &mut chunk[..want])
                .map_err(|e| AuditError::io(&self.path, e))?;
            match chunk[..n].iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    start = from + i as u64 + 1;
                    break;
                }
                None if from == 0 => {
                    start = 0;
                    break;
                }
                None => start = from,
            }
            if end - start > 16 << 20 {
                return Err(self.tampered("a record is longer than 16 MiB".into()));
            }
        }
        let mut line = vec![0u8; (end.saturating_sub(1) - start) as usize];
        read_at(&mut self.file, start, &mut line).map_err(|e| AuditError::io(&self.path, e))?;
        Ok(line)
    }

    /// Take in records appended since `self.len` (by another writer), and cut off a torn
    /// final record left by a writer that crashed mid-append (it was never acknowledged).
    fn sync_tail(&mut self) -> Result<(), AuditError> {
        let size = self.file_len()?;
        if size == self.len {
            return Ok(());
        }
        if size < self.len {
            return Err(self.tampered(format!("the log shrank from {} to {size} bytes", self.len)));
        }
        let mut tail = vec![0u8; (size - self.len) as usize];
        read_at(&mut self.file, self.len, &mut tail).map_err(|e| AuditError::io(&self.path, e))?;
        let mut pos = 0usize;
        while let Some(nl) = tail[pos..].iter().position(|&b| b == b'\n') {
            let line = &tail[pos..pos + nl];
            let parts = split_line(line);
            let ok = match (&parts, parse_head(line)) {
                (Some(p), Some((seq, _))) => {
                    seq == self.seq + 1
                        && p.prev == self.prev
                        && Sha256::digest(p.body).as_slice() == p.hash
                }
                _ => false,
            };
            let Some(p) = parts.filter(|_| ok) else {
                return Err(self.tampered(format!(
                    "record {} (byte {}) does not continue the chain",
                    self.seq + 1,
                    self.len + pos as u64
                )));
            };
            if matches!(parse_head(line), Some((_, k)) if k == b"audit.checkpoint") {
                self.since_checkpoint = 0;
            } else {
                self.since_checkpoint += 1;
            }
            self.seq += 1;
            self.prev = p.hash;
            self.frontier.push(&p.hash);
            pos += nl + 1;
        }
        self.len += pos as u64;
        if pos < tail.len() {
            let discarded = tail.len() - pos;
            self.file
                .set_len(self.len)
                .map_err(|e| AuditError::io(&self.path, e))?;
            self.notes.push(Event {
                detail: Some(json!({
                    "discarded_bytes": discarded,
                    "at_offset": self.len,
                    "why": "an incomplete record from an interrupted append (never acknowledged)",
                })),
                ..Event::new(ward_core::EventKind::AuditRecovered)
            });
        }
        Ok(())
    }

    fn encode(&mut self, ev: &Event) {
        self.seq += 1;
        let h = encode_line(
            self.seq,
            &self.ts,
            ev,
            &self.prev,
            &mut self.buf,
            &mut self.scratch,
        );
        self.prev = h;
        self.frontier.push(&h);
    }

    fn checkpoint(&mut self, last: bool) {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let sig = self.id.sign(&checkpoint_message(&self.log_id, size, &root));
        let mut detail = json!({
            "log_id": self.log_id, "size": size, "root": hex::encode(&root),
            "key": self.id.key_id, "sig": sig,
        });
        if last {
            detail["final"] = json!(true);
        }
        let ev = Event {
            detail: Some(detail),
            ..Event::new(ward_core::EventKind::AuditCheckpoint)
        };
        self.encode(&ev);
        self.since_checkpoint = 0;
    }

    /// Write `batch` (and any checkpoints due) durably, then move the anchor. `close` adds the
    /// final checkpoint.
    fn commit(&mut self, batch: Vec<Event>, close: bool) -> Result<(), AuditError> {
        self.file
            .lock()
            .map_err(|e| AuditError::io(&self.path, e))?;
        let r = self.commit_locked(batch, close);
        let _ = self.file.unlock();
        r
    }

    fn commit_locked(&mut self, batch: Vec<Event>, close: bool) -> Result<(), AuditError> {
        self.sync_tail()?;
        self.buf.clear();
        self.ts = now_rfc3339();
        let (seq0, prev0, frontier0, since0) = (
            self.seq,
            self.prev,
            self.frontier.clone(),
            self.since_checkpoint,
        );
        let notes = std::mem::take(&mut self.notes);
        for ev in notes.iter().chain(batch.iter()) {
            self.encode(ev);
            self.since_checkpoint += 1;
            if self.since_checkpoint >= self.every {
                self.checkpoint(false);
            }
        }
        if close && self.since_checkpoint > 0 {
            self.checkpoint(true);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Leave no half record behind, and forget what was not written.
            let _ = self.file.set_len(self.len);
            self.seq = seq0;
            self.prev = prev0;
            self.frontier = frontier0;
            self.since_checkpoint = since0;
            return Err(AuditError::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        let head = hex::encode(&self.prev);
        let (_, stack) = self.frontier.to_parts();
        let msg = Anchor::message(
            &self.log_id,
            &self.canon,
            self.seq,
            self.len,
            &head,
            &self.frontier.root(),
        );
        let anchor = Anchor {
            log_id: self.log_id.clone(),
            log_path: self.canon.clone(),
            seq: self.seq,
            offset: self.len,
            head,
            frontier: stack.iter().map(|h| hex::encode(h)).collect(),
            key: self.id.key_id.clone(),
            sig: self.id.sign(&msg),
        };
        self.anchor_slot ^= 1;
        self.keys.write_anchor(&anchor, self.anchor_slot)
    }
}

fn read_at(f: &mut File, off: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}
