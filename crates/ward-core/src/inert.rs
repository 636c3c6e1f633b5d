//! The one printer for text an agent chose (file names, link targets, file contents in diffs,
//! hosts, request lines, arguments, reasons that quote them). Whatever Ward shows a person goes
//! through here, so that such text cannot act on the terminal or rewrite what the person
//! reads: control characters (C0, DEL, C1, so ESC/CSI/OSC/DCS can never start), bidirectional
//! overrides and isolates, invisible format characters, line and paragraph separators and
//! Unicode tag characters are shown as escapes; in names and single-line fields newlines and
//! carriage returns are escaped too, so one name is one line. A backslash is doubled, so an
//! escape shown is never confused with the same characters typed. Bytes that are not UTF-8
//! are shown as `\xNN`. JSON output does not need this (its encoder escapes controls).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::Path;

/// Whether a character is shown escaped: in a single-line field (`multiline == false`)
/// every control; in multi-line text, every control but newline and tab.
fn hostile(c: char, multiline: bool) -> bool {
    match c {
        '\n' | '\t' => !multiline,
        '\\' => true,
        // C0, DEL and C1 (U+0080..U+009F: 8-bit CSI, OSC, DCS, ST in some terminals).
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Bidi marks, embeddings, overrides and isolates (Trojan Source), the Arabic mark.
        '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        '\u{061c}' => true,
        // Zero-width and invisible operators, word joiner, BOM, soft hyphen, line and
        // paragraph separators, interlinear annotation, tag characters, Hangul fillers.
        '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}' => true,
        '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}' => true,
        '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' | '\u{180e}' => true,
        // The rest of Unicode's default-ignorable and format characters: combining grapheme
        // joiner, Khmer and Mongolian invisibles, deprecated format controls, variation
        // selectors, specials, tags and their reserved block, and the format characters that
        // merge with what follows (number signs, Egyptian and musical format controls).
        '\u{34f}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' => true,
        '\u{206a}'..='\u{206f}' | '\u{fe00}'..='\u{fe0f}' | '\u{fff0}'..='\u{fff8}' => true,
        '\u{600}'..='\u{605}' | '\u{6dd}' | '\u{70f}' | '\u{890}' | '\u{891}' | '\u{8e2}' => true,
        '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' => true,
        '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}' => true,
        _ => false,
    }
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{1b}' => out.push_str("\\e"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape(s: &str, multiline: bool) -> Cow<'_, str> {
    let Some(first) = s.char_indices().find(|&(_, c)| hostile(c, multiline)) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first.0]);
    for c in s[first.0..].chars() {
        if hostile(c, multiline) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A name or a single-line field (a host, a reason, an argument): one line, nothing live.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Multi-line text (a diff's body, a file's text): newlines and tabs kept, nothing else live.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Bytes that may not be UTF-8 (a name, a request line): valid UTF-8 as by [`line`], every
/// other byte as `\xNN`.
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(&line(chunk.valid()));
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

/// A path, byte for byte (see [`bytes`]).
pub fn path(p: &Path) -> String {
    bytes(p.as_os_str().as_encoded_bytes())
}

/// `format!("{}", Inert(s))` shows `s` as [`line`] does.
pub struct Inert<'a>(pub &'a str);

impl fmt::Display for Inert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&line(self.0))
    }
}

/// Every character class a test must feed through each printer, with a name: an agent can
/// put any of these in a file name, a file, a host or an argument.
pub const HOSTILE_SAMPLES: &[(&str, &str)] = &[
    ("escape (CSI clear screen)", "\u{1b}[2J"),
    ("OSC title", "\u{1b}]0;owned\u{7}"),
    ("OSC 52 clipboard", "\u{1b}]52;c;ZXZpbA==\u{7}"),
    ("DCS", "\u{1b}P+q544e\u{1b}\\"),
    ("8-bit CSI", "\u{9b}2J"),
    ("carriage return", "ok\rFAKE"),
    ("newline", "a\nward: FAKE"),
    ("backspace", "abc\u{8}\u{8}\u{8}"),
    ("bidi override", "txt\u{202e}gpj.exe"),
    ("bidi isolate", "a\u{2067}b"),
    ("zero-width", "a\u{200b}b"),
    ("line separator", "a\u{2028}b"),
    ("tag character", "a\u{e0041}b"),
    ("variation selector", "a\u{fe0f}\u{e0100}b"),
    ("Arabic number sign", "\u{600}12"),
    ("bell", "a\u{7}b"),
    ("delete", "a\u{7f}b"),
];

/// Whether `shown` (something Ward printed) still carries a live character: one that
/// [`line`] would have escaped (a newline or tab only when `multiline` is false).
pub fn is_inert(shown: &str, multiline: bool) -> bool {
    !shown.chars().any(|c| c != '\\' && hostile(c, multiline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(line("src/main.rs"), Cow::Borrowed("src/main.rs")));
        assert!(matches!(text("a\n\tb\n"), Cow::Borrowed(_)));
        assert_eq!(line("héllo wörld ✓ 日本"), "héllo wörld ✓ 日本");
    }

    #[test]
    fn every_hostile_sample_comes_out_inert() {
        for (what, s) in HOSTILE_SAMPLES {
            let l = line(s);
            assert!(is_inert(&l, false), "{what}: {l:?}");
            assert!(
                !l.contains('\u{1b}') && !l.contains('\n') && !l.contains('\r'),
                "{what}"
            );
            let t = text(s);
            assert!(is_inert(&t, true), "{what}: {t:?}");
        }
    }

    #[test]
    fn escapes_are_unambiguous() {
        // A name that spells an escape is not the escape.
        assert_eq!(line("a\\e[2J"), "a\\\\e[2J");
        assert_eq!(line("a\u{1b}[2J"), "a\\e[2J");
        assert_eq!(line("x\ny"), "x\\ny");
        assert_eq!(text("x\ny\r\n"), "x\ny\\r\n");
        assert_eq!(line("\u{202e}"), "\\u{202e}");
        assert_eq!(line("\u{9b}"), "\\x9b");
    }

    #[test]
    fn non_utf8_bytes_are_shown_as_hex() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"a\xff\x1b]0;t\x07b"));
        assert_eq!(path(p), "a\\xff\\e]0;t\\x07b");
    }
}
