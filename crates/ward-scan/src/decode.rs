//! Undoing what hides a secret from a plain scan: a body's `Content-Encoding` (gzip, deflate,
//! brotli) and the encodings text carries inside (base64 and hex runs, percent-encoding, JSON
//! and JavaScript escapes). Everything is bounded: a budget of decoded bytes for one input and
//! a depth of nested encodings, so that a small input cannot make a large amount of work.
//!
//! Not covered (a deliberate encoder can always win): quoted-printable, base32, custom or
//! layered ciphers, and base64 nested deeper than [`MAX_DEPTH`].

use std::io::Read;

/// Nested encodings undone (base64 inside percent-encoding inside JSON is three).
pub const MAX_DEPTH: u8 = 3;
/// A base64 run shorter than this (without line breaks) is not decoded: 24 characters are
/// 18 bytes, shorter than any credential the rules know.
const MIN_BASE64: usize = 24;
/// A hex run shorter than this is not decoded (16 bytes).
const MIN_HEX: usize = 32;

/// A content coding of an HTTP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the content coding `{0}` cannot be inspected (Ward reads gzip, deflate and br)")]
    Unsupported(String),
    #[error("the body decodes to more than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not valid {0}: {1}")]
    Corrupt(&'static str, String),
}

/// The codings a `Content-Encoding` value lists, in the order they were applied. `identity`
/// is skipped; anything Ward cannot undo is an error (an upload nobody can read is not let
/// through unread).
pub fn codings(value: &[u8]) -> Result<Vec<Coding>, DecodeError> {
    let mut out = Vec::new();
    for part in value.split(|&b| b == b',') {
        let name = part.trim_ascii().to_ascii_lowercase();
        match name.as_slice() {
            b"" | b"identity" => {}
            b"gzip" | b"x-gzip" => out.push(Coding::Gzip),
            b"deflate" => out.push(Coding::Deflate),
            b"br" => out.push(Coding::Brotli),
            _ => {
                return Err(DecodeError::Unsupported(
                    String::from_utf8_lossy(&name).chars().take(40).collect(),
                ))
            }
        }
    }
    Ok(out)
}

/// `data` with `applied` undone (last applied first), at most `max` bytes.
pub fn undo(data: &[u8], applied: &[Coding], max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut cur = data.to_vec();
    for c in applied.iter().rev() {
        cur = undo_one(&cur, *c, max)?;
    }
    Ok(cur)
}

fn undo_one(data: &[u8], c: Coding, max: usize) -> Result<Vec<u8>, DecodeError> {
    fn read_all(r: impl Read, max: usize, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        r.take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Corrupt(what, e.to_string()))?;
        if out.len() > max {
            return Err(DecodeError::TooLarge(max));
        }
        Ok(out)
    }
    match c {
        Coding::Gzip => read_all(flate2::read::MultiGzDecoder::new(data), max, "gzip"),
        // HTTP's `deflate` is zlib-wrapped; some clients send raw deflate.
        Coding::Deflate => read_all(flate2::read::ZlibDecoder::new(data), max, "deflate")
            .or_else(|_| read_all(flate2::read::DeflateDecoder::new(data), max, "deflate")),
        Coding::Brotli => read_all(
            brotli_decompressor::Decompressor::new(data, 4096),
            max,
            "brotli",
        ),
    }
}

/// What one input may cost in decoded bytes (all views together).
pub struct Budget {
    left: usize,
    /// Set when a view was skipped for want of budget.
    pub exhausted: bool,
}

impl Budget {
    /// Room for `n` decoded bytes.
    pub fn new(n: usize) -> Budget {
        Budget {
            left: n,
            exhausted: false,
        }
    }

    fn take(&mut self, n: usize) -> bool {
        let n = n + VIEW_COST;
        if n > self.left {
            self.exhausted = true;
            return false;
        }
        self.left -= n;
        true
    }
}

/// How a view was made from its input: the encodings undone, outermost first.
pub type How = Vec<&'static str>;

/// What each view costs beyond its bytes (so that many tiny views cannot make many scans).
const VIEW_COST: usize = 64;

/// Call `f` with every decoded view of `data` (not `data` itself), views of views up to
/// [`MAX_DEPTH`], within `budget`. Breadth first: every view of one level before any of the
/// next, so that padding nested deep cannot use up the budget before the plain runs of the
/// top level are read.
pub fn views(data: &[u8], budget: &mut Budget, f: &mut dyn FnMut(&[u8], &How)) {
    let mut level: Vec<(Vec<u8>, How)> = Vec::new();
    direct(data, budget, &Vec::new(), &mut level);
    for depth in 1..=MAX_DEPTH {
        let mut next = Vec::new();
        for (v, how) in &level {
            f(v, how);
            if depth < MAX_DEPTH {
                direct(v, budget, how, &mut next);
            }
        }
        level = next;
    }
}

/// The views of `data` one encoding down.
fn direct(data: &[u8], budget: &mut Budget, how: &How, out: &mut Vec<(Vec<u8>, How)>) {
    let mut emit = |v: Vec<u8>, what: &'static str| {
        let mut h = how.clone();
        h.push(what);
        out.push((v, h));
    };
    if let Some(v) = percent(data, budget) {
        emit(v, "url");
    }
    if let Some(v) = escapes(data, budget) {
        emit(v, "escapes");
    }
    let depth = how.len();
    // Runs: each decoded alone (they are usually separate values). Most runs are words: a
    // tight pass skips them, and only a long one (or one a line break may continue, as MIME
    // wraps base64) is measured in full.
    //
    // A segment of MIN_SEGMENT (>= 15) characters holds a whole aligned block of 8: only
    // blocks that are all base64 characters (checked without branches) are looked at.
    let n = data.len();
    let mut blk = 0;
    while blk + 8 <= n {
        let block = &data[blk..blk + 8];
        let mut all = 1u8;
        for &b in block {
            all &= B64[b as usize] as u8;
        }
        if all == 0 {
            blk += 8;
            continue;
        }
        let mut s = blk;
        while s > 0 && B64[data[s - 1] as usize] {
            s -= 1;
        }
        let mut e = blk + 8;
        while e < n && B64[data[e] as usize] {
            e += 1;
        }
        if e - s < MIN_SEGMENT {
            blk = e.next_multiple_of(8);
            continue;
        }
        let (start, end, chars) = run(data, s);
        blk = end.max(e).next_multiple_of(8);
        let text = &data[start..end];
        if chars >= MIN_HEX && chars.is_multiple_of(2) && text.iter().all(|b| b.is_ascii_hexdigit())
        {
            if let Some(v) = hex(text, budget) {
                emit(v, "hex");
            }
            continue;
        }
        // Base64 of anything worth hiding has both cases; a run with one (a UUID, a
        // lower-case identifier, a hash in hex) is not decoded.
        let (mut upper, mut lower) = (false, false);
        for &b in text {
            upper |= b.is_ascii_uppercase();
            lower |= b.is_ascii_lowercase();
        }
        if chars < MIN_BASE64 || !(upper && lower) {
            continue;
        }
        // Where the encoded value starts inside the run is unknown (`key` glued to it): at
        // the top level every alignment is tried; deeper, only the run's own.
        let shifts = if depth == 0 { 4 } else { 1 };
        for shift in 0..shifts {
            if let Some(v) = base64(text, shift, budget) {
                emit(v, "base64");
            }
        }
    }
}

fn is_b64(b: u8) -> bool {
    B64[b as usize]
}

/// The bytes of either base64 alphabet.
static B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    t
};

/// A run's first segment (before any line break) shorter than this is not looked at further:
/// a word. (MIME's lines are 76 characters; any encoder's are at least this long.)
const MIN_SEGMENT: usize = 16;

/// The base64 run starting at `i`: its end (after up to two `=`), continuing across line
/// breaks (MIME wraps base64 at 76 characters), and how many base64 characters it has.
fn run(data: &[u8], i: usize) -> (usize, usize, usize) {
    let mut j = i;
    let mut chars = 0;
    loop {
        while j < data.len() && is_b64(data[j]) {
            j += 1;
            chars += 1;
        }
        let mut k = j;
        while k < data.len() && data[k] == b'=' && k - j < 2 {
            k += 1;
        }
        if k > j {
            return (i, k, chars);
        }
        // A line break followed by more of the run.
        let mut k = j;
        if k < data.len() && data[k] == b'\r' {
            k += 1;
        }
        if k < data.len() && data[k] == b'\n' && k + 1 < data.len() && is_b64(data[k + 1]) {
            j = k + 1;
            continue;
        }
        return (i, j, chars);
    }
}

fn b64_value(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// The bytes of a base64 run (either alphabet, line breaks and padding skipped), its first
/// `shift` characters left out.
fn base64(text: &[u8], shift: usize, budget: &mut Budget) -> Option<Vec<u8>> {
    let vals: Vec<u8> = text
        .iter()
        .filter_map(|&b| b64_value(b))
        .skip(shift)
        .collect();
    if vals.len() < MIN_BASE64 - 3 || !budget.take(vals.len() * 3 / 4) {
        return None;
    }
    Some(sextets(&vals))
}

/// Bytes from base64 digit values.
fn sextets(vals: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(vals.len() * 3 / 4);
    for q in vals.chunks(4) {
        let n = q.iter().fold(0u32, |acc, &v| (acc << 6) | v as u32) << (6 * (4 - q.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..(q.len() * 6 / 8)]);
    }
    out
}

/// Standard base64 (either alphabet, padding and line breaks skipped) decoded, unbounded:
/// for values whose size is already bounded (a header).
pub fn base64_decode(text: &[u8]) -> Vec<u8> {
    let vals: Vec<u8> = text.iter().filter_map(|&b| b64_value(b)).collect();
    sextets(&vals)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = c.iter().fold(0u32, |a, &b| (a << 8) | b as u32) << (8 * (3 - c.len()));
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn hex(text: &[u8], budget: &mut Budget) -> Option<Vec<u8>> {
    if !budget.take(text.len() / 2) {
        return None;
    }
    let v = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Some(text.chunks(2).map(|p| (v(p[0]) << 4) | v(p[1])).collect())
}

/// `%XX` decoded (and `+` as a space), when there is any.
fn percent(data: &[u8], budget: &mut Budget) -> Option<Vec<u8>> {
    let hexval = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let first = memchr::memchr_iter(b'%', data).find(|&i| {
        i + 2 < data.len() && data[i + 1].is_ascii_hexdigit() && data[i + 2].is_ascii_hexdigit()
    })?;
    if !budget.take(data.len()) {
        return None;
    }
    let mut out = data[..first].to_vec();
    let mut i = first;
    while i < data.len() {
        match data[i] {
            b'%' if i + 2 < data.len() => match (hexval(data[i + 1]), hexval(data[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// JSON and JavaScript escapes undone (`\u0067`, `\x67`, `\/`, `\"`, ...), when there is one
/// that could hide part of a secret (`\n` and friends cannot: no secret has a line break).
fn escapes(data: &[u8], budget: &mut Budget) -> Option<Vec<u8>> {
    let first = memchr::memchr_iter(b'\\', data)
        .find(|&i| i + 1 < data.len() && matches!(data[i + 1], b'u' | b'x' | b'/'))?;
    if !budget.take(data.len()) {
        return None;
    }
    let hexval = |s: &[u8]| -> Option<u32> {
        let s = std::str::from_utf8(s).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    let mut out = data[..first].to_vec();
    let mut i = first;
    while i < data.len() {
        if data[i] != b'\\' || i + 1 >= data.len() {
            out.push(data[i]);
            i += 1;
            continue;
        }
        match data[i + 1] {
            b'u' if i + 6 <= data.len() => match hexval(&data[i + 2..i + 6]) {
                Some(mut c) => {
                    i += 6;
                    // A surrogate pair.
                    if (0xD800..0xDC00).contains(&c)
                        && data.get(i..i + 2) == Some(b"\\u")
                        && i + 6 <= data.len()
                    {
                        if let Some(lo) = hexval(&data[i + 2..i + 6]) {
                            if (0xDC00..0xE000).contains(&lo) {
                                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                                i += 6;
                            }
                        }
                    }
                    let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            b'x' if i + 4 <= data.len() => match hexval(&data[i + 2..i + 4]) {
                Some(c) => {
                    out.push(c as u8);
                    i += 4;
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            c @ (b'/' | b'"' | b'\\' | b'\'') => {
                out.push(c);
                i += 2;
            }
            b'n' => {
                out.push(b'\n');
                i += 2;
            }
            b't' => {
                out.push(b'\t');
                i += 2;
            }
            b'r' => {
                out.push(b'\r');
                i += 2;
            }
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn all(data: &[u8]) -> Vec<(Vec<u8>, String)> {
        let mut out = Vec::new();
        views(data, &mut Budget::new(1 << 20), &mut |v, how| {
            out.push((v.to_vec(), how.join("+")))
        });
        out
    }

    fn has(data: &[u8], want: &[u8]) -> Option<String> {
        all(data)
            .into_iter()
            .find(|(v, _)| v.windows(want.len()).any(|w| w == want))
            .map(|(_, how)| how)
    }

    const SECRET: &[u8] = b"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";

    use super::base64_encode as b64;

    #[test]
    fn base64_anywhere_in_a_run_and_across_line_breaks() {
        let e = b64(SECRET);
        assert_eq!(
            has(format!("{{\"d\":\"{e}\"}}").as_bytes(), SECRET).unwrap(),
            "base64"
        );
        // Glued to a word: another alignment.
        for glue in ["x", "xy", "xyz", "wxyz"] {
            let body = format!("token{glue}{e}");
            assert!(has(body.as_bytes(), SECRET).is_some(), "{body}");
        }
        // Wrapped as MIME does.
        let (a, b) = e.split_at(20);
        assert!(has(format!("{a}\r\n{b}").as_bytes(), SECRET).is_some());
        // URL-safe alphabet.
        let url = e.replace('+', "-").replace('/', "_");
        assert!(has(url.as_bytes(), SECRET).is_some());
    }

    #[test]
    fn nested_encodings_to_the_depth() {
        let once = b64(SECRET);
        let pct: String = once.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(has(pct.as_bytes(), SECRET).unwrap(), "url+base64");
        let esc: String = String::from_utf8_lossy(SECRET)
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        assert_eq!(has(esc.as_bytes(), SECRET).unwrap(), "escapes");
        let hexed: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(has(hexed.as_bytes(), SECRET).unwrap(), "hex");
        let twice = b64(once.as_bytes());
        assert_eq!(has(twice.as_bytes(), SECRET).unwrap(), "base64+base64");
        // Four deep is past the depth.
        let deep = b64(b64(twice.as_bytes()).as_bytes());
        assert!(has(deep.as_bytes(), SECRET).is_none());
    }

    #[test]
    fn budget_bounds_work() {
        let e = b64(&[7u8; 3000]);
        let mut b = Budget::new(100);
        let mut n = 0;
        views(e.as_bytes(), &mut b, &mut |_, _| n += 1);
        assert_eq!(n, 0);
        assert!(b.exhausted);
    }

    #[test]
    fn content_codings() {
        assert_eq!(
            codings(b"gzip, br").unwrap(),
            vec![Coding::Gzip, Coding::Brotli]
        );
        assert!(matches!(codings(b"zstd"), Err(DecodeError::Unsupported(_))));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(SECRET).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(undo(&gz, &[Coding::Gzip], 1000).unwrap(), SECRET);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(SECRET).unwrap();
        assert_eq!(
            undo(&z.finish().unwrap(), &[Coding::Deflate], 1000).unwrap(),
            SECRET
        );
        // A bomb stops at the limit.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 20_000);
        assert_eq!(
            undo(&bomb, &[Coding::Gzip], 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert!(matches!(
            undo(b"not gzip", &[Coding::Gzip], 100),
            Err(DecodeError::Corrupt("gzip", _))
        ));
    }
}
