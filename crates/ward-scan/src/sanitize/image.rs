//! Image metadata: what a vision model (or a tool that extracts text) may read and a person
//! viewing the picture does not see. The pixels are copied untouched.
//!
//! JPEG: every APPn segment but JFIF (APP0), ICC profiles (APP2) and Adobe colour information
//! (APP14) is removed (EXIF and XMP are APP1, IPTC APP13), as are comments (COM) and anything
//! after the end-of-image marker; all scans are walked (progressive JPEGs have several), the
//! image data stays. PNG: text and EXIF chunks, ancillary chunks not known to affect
//! rendering, and anything after IEND are removed; the rest stays, CRCs as they were.

use super::{Hidden, SanitizeError, Technique};

fn bad(format: &'static str, message: &str) -> SanitizeError {
    SanitizeError::Malformed {
        format,
        message: message.to_string(),
    }
}

/// Printable runs of 4+ characters, like `strings`: what a reader could take from metadata.
fn strings(b: &[u8]) -> String {
    let mut out = String::new();
    for run in b.split(|c| !(0x20..0x7f).contains(c)) {
        if run.len() >= 4 {
            if !out.is_empty() {
                out.push_str(" | ");
            }
            out.push_str(&String::from_utf8_lossy(run));
            if out.len() > super::REVEAL_MAX {
                break;
            }
        }
    }
    out
}

pub(crate) fn jpeg(
    input: &[u8],
    out: &mut Vec<u8>,
    found: &mut Vec<Hidden>,
) -> Result<(), SanitizeError> {
    if !input.starts_with(&[0xff, 0xd8]) {
        return Err(bad("JPEG", "no start-of-image marker"));
    }
    out.extend_from_slice(&input[..2]);
    let mut i = 2;
    loop {
        // Fill bytes before a marker are allowed.
        while input.get(i) == Some(&0xff) && input.get(i + 1) == Some(&0xff) {
            i += 1;
        }
        let (Some(&0xff), Some(&m)) = (input.get(i), input.get(i + 1)) else {
            return Err(bad("JPEG", "a segment does not start with a marker"));
        };
        // Markers without a length.
        if m == 0xd9 || (0xd0..=0xd7).contains(&m) || m == 0x01 {
            out.extend_from_slice(&input[i..i + 2]);
            i += 2;
            if m == 0xd9 {
                if i < input.len() {
                    let shown = strings(&input[i..]);
                    found.push(Hidden::new(Technique::ImageMetadata, i, input.len(), shown));
                }
                return Ok(());
            }
            continue;
        }
        let len = input
            .get(i + 2..i + 4)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
            .ok_or_else(|| bad("JPEG", "truncated segment header"))?;
        if len < 2 || i + 2 + len > input.len() {
            return Err(bad("JPEG", "a segment runs past the end of the file"));
        }
        let end = i + 2 + len;
        let body = &input[i + 4..end];
        let drop = ((0xe0..=0xef).contains(&m) && !matches!(m, 0xe0 | 0xe2 | 0xee)) || m == 0xfe;
        if drop {
            found.push(Hidden::new(Technique::ImageMetadata, i, end, strings(body)));
        } else {
            out.extend_from_slice(&input[i..end]);
        }
        i = end;
        if m == 0xda {
            // Entropy-coded data: up to the next marker that is not a stuffed 0xFF00, a restart
            // marker or fill; then segments again (more scans, tables, or the end).
            let mut j = i;
            while j + 1 < input.len() {
                if input[j] == 0xff && !matches!(input[j + 1], 0x00 | 0xd0..=0xd7 | 0xff) {
                    break;
                }
                j += 1;
            }
            if j + 1 >= input.len() {
                return Err(bad("JPEG", "image data without an end-of-image marker"));
            }
            out.extend_from_slice(&input[i..j]);
            i = j;
        }
    }
}

pub(crate) fn png(
    input: &[u8],
    out: &mut Vec<u8>,
    found: &mut Vec<Hidden>,
) -> Result<(), SanitizeError> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !input.starts_with(SIG) {
        return Err(bad("PNG", "no PNG signature"));
    }
    out.extend_from_slice(SIG);
    let mut i = SIG.len();
    while i < input.len() {
        let head = input
            .get(i..i + 8)
            .ok_or_else(|| bad("PNG", "truncated chunk header"))?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let end = i
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .filter(|&e| e <= input.len())
            .ok_or_else(|| bad("PNG", "a chunk runs past the end of the file"))?;
        let data = &input[i + 8..i + 8 + len];
        // Critical chunks (upper-case first letter) stay; ancillary ones only when they are
        // known to affect how the image looks (or animates).
        let keep = kind[0].is_ascii_uppercase()
            || matches!(
                kind,
                b"gAMA"
                    | b"cHRM"
                    | b"sRGB"
                    | b"iCCP"
                    | b"sBIT"
                    | b"bKGD"
                    | b"pHYs"
                    | b"tRNS"
                    | b"hIST"
                    | b"sPLT"
                    | b"cICP"
                    | b"mDCV"
                    | b"cLLI"
                    | b"acTL"
                    | b"fcTL"
                    | b"fdAT"
            );
        if !keep {
            let shown = match kind {
                b"zTXt" => {
                    let key = data.split(|&b| b == 0).next().unwrap_or(&[]);
                    format!("{} (compressed text)", String::from_utf8_lossy(key))
                }
                _ => strings(data),
            };
            found.push(Hidden::new(Technique::ImageMetadata, i, end, shown));
        } else {
            out.extend_from_slice(&input[i..end]);
        }
        i = end;
        if kind == b"IEND" {
            if i < input.len() {
                let shown = strings(&input[i..]);
                found.push(Hidden::new(Technique::ImageMetadata, i, input.len(), shown));
            }
            break;
        }
    }
    Ok(())
}
