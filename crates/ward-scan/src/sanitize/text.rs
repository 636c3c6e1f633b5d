//! Plain text: invisible and deceptive Unicode, terminal escapes, control characters.
//!
//! What is removed (catalogue ids from the hidden-text research): Unicode tag characters (U1,
//! except emoji flag sequences), zero-width and format characters inside Latin text (U2),
//! invisible fillers (U3), variation selectors beyond the one an emoji or ideograph takes
//! (U4, decoded: 256 selectors carry a byte each), bidi embedding/override/isolate controls
//! outside right-to-left text (U5), private-use code points (U7), terminal escapes and text
//! they conceal (U10), and C0/C1 controls other than tab, newline, carriage return and form
//! feed. Everything else is copied byte for byte: a file with none of these comes out
//! identical.

use super::{Hidden, Technique};

/// Sanitize `input` as text, appending to `out` and noting what was removed in `found`
/// (offsets plus `base`: where `input` sits in the file).
pub(crate) fn clean(input: &[u8], base: usize, out: &mut Vec<u8>, found: &mut Vec<Hidden>) {
    let mut local = Vec::new();
    // A segment after the start follows removed markup (the caller cut it out).
    clean_at(input, out, &mut local, base > 0);
    for mut h in local {
        h.start += base;
        h.end += base;
        found.push(h);
    }
}

fn clean_at(input: &[u8], out: &mut Vec<u8>, found: &mut Vec<Hidden>, after_removal: bool) {
    out.reserve(input.len());
    let mut i = 0;
    let mut rtl_line = line_has_rtl(input, 0);
    while i < input.len() {
        // Fast path: runs of plain printable ASCII (and tab/newline/CR) need no decision.
        let run = plain_run(&input[i..]);
        if run > 0 {
            if let Some(nl) = input[i..i + run].iter().rposition(|&b| b == b'\n') {
                rtl_line = line_has_rtl(input, i + nl + 1);
            }
            out.extend_from_slice(&input[i..i + run]);
            i += run;
            continue;
        }
        let b = input[i];
        if b == 0x1b {
            i = escape(input, i, out, found);
            continue;
        }
        if b == b'\r' && input.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
            i += 2;
            continue;
        }
        if b < 0x80 {
            // A control character (not tab, newline, CR before newline, form feed) or DEL.
            note(found, Technique::Control, i, i + 1, String::new());
            i += 1;
            continue;
        }
        let Some((c, len)) = decode(&input[i..]) else {
            // Not UTF-8: copied as it is (the reader shows a replacement character) - except
            // continuation bytes right after something removed: kept, they could complete a
            // sequence begun before the removal into a character that was never in the input
            // (F3 00 A0 81 81 would become the tag character U+E0041).
            let just_removed = (i == 0 && after_removal)
                || found
                    .last()
                    .is_some_and(|h| h.technique.removed() && h.end == i);
            if just_removed && (0x80..0xc0).contains(&b) {
                note(found, Technique::Control, i, i + 1, String::new());
            } else {
                out.push(b);
            }
            i += 1;
            continue;
        };
        let prev = prev_char(out);
        match classify(c) {
            Class::Keep => out.extend_from_slice(&input[i..i + len]),
            Class::Tag => {
                // Emoji subdivision flags: U+1F3F4, tag letters/digits, U+E007F.
                if prev == Some('\u{1F3F4}') {
                    if let Some(end) = flag_end(input, i) {
                        out.extend_from_slice(&input[i..end]);
                        i = end;
                        continue;
                    }
                }
                let end = run_of(input, i, |c| ('\u{E0000}'..='\u{E007F}').contains(&c));
                let revealed = chars(&input[i..end])
                    .filter_map(|c| {
                        let v = c as u32 - 0xE0000;
                        (0x20..0x7f).contains(&v).then_some(v as u8 as char)
                    })
                    .collect();
                note(found, Technique::UnicodeTags, i, end, revealed);
                i = end;
                continue;
            }
            Class::ZeroWidth => {
                let next = decode(&input[i + len..]).map(|(c, _)| c);
                let joins_script =
                    |x: Option<char>| x.is_some_and(|x| !x.is_ascii() && x.is_alphabetic());
                let emoji = |x: Option<char>| x.is_some_and(is_pictographic);
                let keep = match c {
                    // ZWJ inside emoji sequences; ZWNJ/ZWJ between letters of scripts that use them.
                    '\u{200D}' => {
                        (emoji(prev) && emoji(next)) || (joins_script(prev) && joins_script(next))
                    }
                    '\u{200C}' => joins_script(prev) && joins_script(next),
                    // A byte-order mark at the very start of the file.
                    '\u{FEFF}' => i == 0,
                    _ => false,
                };
                if keep {
                    out.extend_from_slice(&input[i..i + len]);
                } else {
                    let end = run_of(input, i, |c| classify(c) == Class::ZeroWidth);
                    note(found, Technique::ZeroWidth, i, end, String::new());
                    i = end;
                    continue;
                }
            }
            Class::Filler => {
                let braille = c == '\u{2800}'
                    && (prev.is_some_and(|p| ('\u{2801}'..='\u{28FF}').contains(&p))
                        || decode(&input[i + len..])
                            .is_some_and(|(n, _)| ('\u{2801}'..='\u{28FF}').contains(&n)));
                if braille {
                    out.extend_from_slice(&input[i..i + len]);
                } else {
                    note(found, Technique::Filler, i, i + len, String::new());
                }
            }
            Class::Selector => {
                let first = !prev.is_some_and(is_selector);
                let base_ok = match c {
                    '\u{FE0E}' | '\u{FE0F}' => prev.is_some_and(|p| {
                        !p.is_ascii() || p.is_ascii_digit() || p == '#' || p == '*'
                    }),
                    '\u{E0100}'..='\u{E01EF}' => prev.is_some_and(is_ideograph),
                    _ => prev
                        .is_some_and(|p| is_ideograph(p) || ('\u{1820}'..='\u{18AF}').contains(&p)),
                };
                let next_is_selector =
                    decode(&input[i + len..]).is_some_and(|(n, _)| is_selector(n));
                if first && base_ok && !next_is_selector {
                    out.extend_from_slice(&input[i..i + len]);
                } else {
                    let end = run_of(input, i, is_selector);
                    let bytes: Vec<u8> = chars(&input[i..end])
                        .map(|c| match c {
                            '\u{FE00}'..='\u{FE0F}' => (c as u32 - 0xFE00) as u8,
                            _ => (c as u32 - 0xE0100 + 16) as u8,
                        })
                        .collect();
                    note(
                        found,
                        Technique::VariationSelectors,
                        i,
                        end,
                        String::from_utf8_lossy(&bytes).into_owned(),
                    );
                    i = end;
                    continue;
                }
            }
            Class::Bidi => {
                let mark = matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}');
                if rtl_line && mark {
                    out.extend_from_slice(&input[i..i + len]);
                } else if rtl_line {
                    // Embeddings in right-to-left text can be legitimate: kept, but noted.
                    out.extend_from_slice(&input[i..i + len]);
                    note(found, Technique::BidiInRtl, i, i + len, String::new());
                } else {
                    note(found, Technique::Bidi, i, i + len, String::new());
                }
            }
            Class::Private => note(found, Technique::PrivateUse, i, i + len, String::new()),
            Class::C1 => note(found, Technique::Control, i, i + len, String::new()),
        }
        i += len;
    }
}

/// Bytes that need no decision: printable ASCII, tab, newline, CR, form feed. Eight at a time.
fn plain_run(b: &[u8]) -> usize {
    // A carriage return is decided by the slow path: kept before a newline, removed alone
    // (a lone CR sends a terminal back to the start of the line, over what was written).
    let plain = |c: u8| (0x20..0x7f).contains(&c) || matches!(c, b'\t' | b'\n' | 0x0c);
    let mut n = 0;
    loop {
        while n + 8 <= b.len() {
            #[allow(clippy::expect_used)] // a slice of exactly 8 bytes
            let w = u64::from_le_bytes(b[n..n + 8].try_into().expect("8 bytes"));
            // Any byte >= 0x80, < 0x20 or == 0x7f? (< 0x20: subtracting 0x20 borrows; 0x7f:
            // adding 1 sets the high bit.) Tabs and newlines trip it too: the byte loop below
            // lets them through and the word loop resumes.
            let high = w & 0x8080_8080_8080_8080;
            let low = w.wrapping_sub(0x2020_2020_2020_2020) & !w & 0x8080_8080_8080_8080;
            let del = (w & 0x7f7f_7f7f_7f7f_7f7f).wrapping_add(0x0101_0101_0101_0101)
                & 0x8080_8080_8080_8080;
            if high | low | del != 0 {
                break;
            }
            n += 8;
        }
        let stop = (n + 8).min(b.len());
        while n < stop {
            if !plain(b[n]) {
                return n;
            }
            n += 1;
        }
        if n >= b.len() {
            return n;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    Tag,
    ZeroWidth,
    Filler,
    Selector,
    Bidi,
    Private,
    C1,
}

fn classify(c: char) -> Class {
    match c {
        '\u{80}'..='\u{9F}' => Class::C1,
        '\u{E0000}'..='\u{E007F}' => Class::Tag,
        '\u{200B}'
        | '\u{200C}'
        | '\u{200D}'
        | '\u{2060}'
        | '\u{FEFF}'
        | '\u{180E}'
        | '\u{2061}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}' => Class::ZeroWidth,
        '\u{3164}' | '\u{FFA0}' | '\u{115F}' | '\u{1160}' | '\u{2800}' | '\u{00AD}'
        | '\u{034F}' | '\u{17B4}' | '\u{17B5}' => Class::Filler,
        '\u{FE00}'..='\u{FE0F}'
        | '\u{E0100}'..='\u{E01EF}'
        | '\u{180B}'..='\u{180D}'
        | '\u{180F}' => Class::Selector,
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Class::Bidi,
        '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}' => {
            Class::Private
        }
        _ => Class::Keep,
    }
}

fn is_selector(c: char) -> bool {
    classify(c) == Class::Selector
}

fn is_ideograph(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{3FFFF}')
}

/// Emoji and pictographs (enough for ZWJ sequences and keycaps).
fn is_pictographic(c: char) -> bool {
    matches!(c, '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{2300}'..='\u{23FF}' | '\u{2B00}'..='\u{2BFF}' | '\u{FE0F}')
}

fn is_rtl(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFC}' | '\u{10800}'..='\u{10FFF}' | '\u{1E800}'..='\u{1EFFF}')
}

/// Whether the line starting at `from` has right-to-left letters.
fn line_has_rtl(input: &[u8], from: usize) -> bool {
    let end = input[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| from + p);
    let line = &input[from..end];
    line.iter().any(|&b| b >= 0x80) && chars(line).any(is_rtl)
}

/// The end of an emoji tag sequence starting at `i` (tag letters/digits, then U+E007F).
/// Only the three subdivision flags Unicode recommends (England, Scotland, Wales): any other
/// tag sequence after U+1F3F4 would hide up to six characters behind a black flag.
fn flag_end(input: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut name = String::new();
    while let Some((c, len)) = decode(&input[j..]) {
        match c {
            '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}' if name.len() < 6 => {
                name.push(char::from_u32(c as u32 - 0xE0000)?);
                j += len;
            }
            '\u{E007F}' if matches!(name.as_str(), "gbeng" | "gbsct" | "gbwls") => {
                return Some(j + len);
            }
            _ => return None,
        }
    }
    None
}

fn run_of(input: &[u8], i: usize, f: impl Fn(char) -> bool) -> usize {
    let mut j = i;
    while let Some((c, len)) = decode(&input[j..]) {
        if !f(c) {
            break;
        }
        j += len;
    }
    j
}

/// Terminal escapes: CSI, OSC, DCS/SOS/PM/APC strings, two-byte escapes. Text after an SGR
/// "conceal" (ESC[8m) up to the next reset is hidden from the person and removed too.
fn escape(input: &[u8], i: usize, out: &mut Vec<u8>, found: &mut Vec<Hidden>) -> usize {
    let rest = &input[i..];
    let end = match rest.get(1) {
        Some(b'[') => {
            let mut j = 2;
            while j < rest.len() && (0x30..0x40).contains(&rest[j]) {
                j += 1;
            }
            while j < rest.len() && (0x20..0x30).contains(&rest[j]) {
                j += 1;
            }
            if j < rest.len() && (0x40..0x7f).contains(&rest[j]) {
                j + 1
            } else {
                j.min(rest.len())
            }
        }
        Some(b']' | b'P' | b'X' | b'^' | b'_') => {
            // Until BEL or ST (ESC \).
            let mut j = 2;
            loop {
                if j >= rest.len() {
                    break rest.len();
                }
                if rest[j] == 0x07 {
                    break j + 1;
                }
                if rest[j] == 0x1b && rest.get(j + 1) == Some(&b'\\') {
                    break j + 2;
                }
                j += 1;
            }
        }
        Some(_) => 2,
        None => 1,
    };
    let seq = &rest[..end];
    let conceal = seq.starts_with(b"\x1b[") && seq.ends_with(b"m") && {
        let params = &seq[2..seq.len() - 1];
        params.split(|&b| b == b';').any(|p| p == b"8")
    };
    if conceal {
        // Hidden until a reset (0, empty, or 28) or the end of the line.
        let mut j = i + end;
        while j < input.len() && input[j] != b'\n' {
            if input[j] == 0x1b && input[j..].starts_with(b"\x1b[") {
                let k = input[j + 2..]
                    .iter()
                    .position(|b| (0x40..0x7f).contains(b))
                    .map_or(input.len(), |p| j + 2 + p);
                let p = &input[j + 2..k.min(input.len())];
                if k < input.len()
                    && input[k] == b'm'
                    && (p.is_empty() || p.split(|&b| b == b';').any(|x| x == b"0" || x == b"28"))
                {
                    let revealed = String::from_utf8_lossy(&input[i + end..j]).into_owned();
                    note(found, Technique::AnsiConcealed, i, k + 1, revealed);
                    return k + 1;
                }
            }
            j += 1;
        }
        let revealed = String::from_utf8_lossy(&input[i + end..j]).into_owned();
        note(found, Technique::AnsiConcealed, i, j, revealed);
        return j;
    }
    let _ = out;
    let shown = String::from_utf8_lossy(&seq[1..]).into_owned();
    note(found, Technique::Ansi, i, i + end, shown);
    i + end
}

fn note(found: &mut Vec<Hidden>, technique: Technique, start: usize, end: usize, revealed: String) {
    // Adjacent removals of one kind are one finding.
    if let Some(last) = found.last_mut() {
        if last.technique == technique && last.end == start && technique != Technique::AnsiConcealed
        {
            last.end = end;
            last.count += 1;
            if last.revealed.len() < super::REVEAL_MAX {
                last.revealed.push_str(&revealed);
            }
            return;
        }
    }
    found.push(Hidden::new(technique, start, end, revealed));
}

/// The last character written to `out`.
fn prev_char(out: &[u8]) -> Option<char> {
    let start = out.len().saturating_sub(4);
    let tail = &out[start..];
    (0..tail.len()).find_map(|k| {
        std::str::from_utf8(&tail[k..])
            .ok()
            .and_then(|s| s.chars().next_back())
    })
}

pub(crate) fn decode(b: &[u8]) -> Option<(char, usize)> {
    let len = match *b.first()? {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(b.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

fn chars(b: &[u8]) -> impl Iterator<Item = char> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            match decode(&b[i..]) {
                Some((c, len)) => {
                    i += len;
                    return Some(c);
                }
                None => i += 1,
            }
        }
        None
    })
}
