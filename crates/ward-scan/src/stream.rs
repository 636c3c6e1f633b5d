//! Scanning data that arrives in pieces (request bodies, file reads) with bounded memory.

use crate::engine::{Finding, Scanner};

/// Bytes gathered before a scan (fewer, bigger scans amortise the overlap).
const CHUNK: usize = 1 << 20;

/// A scan over a stream: [`push`](Self::push) pieces, then [`finish`](Self::finish). Offsets and
/// lines in findings count from the start of the stream. Memory stays near [`CHUNK`] plus the
/// widest rule window twice, whatever the stream's length; each finding is reported once.
///
/// A finding is reported only once the bytes after it that a rule might still look at have
/// arrived, so `push` may report a finding from an earlier piece.
pub struct StreamScanner<'s> {
    scanner: &'s Scanner,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: usize,
    /// Line number of `buf[0]`.
    line: usize,
    /// Findings ending at or before this offset have been decided.
    done: usize,
    /// What a rule may look at around a place: kept behind `done`, held back before the end.
    reach: usize,
}

impl<'s> StreamScanner<'s> {
    pub fn new(scanner: &'s Scanner) -> StreamScanner<'s> {
        StreamScanner {
            scanner,
            buf: Vec::new(),
            base: 0,
            line: 1,
            done: 0,
            reach: scanner.widest() + 64,
        }
    }

    /// Add the next piece; findings that are now certain.
    pub fn push(&mut self, data: &[u8]) -> Vec<Finding> {
        let mut found = Vec::new();
        // In pieces, so that one huge push does not make one huge scan.
        for piece in data.chunks(CHUNK) {
            self.buf.extend_from_slice(piece);
            let end = self.base + self.buf.len();
            if end - self.done >= CHUNK.max(4 * self.reach) {
                found.extend(self.scan(end - self.reach));
            }
        }
        found
    }

    /// The end of the stream: the remaining findings.
    pub fn finish(mut self) -> Vec<Finding> {
        let end = self.base + self.buf.len();
        self.scan(end)
    }

    /// Bytes before this offset cannot be part of a finding still to be reported: every
    /// finding that touches them has been returned by [`push`](Self::push).
    pub fn cleared(&self) -> usize {
        self.done.saturating_sub(self.reach)
    }

    /// Bytes seen so far.
    pub fn offset(&self) -> usize {
        self.base + self.buf.len()
    }

    fn scan(&mut self, limit: usize) -> Vec<Finding> {
        let mut raw = Vec::new();
        self.scanner.scan_raw(&self.buf, &mut raw);
        let (base, done) = (self.base, self.done);
        // Which findings are this call's is decided after the generic ones have given way to
        // specific ones, over everything seen: as a whole-buffer scan would.
        let found = self
            .scanner
            .finish(&self.buf, raw, base, self.line, |_, e| {
                base + e > done && base + e <= limit
            });
        self.done = limit;
        let keep_from = limit.saturating_sub(2 * self.reach).max(self.base);
        let n = keep_from - self.base;
        self.line += crate::engine::count_newlines(&self.buf[..n]);
        self.buf.drain(..n);
        self.base = keep_from;
        found
    }
}
