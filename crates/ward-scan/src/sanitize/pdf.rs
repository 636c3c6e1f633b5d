//! PDF: document metadata, and text drawn invisibly.
//!
//! Removed, in place (the same number of bytes, so every offset in the cross-reference table
//! stays right): the values in the document information dictionary (title, author, subject,
//! keywords, creator, producer, custom keys), XMP metadata packets in uncompressed streams,
//! and text drawn with render mode 3 (invisible) in documents without images: its strings
//! become empty (`()`, `<>`, spaces after them); a Flate-compressed content stream is compressed again and written
//! over the old one when it fits (it does: spaces compress well), zeros after it, its length
//! and the xref unchanged. In documents with images, invisible text is reported and kept:
//! it is how scanned PDFs carry their OCR layer, often the document's only text. Text drawn
//! as a clipping path (mode 7) is reported and kept: emptying it would hide what is painted
//! through it. Information
//! dictionaries inside compressed object streams are not reached (noted in the report when
//! the file has object streams).

use super::{Hidden, SanitizeError, Technique};
use std::io::Read;

const MAX_STREAM: u64 = 64 << 20;
const MAX_STREAMS: usize = 10_000;
/// Decompressed bytes looked at in all (a small file can inflate a lot).
const MAX_INFLATED: u64 = 512 << 20;
/// How far before `stream` its dictionary may start.
const DICT_MAX: usize = 64 << 10;

/// Whether `dict` has `/Key` followed by (whitespace and) `value`.
fn has_name(dict: &[u8], key: &[u8], value: &[u8]) -> bool {
    let mut j = 0;
    while let Some(p) = find(dict, j, key) {
        let rest = dict[p + key.len()..].trim_ascii_start();
        if rest.starts_with(value)
            && rest
                .get(value.len())
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            return true;
        }
        j = p + key.len();
    }
    false
}

/// Whether a stream's dictionary is that of page content or a form (what text is drawn
/// from), not of a font program, an image, a CMap, an ICC profile or an embedded file: only
/// those are ever rewritten.
fn content_like(dict: &[u8]) -> bool {
    let form = has_name(dict, b"/Subtype", b"/Form");
    (form || find(dict, 0, b"/Subtype").is_none())
        && [
            &b"/Length1"[..],
            b"/Length2",
            b"/CMap",
            b"/EmbeddedFile",
            b"/N ",
        ]
        .iter()
        .all(|k| find(dict, 0, k).is_none())
}

/// A direct `/Length N` in a stream dictionary (not `N 0 R`).
fn direct_length(dict: &[u8]) -> Option<usize> {
    let p = find(dict, 0, b"/Length")?;
    let rest = dict[p + 7..].trim_ascii_start();
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let after = rest[digits..].trim_ascii_start();
    if digits == 0 || after.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn bad(message: &str) -> SanitizeError {
    SanitizeError::Malformed {
        format: "PDF",
        message: message.to_string(),
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

pub(crate) fn clean(
    input: &[u8],
    out: &mut Vec<u8>,
    found: &mut Vec<Hidden>,
) -> Result<(), SanitizeError> {
    if !input.starts_with(b"%PDF-") {
        return Err(bad("no %PDF- header"));
    }
    out.extend_from_slice(input);
    info_dictionary(out, found);
    if find(input, 0, b"/Encrypt").is_some() {
        found.push(Hidden::new(
            Technique::PdfNotExamined,
            0,
            0,
            "encrypted document: its strings and streams are not examined".into(),
        ));
    }
    // Image XObjects are never inside object streams, so their dictionaries are in plain
    // sight (`/ImageB` and the like in a /ProcSet count too: they say images are drawn).
    let images = find(input, 0, b"/Image").is_some();
    // Streams with invisible text, decided once every stream has been seen (an inline image
    // in any of them means a scan, perhaps).
    let mut pending: Vec<(Invisible, usize, usize, Option<Fix>)> = Vec::new();
    let mut inline_anywhere = false;
    let mut streams = 0;
    let mut inflated = 0u64;
    let mut i = 0;
    while let Some(s) = find(input, i, b"stream") {
        // `stream` keyword: preceded by the dictionary's `>>` (and whitespace), followed by EOL.
        let after = s + 6;
        let data_start = match input.get(after..after + 2) {
            Some([b'\r', b'\n']) => after + 2,
            Some([b'\n', _]) | Some([b'\r', _]) => after + 1,
            _ => {
                i = after;
                continue;
            }
        };
        let before = input[..s].trim_ascii_end();
        if !before.ends_with(b">>") || (s >= 3 && &input[s - 3..s] == b"end") {
            i = after;
            continue;
        }
        let window = s.saturating_sub(DICT_MAX);
        let dict_start = rfind(&input[window..s], b"<<").map_or(window, |p| window + p);
        let dict = &input[dict_start..s];
        // The data ends after /Length bytes when that is direct and lands on `endstream`;
        // else at the first `endstream` (which a string in the data could fake).
        let by_length = direct_length(dict)
            .map(|n| data_start.saturating_add(n))
            .filter(|&e| {
                e <= input.len() && input[e..].trim_ascii_start().starts_with(b"endstream")
            });
        let Some(end) = by_length.or_else(|| find(input, data_start, b"endstream")) else {
            break;
        };
        streams += 1;
        if streams > MAX_STREAMS {
            return Err(bad("more than 10,000 streams"));
        }
        let data = &input[data_start..end];
        let has_filter = find(dict, 0, b"/Filter").is_some();
        let flate_only = has_name(dict, b"/Filter", b"/FlateDecode")
            || has_name(dict, b"/Filter", b"[/FlateDecode]")
            || has_name(dict, b"/Filter", b"[ /FlateDecode ]");
        if has_name(dict, b"/Type", b"/ObjStm") {
            found.push(Hidden::new(
                Technique::PdfNotExamined,
                dict_start,
                end,
                "compressed object stream (metadata inside it is not reached)".into(),
            ));
        } else if !has_filter {
            if let Some(inv) = examine(data, data_start, out, found, true) {
                inline_anywhere |= inv.inline_image;
                let fix = content_like(dict).then_some(Fix::InPlace);
                pending.push((inv, data_start, end, fix));
            }
        } else if flate_only {
            let mut plain = Vec::new();
            let room = (MAX_INFLATED - inflated).min(MAX_STREAM);
            let r = flate2::read::ZlibDecoder::new(data)
                .take(room + 1)
                .read_to_end(&mut plain);
            inflated += plain.len() as u64;
            if plain.len() as u64 > room {
                found.push(Hidden::new(
                    Technique::PdfNotExamined,
                    dict_start,
                    end,
                    "a stream that inflates past the size limit".into(),
                ));
                plain.truncate(room as usize);
            } else if r.is_err() {
                found.push(Hidden::new(
                    Technique::PdfNotExamined,
                    dict_start,
                    end,
                    "a damaged compressed stream (what decoded was examined)".into(),
                ));
            }
            let whole = r.is_ok() && plain.len() as u64 <= room;
            if let Some(inv) = examine(&plain, data_start, out, found, false) {
                inline_anywhere |= inv.inline_image;
                // (Kept only when it may be rewritten: with images it never is.)
                let fix = (whole && by_length.is_some() && content_like(dict) && !images)
                    .then_some(Fix::Flate(plain));
                pending.push((inv, data_start, end, fix));
            }
        } else {
            found.push(Hidden::new(
                Technique::PdfNotExamined,
                dict_start,
                end,
                "a stream with a filter other than Flate".into(),
            ));
        }
        i = end + 9;
    }
    let images = images || inline_anywhere;
    for (inv, at, end, fix) in pending {
        if !inv.clip.is_empty() {
            // Mode 7 text is a clipping path: blanking it would hide what is painted through
            // it. Reported, kept.
            found.push(Hidden::new(
                Technique::PdfNotExamined,
                at,
                at + 1,
                format!(
                    "invisible text used as a clipping path (kept): {}",
                    inv.clip
                ),
            ));
        }
        if inv.said.is_empty() {
            continue;
        }
        if images {
            inv.keep(at, found);
            continue;
        }
        match fix {
            Some(Fix::InPlace) => {
                inv.blank(&mut out[at..end]);
                inv.removed(at, found);
            }
            Some(Fix::Flate(mut plain)) => {
                inv.blank(&mut plain);
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                let packed = std::io::Write::write_all(&mut z, &plain)
                    .and_then(|()| z.finish())
                    .ok()
                    .filter(|p| p.len() <= end - at);
                match packed {
                    Some(p) => {
                        out[at..at + p.len()].copy_from_slice(&p);
                        out[at + p.len()..end].fill(0);
                        inv.removed(at, found);
                    }
                    None => inv.unremovable(at, found),
                }
            }
            None => inv.unremovable(at, found),
        }
    }
    Ok(())
}

/// How a stream with invisible text can be rewritten: in place (unfiltered), or its decoded
/// data blanked and compressed again into its old place.
enum Fix {
    InPlace,
    Flate(Vec<u8>),
}

/// One stream's decoded data: XMP metadata is blanked when the data is the file's own bytes
/// (`in_place`: an unfiltered stream) and reported otherwise; content is checked for
/// invisible text.
fn examine(
    data: &[u8],
    at: usize,
    out: &mut [u8],
    found: &mut Vec<Hidden>,
    in_place: bool,
) -> Option<Invisible> {
    // The whole packet: from the first of its markers to the end of the last one.
    let xmp = [&b"<?xpacket"[..], b"<x:xmpmeta", b"<rdf:RDF"]
        .iter()
        .filter_map(|m| find(data, 0, m))
        .min();
    let Some(x) = xmp else {
        return Some(invisible_text(data))
            .filter(|i| !i.said.is_empty() || !i.clip.is_empty() || i.inline_image);
    };
    let stop = find(data, x, b"<?xpacket end")
        .and_then(|p| find(data, p, b"?>").map(|q| q + 2))
        .or_else(|| find(data, x, b"</x:xmpmeta>").map(|p| p + 12))
        .or_else(|| find(data, x, b"</rdf:RDF>").map(|p| p + 10))
        .unwrap_or(data.len());
    let text = xml_text(&data[x..stop]);
    if in_place {
        for b in &mut out[at + x..at + stop] {
            if !matches!(*b, b'\n' | b'\r') {
                *b = b' ';
            }
        }
        found.push(Hidden::new(
            Technique::DocumentProperties,
            at + x,
            at + stop,
            text,
        ));
    } else {
        found.push(Hidden::new(
            Technique::PdfNotExamined,
            at,
            at,
            format!("compressed XMP metadata (kept): {text}"),
        ));
    }
    None
}

/// Blank the values of the trailer's /Info dictionary, in place.
fn info_dictionary(out: &mut [u8], found: &mut Vec<Hidden>) {
    // The last `/Info` key (later revisions come later), followed by a delimiter.
    let mut at = None;
    let mut j = 0;
    while let Some(p) = find(out, j, b"/Info") {
        if out.get(p + 5).is_some_and(|c| c.is_ascii_whitespace()) {
            at = Some(p);
        }
        j = p + 5;
    }
    let Some(at) = at else { return };
    let rest = &out[at + 5..];
    let text = String::from_utf8_lossy(&rest[..rest.len().min(32)]).into_owned();
    let mut parts = text.split_whitespace();
    let (Some(num), Some(gen), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if !r.starts_with('R') || num.parse::<u32>().is_err() || gen.parse::<u32>().is_err() {
        return;
    }
    // The object's definition: `N G obj` at the start of a line (not `12 0 obj` for `2 0 obj`,
    // not a comment); the last one (incremental updates).
    let header = format!("{num} {gen} obj");
    let mut obj = None;
    let mut k = 0;
    while let Some(p) = find(out, k, header.as_bytes()) {
        if p == 0 || matches!(out[p - 1], b'\n' | b'\r') {
            obj = Some(p);
        }
        k = p + header.len();
    }
    let Some(obj) = obj else { return };
    let Some(open) = find(out, obj, b"<<") else {
        return;
    };
    // The dictionary's end: the first `>>` not inside a string.
    let mut close = None;
    let mut q = open + 2;
    while q + 1 < out.len() {
        match out[q] {
            b'(' => q = literal_end(out, q) + 1,
            b'>' if out[q + 1] == b'>' => {
                close = Some(q);
                break;
            }
            _ => q += 1,
        }
    }
    let Some(close) = close else { return };
    let mut j = open + 2;
    let mut said = String::new();
    while j < close {
        match out[j] {
            b'(' => {
                let end = literal_end(out, j).min(close);
                if j + 1 < end {
                    said.push_str(&String::from_utf8_lossy(&out[j + 1..end]));
                    said.push(' ');
                    for b in &mut out[j + 1..end] {
                        *b = b' ';
                    }
                }
                j = end + 1;
            }
            b'<' if out.get(j + 1) != Some(&b'<') => {
                let end = find(out, j, b">").unwrap_or(close).min(close);
                let hex: Vec<u8> = out[j + 1..end]
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_hexdigit)
                    .collect();
                let bytes: Vec<u8> = hex
                    .chunks(2)
                    .filter_map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
                    .collect();
                said.push_str(&String::from_utf8_lossy(&bytes));
                said.push(' ');
                for b in &mut out[j + 1..end] {
                    if b.is_ascii_hexdigit() {
                        *b = b'0';
                    }
                }
                j = end + 1;
            }
            _ => j += 1,
        }
    }
    let said = said.trim().to_string();
    if !said.is_empty() {
        found.push(Hidden::new(
            Technique::DocumentProperties,
            open,
            close,
            said,
        ));
    }
}

/// The index of the `)` closing the literal string that opens at `at` (nesting, escapes).
fn literal_end(b: &[u8], at: usize) -> usize {
    let mut depth = 0;
    let mut j = at;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

fn xml_text(b: &[u8]) -> String {
    let mut s = String::new();
    let mut in_tag = false;
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                s.push(' ');
            }
            _ if !in_tag => s.push(c),
            _ => {}
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text a content stream shows with render mode 3 (invisible) or 7 (clip only).
struct Invisible {
    /// What it says.
    said: String,
    /// Where its strings are in the stream (inside their delimiters).
    spans: Vec<(usize, usize, bool)>,
    /// What it shows as a clipping path (mode 7): kept.
    clip: String,
    /// The stream draws an inline image (a scan's OCR layer beside it, perhaps).
    inline_image: bool,
}

impl Invisible {
    /// Make every invisible string empty: `(...)` becomes `()` and `<...>` `<>`, followed by
    /// spaces up to where the string ended (same length). Empty, not spaces: a font can draw
    /// a space as a letter.
    fn blank(&self, stream: &mut [u8]) {
        for &(s, e, hex) in &self.spans {
            // `e` is the closing delimiter's place (or the end of a damaged stream).
            let close = if hex { b'>' } else { b')' };
            if s < stream.len() {
                stream[s] = close;
                let stop = (e + 1).min(stream.len());
                for b in &mut stream[s + 1..stop] {
                    *b = b' ';
                }
            }
        }
    }

    fn removed(self, at: usize, found: &mut Vec<Hidden>) {
        found.push(Hidden::new(
            Technique::PdfInvisibleText,
            at,
            at + 1,
            self.said,
        ));
    }

    fn keep(self, at: usize, found: &mut Vec<Hidden>) {
        found.push(Hidden::new(Technique::PdfOcrLayer, at, at + 1, self.said));
    }

    fn unremovable(self, at: usize, found: &mut Vec<Hidden>) {
        found.push(Hidden::new(
            Technique::PdfNotExamined,
            at,
            at + 1,
            format!(
                "invisible text that could not be removed in place: {}",
                self.said
            ),
        ));
    }
}

fn invisible_text(content: &[u8]) -> Invisible {
    let mut mode = 0i64;
    let mut saved: Vec<i64> = Vec::new();
    let mut operands: Vec<i64> = Vec::new();
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut spans: Vec<(usize, usize, bool)> = Vec::new();
    let mut shown: Vec<(usize, usize, bool)> = Vec::new();
    let mut inline_image = false;
    let mut said = String::new();
    let mut clip = String::new();
    let mut j = 0;
    while j < content.len() {
        let c = content[j];
        match c {
            b'(' => {
                let end = literal_end(content, j);
                if strings.len() < 256 {
                    strings.push(unescape_literal(&content[(j + 1).min(end)..end]));
                }
                spans.push(((j + 1).min(end), end, false));
                j = end + 1;
            }
            b'<' if content.get(j + 1) != Some(&b'<') => {
                let end = find(content, j, b">").unwrap_or(content.len());
                let hex: Vec<u8> = content[j + 1..end]
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_hexdigit)
                    .collect();
                spans.push((j + 1, end, true));
                if strings.len() >= 256 {
                    j = end + 1;
                    continue;
                }
                // An odd last digit counts as followed by 0 (the PDF reference says so).
                strings.push(
                    hex.chunks(2)
                        .filter_map(|c| {
                            let d = std::str::from_utf8(c).ok()?;
                            let v = u8::from_str_radix(d, 16).ok()?;
                            Some(if c.len() == 1 { v << 4 } else { v })
                        })
                        .collect(),
                );
                j = end + 1;
            }
            b'%' => {
                j = content[j..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(content.len(), |p| j + p);
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let e = content[j..]
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.')))
                    .map_or(content.len(), |p| j + p);
                let n = std::str::from_utf8(&content[j..e])
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok());
                if operands.len() < 64 {
                    operands.push(n.map_or(0, |n| n as i64));
                }
                j = e.max(j + 1);
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'\'' | b'"' => {
                let e = content[j..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphabetic() || matches!(b, b'*' | b'\'' | b'"')))
                    .map_or(content.len(), |p| j + p)
                    .max(j + 1);
                match &content[j..e] {
                    b"Tr" => mode = operands.last().copied().unwrap_or(0),
                    b"q" => saved.push(mode),
                    b"Q" => mode = saved.pop().unwrap_or(0),
                    b"Tj" | b"TJ" | b"'" | b"\"" if mode == 3 || mode == 7 => {
                        let to = if mode == 3 { &mut said } else { &mut clip };
                        for s in &strings {
                            // Emptied strings say nothing.
                            if to.len() < super::REVEAL_MAX && !s.is_empty() {
                                to.push_str(&String::from_utf8_lossy(s));
                            }
                        }
                        to.push(' ');
                        if mode == 3 {
                            shown.append(&mut spans);
                        }
                    }
                    b"BI" => inline_image = true,
                    b"ID" => {
                        // Inline image data (binary) up to `EI` between whitespace.
                        inline_image = true;
                        let mut k = e;
                        j = content.len();
                        while let Some(p) = find(content, k, b"EI") {
                            let ws = |b: Option<&u8>| b.is_none_or(|b| b.is_ascii_whitespace());
                            if ws(content.get(p.wrapping_sub(1))) && ws(content.get(p + 2)) {
                                j = p + 2;
                                break;
                            }
                            k = p + 2;
                        }
                        operands.clear();
                        strings.clear();
                        spans.clear();
                        continue;
                    }
                    _ => {}
                }
                operands.clear();
                strings.clear();
                spans.clear();
                j = e;
            }
            _ => j += 1,
        }
    }
    Invisible {
        said: said.trim().to_string(),
        spans: shown,
        clip: clip.trim().to_string(),
        inline_image,
    }
}

fn unescape_literal(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            out.push(match b[i] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                c => c,
            });
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}
