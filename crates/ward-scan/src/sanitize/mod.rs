//! The sanitizer: content a person does not see but a model reads, found and removed (or
//! revealed), before a file reaches the model. Start from [`sanitize`].
//!
//! Formats: plain text (and code), Markdown, HTML, SVG, JPEG, PNG, DOCX, XLSX, PPTX, PDF
//! (metadata removed, invisible text reported). Anything else [`sanitize`] refuses rather
//! than pass through unexamined.
//! Alongside, [`injection`] scores text for instruction-like content aimed at an assistant;
//! that score is advice for a person or a policy, never a reason to change the file.

mod css;
mod image;
pub mod injection;
mod markup;
mod office;
mod pdf;
mod text;

use serde::Serialize;

/// At most this much of a hidden item's text is kept for the report.
pub(crate) const REVEAL_MAX: usize = 400;

/// A way of hiding content, with its id in `reference/hidden-text-techniques.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// U1: Unicode tag characters (U+E0000-E007F), "ASCII smuggling".
    UnicodeTags,
    /// U2: zero-width and invisible format characters.
    ZeroWidth,
    /// U3: invisible fillers (Hangul fillers, blank Braille, soft hyphen, CGJ).
    Filler,
    /// U4: variation selectors beyond the one a character takes (data smuggled in them).
    VariationSelectors,
    /// U5: bidi embedding, override and isolate controls outside right-to-left text.
    Bidi,
    /// U5: bidi controls inside right-to-left text (kept, reported).
    BidiInRtl,
    /// U7: private-use code points.
    PrivateUse,
    /// C0/C1 control characters.
    Control,
    /// U10: terminal escape sequences.
    Ansi,
    /// U10: text concealed by a terminal escape (SGR 8).
    AnsiConcealed,
    /// M1: HTML comments (also in Markdown).
    HtmlComment,
    /// M2: Markdown link-reference "comments" (`[//]: # (...)`).
    MarkdownComment,
    /// M3: elements hidden by CSS or attributes (display:none, white on white, zero size...).
    CssHidden,
    /// M4: elements that are never rendered (`<template>`).
    NotRendered,
    /// I3: SVG text that is not drawn: `<desc>`, `<title>`, `<metadata>`, invisible `<text>`.
    SvgHidden,
    /// I3: SVG scripts and foreign objects.
    SvgActive,
    /// I1: image metadata (EXIF, XMP, IPTC, JPEG comments, PNG text chunks).
    ImageMetadata,
    /// D1: Word text marked hidden, white on no shading, or 1 pt and under.
    OfficeHidden,
    /// D2: tracked deletions still in a Word document.
    TrackedDeletion,
    /// D2/D4: comments in Word, Excel or PowerPoint.
    OfficeComment,
    /// D3: document properties (title, subject, keywords, authors, custom properties).
    DocumentProperties,
    /// D4: PowerPoint speaker notes.
    SpeakerNotes,
    /// D4: the text of a PowerPoint slide marked hidden.
    HiddenSlide,
    /// D4: an Excel sheet marked hidden or very hidden.
    HiddenSheet,
    /// D5: PDF text drawn invisibly (render mode 3 or 7) in a document without images.
    PdfInvisibleText,
    /// D5: PDF text drawn invisibly in a document with images (reported, kept: it may be the
    /// OCR layer of a scan, often its only text).
    PdfOcrLayer,
    /// D6: a part of a PDF the sanitizer does not reach (compressed object streams).
    PdfNotExamined,
}

impl Technique {
    /// The catalogue id (hidden-text-techniques.md).
    pub fn id(self) -> &'static str {
        use Technique::*;
        match self {
            UnicodeTags => "U1",
            ZeroWidth => "U2",
            Filler => "U3",
            VariationSelectors => "U4",
            Bidi | BidiInRtl => "U5",
            PrivateUse | Control => "U7",
            Ansi | AnsiConcealed => "U10",
            HtmlComment => "M1",
            MarkdownComment => "M2",
            CssHidden => "M3",
            NotRendered => "M4",
            SvgHidden | SvgActive => "I3",
            ImageMetadata => "I1",
            OfficeHidden => "D1",
            TrackedDeletion | OfficeComment => "D2",
            DocumentProperties => "D3",
            SpeakerNotes | HiddenSlide | HiddenSheet => "D4",
            PdfInvisibleText | PdfOcrLayer => "D5",
            PdfNotExamined => "D6",
        }
    }

    pub fn describe(self) -> &'static str {
        use Technique::*;
        match self {
            UnicodeTags => "Unicode tag characters (invisible ASCII)",
            ZeroWidth => "zero-width characters",
            Filler => "invisible filler characters",
            VariationSelectors => "variation selectors carrying data",
            Bidi => "bidirectional text controls",
            BidiInRtl => "bidirectional controls in right-to-left text (kept)",
            PrivateUse => "private-use characters",
            Control => "control characters",
            Ansi => "terminal escape sequences",
            AnsiConcealed => "text concealed by a terminal escape",
            HtmlComment => "HTML comment",
            MarkdownComment => "Markdown comment",
            CssHidden => "element hidden by CSS or attributes",
            NotRendered => "element that is never rendered",
            SvgHidden => "SVG text that is not drawn",
            SvgActive => "SVG script or foreign object",
            ImageMetadata => "image metadata",
            OfficeHidden => "hidden text in a Word document",
            TrackedDeletion => "tracked deletion",
            OfficeComment => "comment",
            DocumentProperties => "document properties",
            SpeakerNotes => "speaker notes",
            HiddenSlide => "text of a hidden slide",
            HiddenSheet => "hidden worksheet",
            PdfInvisibleText => "invisible text in a PDF",
            PdfOcrLayer => {
                "invisible text in a PDF with images (kept: it may be a scan's OCR layer)"
            }
            PdfNotExamined => "part of the PDF not examined",
        }
    }

    /// Whether content of this kind is removed (else only reported).
    pub fn removed(self) -> bool {
        !matches!(
            self,
            Technique::BidiInRtl | Technique::PdfOcrLayer | Technique::PdfNotExamined
        )
    }
}

/// One hidden item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hidden {
    pub technique: Technique,
    /// Byte range in the input (Office documents: start and end are the index of the ZIP
    /// entry the item was in).
    pub start: usize,
    pub end: usize,
    /// Adjacent items of one kind are merged: how many.
    pub count: usize,
    /// What was hidden, as text where it decodes to text (tag characters and variation
    /// selectors decoded, comments and hidden elements as their text), at most 400 bytes.
    pub revealed: String,
    /// 1: found in the input (offsets are the input's). 2 and up: found in what an earlier
    /// pass left, when a removal put a hiding construct together (offsets are that text's).
    pub pass: u8,
}

impl Hidden {
    pub(crate) fn new(
        technique: Technique,
        start: usize,
        end: usize,
        mut revealed: String,
    ) -> Hidden {
        truncate(&mut revealed);
        Hidden {
            technique,
            start,
            end,
            count: 1,
            revealed,
            pass: 1,
        }
    }
}

pub(crate) fn truncate(s: &mut String) {
    if s.len() > REVEAL_MAX {
        let mut cut = REVEAL_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// What a file is, for the sanitizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Svg,
    Jpeg,
    Png,
    Docx,
    Xlsx,
    Pptx,
    Pdf,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Text,
        Format::Markdown,
        Format::Html,
        Format::Svg,
        Format::Jpeg,
        Format::Png,
        Format::Docx,
        Format::Xlsx,
        Format::Pptx,
        Format::Pdf,
    ];

    /// The lower-case name (as in JSON and on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Svg => "svg",
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Docx => "docx",
            Format::Xlsx => "xlsx",
            Format::Pptx => "pptx",
            Format::Pdf => "pdf",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
    /// Images and Office documents: cleaned in one pass, offsets are not text offsets.
    pub fn binary(self) -> bool {
        matches!(
            self,
            Format::Jpeg | Format::Png | Format::Docx | Format::Xlsx | Format::Pptx | Format::Pdf
        )
    }

    /// From the file name and its first bytes. `Err` names what it is when it is a format
    /// the sanitizer does not handle.
    pub fn detect(name: &str, head: &[u8]) -> Result<Format, SanitizeError> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Ok(Format::Png);
        }
        if head.starts_with(&[0xff, 0xd8, 0xff]) {
            return Ok(Format::Jpeg);
        }
        if head.starts_with(b"%PDF-") {
            return Ok(Format::Pdf);
        }
        if head.starts_with(b"PK\x03\x04") {
            return match ext {
                "docx" | "docm" | "dotx" => Ok(Format::Docx),
                "xlsx" | "xlsm" | "xltx" => Ok(Format::Xlsx),
                "pptx" | "pptm" | "potx" => Ok(Format::Pptx),
                _ => Err(SanitizeError::Unsupported("ZIP archive".into())),
            };
        }
        let binary = head.iter().take(8192).any(|&b| b == 0);
        match ext {
            "md" | "markdown" | "mdx" => Ok(Format::Markdown),
            "html" | "htm" | "xhtml" => Ok(Format::Html),
            "svg" => Ok(Format::Svg),
            _ if binary => Err(SanitizeError::Unsupported("binary file".into())),
            _ => {
                let t = head.trim_ascii_start();
                if t.len() >= 5
                    && (t[..5].eq_ignore_ascii_case(b"<!doc")
                        || t[..5].eq_ignore_ascii_case(b"<html"))
                {
                    Ok(Format::Html)
                } else if t.starts_with(b"<svg")
                    || (t.starts_with(b"<?xml") && head.windows(4).take(1024).any(|w| w == b"<svg"))
                {
                    Ok(Format::Svg)
                } else {
                    Ok(Format::Text)
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    #[error("cannot sanitize a {0} yet (text, Markdown, HTML, SVG, JPEG, PNG, DOCX, XLSX, PPTX and PDF are handled); do not hand it to the model unexamined")]
    Unsupported(String),
    #[error("malformed {format}: {message}")]
    Malformed {
        format: &'static str,
        message: String,
    },
}

/// The result: the cleaned bytes and what was found. ([`injection::score`] rates the output
/// and the hidden items for instruction-like content, separately: it is advice, and it is
/// not free.)
#[derive(Debug, Clone, Serialize)]
pub struct Sanitized {
    pub format: Format,
    #[serde(skip)]
    pub output: Vec<u8>,
    pub hidden: Vec<Hidden>,
}

impl Sanitized {
    /// Whether anything was removed (the output differs from the input).
    pub fn changed(&self) -> bool {
        self.hidden.iter().any(|h| h.technique.removed())
    }
}

/// Passes before nested hiding is refused.
const MAX_PASSES: u8 = 8;

/// Clean `input` of the given format. The result is a fixed point: removing one thing can put
/// another together (`<!<span hidden>x</span>-- hi -->` becomes a comment), so text formats
/// are cleaned again until a pass removes nothing; past 8 passes the input is refused.
pub fn sanitize(input: &[u8], format: Format) -> Result<Sanitized, SanitizeError> {
    let mut s = one_pass(input, format)?;
    if format.binary() {
        return Ok(s);
    }
    let mut pass = 1;
    while s.changed() {
        let next = one_pass(&s.output, format)?;
        if !next.changed() {
            s.hidden.extend(next.hidden.into_iter().map(|mut h| {
                h.pass = pass + 1;
                h
            }));
            break;
        }
        pass += 1;
        if pass >= MAX_PASSES {
            return Err(SanitizeError::Malformed {
                format: "text",
                message: format!("hiding constructs nested more than {MAX_PASSES} deep"),
            });
        }
        s.output = next.output;
        s.hidden.extend(next.hidden.into_iter().map(|mut h| {
            h.pass = pass;
            h
        }));
    }
    Ok(s)
}

fn one_pass(input: &[u8], format: Format) -> Result<Sanitized, SanitizeError> {
    let mut out = Vec::with_capacity(input.len());
    let mut hidden = Vec::new();
    match format {
        Format::Text => text::clean(input, 0, &mut out, &mut hidden),
        Format::Markdown => markup::clean(input, markup::Dialect::Markdown, &mut out, &mut hidden)?,
        Format::Html => markup::clean(input, markup::Dialect::Html, &mut out, &mut hidden)?,
        Format::Svg => markup::clean(input, markup::Dialect::Svg, &mut out, &mut hidden)?,
        Format::Jpeg => image::jpeg(input, &mut out, &mut hidden)?,
        Format::Png => image::png(input, &mut out, &mut hidden)?,
        Format::Docx => office::clean(input, office::Office::Docx, &mut out, &mut hidden)?,
        Format::Xlsx => office::clean(input, office::Office::Xlsx, &mut out, &mut hidden)?,
        Format::Pptx => office::clean(input, office::Office::Pptx, &mut out, &mut hidden)?,
        Format::Pdf => pdf::clean(input, &mut out, &mut hidden)?,
    }
    hidden.sort_by_key(|h| (h.start, h.end));
    Ok(Sanitized {
        format,
        output: out,
        hidden,
    })
}
