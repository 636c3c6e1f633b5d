//! PDF: document metadata, and text drawn invisibly.
//!
//! Removed, in place (the same number of bytes, so every offset in the cross-reference table
//! stays right): the values in the document information dictionary (title, author, subject,
//! keywords, creator, producer, custom keys) and XMP metadata packets in uncompressed
//! streams. Reported, not removed: text drawn with render mode 3 or 7 (invisible), in plain
//! or Flate-compressed content streams. Invisible text is also how scanned PDFs carry their OCR
//! layer, often the document's only text, so removing it would do harm; the report shows what
//! it says. Information dictionaries inside compressed object streams are not reached (noted
//! in the report when the file has object streams).

use super::{Hidden, SanitizeError, Technique};
use std::io::Read;

const MAX_STREAM: u64 = 64 << 20;
const MAX_STREAMS: usize = 10_000;

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
    let mut streams = 0;
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
        let Some(end) = find(input, data_start, b"endstream") else {
            break;
        };
        streams += 1;
        if streams > MAX_STREAMS {
            return Err(bad("more than 10,000 streams"));
        }
        let dict_start = rfind(&input[..s], b"<<").unwrap_or(0);
        let dict = &input[dict_start..s];
        let data = &input[data_start..end];
        let flate = find(dict, 0, b"/FlateDecode").is_some();
        let other_filter = find(dict, 0, b"/Filter").is_some() && !flate;
        if find(dict, 0, b"/Type/ObjStm").is_some() || find(dict, 0, b"/Type /ObjStm").is_some() {
            found.push(Hidden::new(
                Technique::PdfNotExamined,
                dict_start,
                end,
                "compressed object stream (metadata inside it is not reached)".into(),
            ));
        } else if !flate && !other_filter {
            if let Some(x) = find(data, 0, b"<x:xmpmeta") {
                let stop = find(data, x, b"</x:xmpmeta>").map_or(data.len(), |p| p + 12);
                let text = xml_text(&data[x..stop]);
                for b in &mut out[data_start + x..data_start + stop] {
                    if !matches!(*b, b'\n' | b'\r') {
                        *b = b' ';
                    }
                }
                found.push(Hidden::new(
                    Technique::DocumentProperties,
                    data_start + x,
                    data_start + stop,
                    text,
                ));
            } else {
                invisible_text(data, data_start, found);
            }
        } else if flate {
            let mut plain = Vec::new();
            let ok = flate2::read::ZlibDecoder::new(data)
                .take(MAX_STREAM + 1)
                .read_to_end(&mut plain)
                .is_ok();
            if ok && plain.len() as u64 <= MAX_STREAM {
                invisible_text(&plain, data_start, found);
            }
        }
        i = end + 9;
    }
    Ok(())
}

/// Blank the values of the trailer's /Info dictionary, in place.
fn info_dictionary(out: &mut [u8], found: &mut Vec<Hidden>) {
    let Some(at) = rfind(out, b"/Info") else {
        return;
    };
    let rest = &out[at + 5..];
    let text = String::from_utf8_lossy(&rest[..rest.len().min(32)]).into_owned();
    let mut parts = text.split_whitespace();
    let (Some(num), Some(gen), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if !r.starts_with('R') || num.parse::<u32>().is_err() || gen.parse::<u32>().is_err() {
        return;
    }
    let header = format!("{num} {gen} obj");
    let Some(obj) = find(out, 0, header.as_bytes()) else {
        return;
    };
    let Some(open) = find(out, obj, b"<<") else {
        return;
    };
    let Some(close) = find(out, open, b">>") else {
        return;
    };
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

/// Text shown with render mode 3 (invisible) or 7 (clip only): reported.
fn invisible_text(content: &[u8], at: usize, found: &mut Vec<Hidden>) {
    let mut mode = 0i64;
    let mut saved: Vec<i64> = Vec::new();
    let mut operands: Vec<i64> = Vec::new();
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut said = String::new();
    let mut j = 0;
    while j < content.len() {
        let c = content[j];
        match c {
            b'(' => {
                let end = literal_end(content, j);
                strings.push(unescape_literal(&content[(j + 1).min(end)..end]));
                j = end + 1;
            }
            b'<' if content.get(j + 1) != Some(&b'<') => {
                let end = find(content, j, b">").unwrap_or(content.len());
                let hex: Vec<u8> = content[j + 1..end]
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_hexdigit)
                    .collect();
                strings.push(
                    hex.chunks(2)
                        .filter_map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
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
                operands.push(n.map_or(0, |n| n as i64));
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
                        for s in &strings {
                            if said.len() < super::REVEAL_MAX {
                                said.push_str(&String::from_utf8_lossy(s));
                            }
                        }
                        said.push(' ');
                    }
                    _ => {}
                }
                operands.clear();
                strings.clear();
                j = e;
            }
            _ => j += 1,
        }
    }
    let said = said.trim().to_string();
    if !said.is_empty() {
        found.push(Hidden::new(
            Technique::PdfInvisibleText,
            at,
            at + content.len().min(1),
            said,
        ));
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
