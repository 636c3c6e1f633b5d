//! Office documents (DOCX, XLSX, PPTX): hidden text and metadata in the ZIP's XML parts.
//!
//! Removed: Word runs marked hidden (`w:vanish`, `w:specVanish`), in white without shading,
//! or at 1 pt and under; tracked deletions; comment text (Word, Excel, PowerPoint);
//! PowerPoint speaker notes and the text of hidden slides; document properties (title,
//! subject, description, keywords, authors, company, custom properties); the cells of hidden
//! and very hidden worksheets, the shared strings only they use (emptied in place, so the
//! indexes visible cells use stay right) and their names. Everything else is copied
//! entry by entry as it was (compressed bytes untouched); a document with nothing found comes
//! back byte-identical. Archives are bounded (entries, sizes) against ZIP bombs.

use super::{Hidden, SanitizeError, Technique};
use std::io::{Cursor, Read, Write};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Office {
    Docx,
    Xlsx,
    Pptx,
}

const MAX_ENTRIES: usize = 10_000;
const MAX_PART: u64 = 64 << 20;
const MAX_TOTAL: u64 = 512 << 20;

fn bad(message: impl Into<String>) -> SanitizeError {
    SanitizeError::Malformed {
        format: "Office document",
        message: message.into(),
    }
}

pub(crate) fn clean(
    input: &[u8],
    kind: Office,
    out: &mut Vec<u8>,
    found: &mut Vec<Hidden>,
) -> Result<(), SanitizeError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(input)).map_err(|e| bad(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!("more than {MAX_ENTRIES} entries")));
    }
    // Two entries with one name (ignoring case): readers disagree on which one counts, so
    // one could hide behind the other.
    // Entry names by index, as written and lower-case.
    let mut written = Vec::with_capacity(zip.len());
    let mut names = Vec::with_capacity(zip.len());
    let mut seen = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        let name = entry.name().map_err(|e| bad(e.to_string()))?.to_string();
        let lower = name.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(bad(format!("two entries named {lower}")));
        }
        written.push(name);
        names.push(lower);
    }
    let sheets = if kind == Office::Xlsx {
        hidden_sheets(&mut zip, &names, found)?
    } else {
        Sheets::default()
    };
    let mut total = 0u64;
    let mut changed: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, name) in written.iter().enumerate() {
        let name = name.as_str();
        let replaced = sheets.replacement(name);
        let Some(handler) = handler(kind, name) else {
            if let Some(new) = replaced {
                changed.push((i, new.into_bytes()));
            }
            continue;
        };
        if let Some(text) = replaced {
            // Changed for a hidden sheet (its name in docProps/app.xml) and handled as well.
            let new = handler(&text, name, found);
            changed.push((i, new.into_bytes()));
            continue;
        }
        let text = read_entry(&mut zip, i, name, &mut total)?;
        let before = found.len();
        let new = handler(&text, name, found);
        // Offsets inside a compressed part mean little: report the entry's index instead.
        for h in &mut found[before..] {
            h.start = i;
            h.end = i;
        }
        if new != text {
            changed.push((i, new.into_bytes()));
        }
    }
    if changed.is_empty() {
        out.extend_from_slice(input);
        return Ok(());
    }
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(input.len())));
    for i in 0..zip.len() {
        if let Some((_, data)) = changed.iter().find(|(k, _)| *k == i) {
            let entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(entry.compression())
                .last_modified_time(entry.last_modified().unwrap_or_default());
            let name = entry.name().map_err(|e| bad(e.to_string()))?.to_string();
            drop(entry);
            w.start_file(name, options)
                .map_err(|e| bad(e.to_string()))?;
            w.write_all(data).map_err(|e| bad(e.to_string()))?;
        } else {
            let entry = zip.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
            w.raw_copy_file(entry).map_err(|e| bad(e.to_string()))?;
        }
    }
    let done = w.finish().map_err(|e| bad(e.to_string()))?;
    out.extend_from_slice(done.get_ref());
    Ok(())
}

type Handler = fn(&str, &str, &mut Vec<Hidden>) -> String;

fn handler(kind: Office, name: &str) -> Option<Handler> {
    // Part names are case-insensitive in OPC.
    let lower = name.to_ascii_lowercase();
    let name = lower.as_str();
    let in_dir = |dir: &str| name.starts_with(&dir.to_ascii_lowercase()) && name.ends_with(".xml");
    if name == "docprops/core.xml" || name == "docprops/app.xml" {
        return Some(properties);
    }
    if name == "docprops/custom.xml" {
        return Some(custom_properties);
    }
    match kind {
        Office::Docx if name == "word/comments.xml" || in_dir("word/comments") => {
            Some(|x, _, f| blank(x, "w:t", Technique::OfficeComment, f))
        }
        Office::Docx
            if name == "word/document.xml"
                || in_dir("word/header")
                || in_dir("word/footer")
                || name == "word/footnotes.xml"
                || name == "word/endnotes.xml" =>
        {
            Some(word_body)
        }
        Office::Xlsx if in_dir("xl/comments") || in_dir("xl/threadedComments/") => {
            Some(|x, _, f| {
                let x = blank(x, "t", Technique::OfficeComment, f);
                blank(&x, "text", Technique::OfficeComment, f)
            })
        }

        Office::Pptx if in_dir("ppt/notesSlides/") => {
            Some(|x, _, f| blank(x, "a:t", Technique::SpeakerNotes, f))
        }
        Office::Pptx if in_dir("ppt/comments/") => Some(|x, _, f| {
            let x = blank(x, "p:text", Technique::OfficeComment, f);
            blank(&x, "a:t", Technique::OfficeComment, f)
        }),
        Office::Pptx if in_dir("ppt/slides/slide") => Some(hidden_slide),
        _ => None,
    }
}

/// The position of `<tag>` or `<tag ...>` (not `<tagX`) at or after `from`.
fn open_tag(xml: &str, tag: &str, from: usize) -> Option<usize> {
    let needle = format!("<{tag}");
    let mut j = from;
    while let Some(p) = xml.get(j..)?.find(&needle) {
        let at = j + p;
        match xml.as_bytes().get(at + needle.len()) {
            Some(b'>' | b' ' | b'/' | b'\t' | b'\r' | b'\n') => return Some(at),
            _ => j = at + needle.len(),
        }
    }
    None
}

/// Just past the `>` ending the tag that opens at `at` (a `>` inside quotes does not end
/// it), or the end of `xml`.
fn tag_end(xml: &str, at: usize) -> usize {
    let b = xml.as_bytes();
    let mut quote = 0u8;
    for (j, &c) in b.iter().enumerate().skip(at) {
        match c {
            b'"' | b'\'' if quote == 0 => quote = c,
            c if c == quote => quote = 0,
            b'>' if quote == 0 => return j + 1,
            _ => {}
        }
    }
    xml.len()
}

/// The element opening at `at`: (just past its start tag, start of its end tag, just past
/// its end tag). Nested elements of the same name are counted; an element that is never
/// closed runs to the end of the part. Every index is on a character boundary.
fn element(xml: &str, tag: &str, at: usize) -> (usize, usize, usize) {
    let gt = tag_end(xml, at);
    if xml[..gt].ends_with("/>") {
        return (gt, gt, gt);
    }
    let close = format!("</{tag}");
    let close_at = |from: usize| {
        let mut k = from;
        while let Some(p) = xml[k..].find(&close) {
            let c = k + p;
            match xml.as_bytes().get(c + close.len()) {
                Some(b'>' | b' ' | b'\t' | b'\r' | b'\n') | None => return Some(c),
                _ => k = c + close.len(),
            }
        }
        None
    };
    let mut depth = 1usize;
    let mut j = gt;
    loop {
        let next_open = open_tag(xml, tag, j);
        let next_close = close_at(j);
        match (next_open, next_close) {
            (Some(o), Some(c)) if o < c => {
                let o_gt = tag_end(xml, o);
                if !xml[..o_gt].ends_with("/>") {
                    depth += 1;
                }
                j = o_gt;
            }
            (_, Some(c)) => {
                let c_end = xml[c..].find('>').map_or(xml.len(), |p| c + p + 1);
                depth -= 1;
                if depth == 0 {
                    return (gt, c, c_end);
                }
                j = c_end;
            }
            _ => return (gt, xml.len(), xml.len()),
        }
        if j >= xml.len() {
            return (gt, xml.len(), xml.len());
        }
    }
}

/// The text content of every `<tag>` in `xml`, joined.
fn texts(xml: &str, tag: &str) -> String {
    let mut out = String::new();
    let mut j = 0;
    while let Some(at) = open_tag(xml, tag, j) {
        let (gt, inner_end, end) = element(xml, tag, at);
        if gt < inner_end {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&unescape(&xml[gt..inner_end]));
        }
        if out.len() > super::REVEAL_MAX {
            break;
        }
        j = end.max(at + 1);
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Empty the text of every `<tag>`, reporting what it said.
fn blank(xml: &str, tag: &str, technique: Technique, found: &mut Vec<Hidden>) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut said = String::new();
    let mut j = 0;
    while let Some(at) = open_tag(xml, tag, j) {
        let (gt, inner_end, end) = element(xml, tag, at);
        if gt < inner_end && said.len() < super::REVEAL_MAX {
            if !said.is_empty() {
                said.push(' ');
            }
            said.push_str(&unescape(&xml[gt..inner_end]));
        }
        out.push_str(&xml[j..gt]);
        out.push_str(&xml[inner_end..end]);
        j = end.max(gt);
    }
    out.push_str(&xml[j..]);
    if !said.trim().is_empty() {
        found.push(Hidden::new(technique, 0, 0, said));
    }
    out
}

/// Remove every `<tag>` element for which `hidden(element)` says so; report its text.
fn remove_where(
    xml: &str,
    tag: &str,
    text_tags: &[&str],
    technique: Technique,
    found: &mut Vec<Hidden>,
    hidden: impl Fn(&str) -> bool,
) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut said = String::new();
    let mut j = 0;
    while let Some(at) = open_tag(xml, tag, j) {
        let (_, _, end) = element(xml, tag, at);
        let element = &xml[at..end];
        out.push_str(&xml[j..at]);
        if hidden(element) {
            for t in text_tags {
                let s = texts(element, t);
                if !s.is_empty() && said.len() < super::REVEAL_MAX {
                    if !said.is_empty() {
                        said.push(' ');
                    }
                    said.push_str(&s);
                }
            }
            j = end;
        } else {
            // Keep the start tag and look inside: a visible run can hold a text box whose
            // runs are hidden.
            let gt = xml[at..].find('>').map_or(xml.len(), |p| at + p + 1);
            out.push_str(&xml[at..gt]);
            j = gt;
        }
        if j <= at {
            j = at + 1;
        }
    }
    out.push_str(&xml[j..]);
    if !said.trim().is_empty() {
        found.push(Hidden::new(technique, 0, 0, said));
    }
    out
}

/// `w:val` of an element `<name .../>` inside `xml`, if present.
fn val<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let at = open_tag(xml, name, 0)?;
    let tag_end = xml[at..].find('>').map_or(xml.len(), |p| at + p);
    let t = &xml[at..tag_end];
    let v = t.find("w:val=")? + 7;
    let q = t
        .as_bytes()
        .get(v - 1)
        .copied()
        .filter(|&c| c == b'"' || c == b'\'')? as char;
    t[v..].find(q).map(|e| &t[v..v + e])
}

fn on(v: Option<&str>, present: bool) -> bool {
    present && !matches!(v, Some("0" | "false" | "off"))
}

/// Word runs that do not show: hidden, white on no or white shading, or 1 pt and under.
/// Only the run's own properties count (its first child), not those of runs nested in it.
fn word_run_hidden(run: &str) -> bool {
    let gt = run.find('>').map_or(run.len(), |p| p + 1);
    let rest = run[gt..].trim_start();
    if !rest.starts_with("<w:rPr") {
        return false;
    }
    let p = run.len() - rest.len();
    let (_, _, end) = element(run, "w:rPr", p);
    let props = &run[p..end];
    let vanish = on(
        val(props, "w:vanish"),
        open_tag(props, "w:vanish", 0).is_some(),
    ) || on(
        val(props, "w:specVanish"),
        open_tag(props, "w:specVanish", 0).is_some(),
    );
    let white = |v: Option<&str>| v.is_some_and(|c| c.eq_ignore_ascii_case("FFFFFF"));
    let shaded = open_tag(props, "w:shd", 0).is_some()
        && !props
            .find("w:fill=")
            .is_some_and(|p| props[p + 8..].to_ascii_uppercase().starts_with("FFFFFF"));
    let highlighted = val(props, "w:highlight").is_some_and(|h| h != "white" && h != "none");
    let white_text = white(val(props, "w:color")) && !shaded && !highlighted;
    let tiny = val(props, "w:sz")
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|half_points| half_points <= 2);
    vanish || white_text || tiny
}

fn word_body(xml: &str, _: &str, found: &mut Vec<Hidden>) -> String {
    let xml = remove_where(
        xml,
        "w:r",
        &["w:t"],
        Technique::OfficeHidden,
        found,
        word_run_hidden,
    );
    remove_where(
        &xml,
        "w:del",
        &["w:delText"],
        Technique::TrackedDeletion,
        found,
        |_| true,
    )
}

/// Document properties: the values are emptied.
fn properties(xml: &str, name: &str, found: &mut Vec<Hidden>) -> String {
    let tags: &[&str] = if name.ends_with("core.xml") {
        &[
            "dc:title",
            "dc:subject",
            "dc:description",
            "cp:keywords",
            "dc:creator",
            "cp:lastModifiedBy",
            "cp:category",
            "cp:contentStatus",
        ]
    } else {
        &["Company", "Manager", "HyperlinkBase"]
    };
    let mut x = xml.to_string();
    for t in tags {
        x = blank(&x, t, Technique::DocumentProperties, found);
    }
    x
}

fn custom_properties(xml: &str, _: &str, found: &mut Vec<Hidden>) -> String {
    remove_where(
        xml,
        "property",
        &[
            "vt:lpwstr",
            "vt:lpstr",
            "vt:bstr",
            "vt:i4",
            "vt:bool",
            "vt:filetime",
        ],
        Technique::DocumentProperties,
        found,
        |_| true,
    )
}

/// A slide marked `show="0"`: its text is emptied.
fn hidden_slide(xml: &str, _: &str, found: &mut Vec<Hidden>) -> String {
    let Some(at) = open_tag(xml, "p:sld", 0) else {
        return xml.to_string();
    };
    let tag_end = xml[at..].find('>').map_or(xml.len(), |p| at + p);
    let t = &xml[at..tag_end];
    let hidden = ["show=\"0\"", "show='0'", "show=\"false\"", "show='false'"]
        .iter()
        .any(|v| t.contains(v));
    if !hidden {
        return xml.to_string();
    }
    blank(xml, "a:t", Technique::HiddenSlide, found)
}

/// What cleaning a workbook's hidden worksheets changes: whole new contents, by lower-case
/// part name (the workbook with the sheets renamed, the hidden sheets without cells, the
/// shared strings with the hidden sheets' own strings emptied).
#[derive(Default)]
struct Sheets {
    parts: Vec<(String, String)>,
}

impl Sheets {
    fn replacement(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        self.parts
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, x)| x.clone())
    }
}

/// Read a part by its case-insensitive name (bounded like the others), if the archive has it.
fn read_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    lower: &str,
    budget: &mut u64,
) -> Result<Option<String>, SanitizeError> {
    match names.iter().position(|n| n == lower) {
        Some(i) => read_entry(zip, i, lower, budget).map(Some),
        None => Ok(None),
    }
}

/// Entry `i` (called `name` in errors) as text, at most [`MAX_PART`] bytes, counted against
/// `budget` ([`MAX_TOTAL`] in all).
fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    i: usize,
    name: &str,
    budget: &mut u64,
) -> Result<String, SanitizeError> {
    let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
    let mut xml = Vec::new();
    (&mut entry)
        .take(MAX_PART + 1)
        .read_to_end(&mut xml)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    if xml.len() as u64 > MAX_PART {
        return Err(bad(format!("{name} is larger than {} MiB", MAX_PART >> 20)));
    }
    *budget += xml.len() as u64;
    if *budget > MAX_TOTAL {
        return Err(bad(format!("more than {} MiB of XML", MAX_TOTAL >> 20)));
    }
    Ok(String::from_utf8_lossy(&xml).into_owned())
}

/// The start tags in `xml` whose local name is `local`, whatever their prefix: (where the
/// tag starts, just past its `>`, its qualified name). Quotes are honoured when looking for
/// the tag's end (`>` may appear in an attribute value).
fn start_tags<'a>(xml: &'a str, local: &str) -> Vec<(usize, usize, &'a str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = xml[i..].find('<') {
        let at = i + p;
        let name_end = xml[at + 1..]
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .map_or(xml.len(), |q| at + 1 + q);
        let qname = &xml[at + 1..name_end];
        let gt = tag_end(xml, name_end);
        if qname == local || qname.rsplit_once(':').is_some_and(|(_, l)| l == local) {
            out.push((at, gt, qname));
        }
        i = gt.max(at + 1);
    }
    out
}

/// Parts this follows for hidden sheets must be plain: no comments, CDATA, processing
/// instructions past the declaration or DTDs (each could hide an element from this reader
/// or shift a count), no character references in tags, and UTF-8.
fn plain_xml(name: &str, xml: &str) -> Result<(), SanitizeError> {
    let body = match xml.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or("", |p| &rest[p + 2..]),
        None => xml.trim_start_matches('\u{feff}'),
    };
    if body.contains("<!") || body.contains("<?") || xml.contains('\0') || xml.contains('\u{FFFD}')
    {
        return Err(bad(format!(
            "{name}: comments, CDATA, processing instructions or non-UTF-8 text next to a hidden sheet"
        )));
    }
    Ok(())
}

/// The attributes of a start tag: (name, where its value is). Values in either quotes.
fn tag_attrs(tag: &str) -> Vec<(&str, usize, usize)> {
    let b = tag.as_bytes();
    let mut out = Vec::new();
    let mut i = tag
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] == b'>' || b[i] == b'/' {
            return out;
        }
        let n0 = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'>' {
            i += 1;
        }
        let name = &tag[n0..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let Some(&q) = b.get(i).filter(|&&q| q == b'"' || q == b'\'') else {
            return out;
        };
        let v0 = i + 1;
        let v1 = tag[v0..].find(q as char).map_or(tag.len(), |e| v0 + e);
        out.push((name, v0, v1));
        i = v1 + 1;
    }
}

/// The value of the unprefixed attribute `name`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    attr_span(tag, name).map(|(s, e)| &tag[s..e])
}

fn attr_span(tag: &str, name: &str) -> Option<(usize, usize)> {
    tag_attrs(tag)
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, s, e)| (s, e))
}

/// The relationship id of a `<sheet>`: the attribute `id` with a prefix (the relationships
/// namespace, whatever it is called). Two of them: refused by the caller (None).
fn sheet_rel_id(tag: &str) -> Option<&str> {
    let ids: Vec<_> = tag_attrs(tag)
        .into_iter()
        .filter(|(n, _, _)| n.rsplit_once(':').is_some_and(|(_, l)| l == "id"))
        .collect();
    match ids.as_slice() {
        [(_, s, e)] => Some(&tag[*s..*e]),
        _ => None,
    }
}

/// The text of every element of local name `local` in `xml`, each apart.
fn texts_of(xml: &str, local: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = 0;
    for (at, _, q) in start_tags(xml, local) {
        if at < last {
            continue;
        }
        let (gt, inner_end, end) = element(xml, q, at);
        out.push(unescape(&xml[gt..inner_end.max(gt)]));
        last = end;
    }
    out
}

/// Shared-string indexes the cells of a worksheet use, and its text (strings resolved).
fn sheet_cells(xml: &str, shared: &[String]) -> (Vec<usize>, String) {
    let mut used = Vec::new();
    let mut text = String::new();
    let mut last = 0;
    for (at, gt, q) in start_tags(xml, "c") {
        if at < last {
            continue;
        }
        let (_, inner_end, end) = element(xml, q, at);
        last = end;
        let tag = &xml[at..gt];
        let inner = &xml[gt..inner_end.max(gt)];
        let said = match attr(tag, "t") {
            Some("s") => {
                let v = texts_of(inner, "v").join("");
                match v.trim().parse::<usize>() {
                    Ok(n) => {
                        used.push(n);
                        shared.get(n).cloned().unwrap_or_default()
                    }
                    Err(_) => String::new(),
                }
            }
            Some("inlineStr") => texts_of(inner, "t").join(""),
            _ => texts_of(inner, "v").join(""),
        };
        if !said.is_empty() && text.len() < super::REVEAL_MAX {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&said);
        }
    }
    (used, text)
}

/// A relationship part's targets: Id -> (Type, the part's lower-case name in the archive),
/// targets resolved against `dir` (the folder of the part the relationships belong to).
fn relationships(rels: &str, dir: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (at, gt, _) in start_tags(rels, "Relationship") {
        let t = &rels[at..gt];
        if attr(t, "TargetMode").is_some_and(|m| m.eq_ignore_ascii_case("External")) {
            continue;
        }
        let (Some(id), Some(to)) = (attr(t, "Id"), attr(t, "Target")) else {
            continue;
        };
        let mut parts: Vec<&str> = match to.strip_prefix('/') {
            Some(_) => Vec::new(),
            None => dir.split('/').filter(|p| !p.is_empty()).collect(),
        };
        for seg in to.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        out.push((
            id.to_string(),
            attr(t, "Type").unwrap_or("").to_string(),
            parts.join("/").to_ascii_lowercase(),
        ));
    }
    out
}

/// Replace the sheet reference `old` (`Name!` or `'Name'!`) with `new` where it starts a
/// reference: not right after a character that would make it part of a longer name.
fn replace_ref(x: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut copied = 0;
    for (p, _) in x.match_indices(old) {
        if p < copied {
            continue;
        }
        let before = x[..p].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '\'')) {
            continue;
        }
        out.push_str(&x[copied..p]);
        out.push_str(new);
        copied = p + old.len();
    }
    out.push_str(&x[copied..]);
    out
}

fn folder_of(part: &str) -> &str {
    part.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Hidden and very hidden worksheets: cells (and header/footer text) removed, names replaced
/// (in the workbook and in docProps/app.xml), their own shared strings emptied in place;
/// reported with their name and text. Whatever this cannot follow (a hidden sheet whose part
/// is not found, shared strings it cannot count, cells left behind) makes the workbook
/// refused rather than passed as clean.
fn hidden_sheets(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    found: &mut Vec<Hidden>,
) -> Result<Sheets, SanitizeError> {
    let mut budget = 0u64;
    // The workbook: where the package's relationships say, else its usual place.
    let root = read_part(zip, names, "_rels/.rels", &mut budget)?.unwrap_or_default();
    let wb_name = relationships(&root, "")
        .into_iter()
        .find(|(_, ty, _)| ty.ends_with("/officeDocument"))
        .map_or_else(|| "xl/workbook.xml".to_string(), |(_, _, t)| t);
    let Some(wb) = read_part(zip, names, &wb_name, &mut budget)? else {
        return Ok(Sheets::default());
    };
    // Every sheet: (name as written, relationship id, hidden); the workbook with the hidden
    // ones renamed.
    let mut sheets: Vec<(String, String, bool)> = Vec::new();
    let mut new_wb = String::with_capacity(wb.len());
    let mut copied = 0;
    let mut n_hidden = 0;
    for (at, gt, _) in start_tags(&wb, "sheet") {
        let t = &wb[at..gt];
        if t.contains("&#") {
            return Err(bad(format!(
                "{wb_name}: character references in a sheet's tag"
            )));
        }
        let hidden = matches!(attr(t, "state"), Some("hidden" | "veryHidden"));
        let name = attr(t, "name").unwrap_or("").to_string();
        if hidden {
            n_hidden += 1;
            // The name a person would see on unhiding it: it can carry text as well.
            if let Some((vs, ve)) = attr_span(t, "name") {
                new_wb.push_str(&wb[copied..at + vs]);
                new_wb.push_str(&format!("Hidden {n_hidden}"));
                copied = at + ve;
            }
        }
        sheets.push((name, sheet_rel_id(t).unwrap_or("").to_string(), hidden));
    }
    new_wb.push_str(&wb[copied..]);
    // Every "hidden" state in the workbook must be one this read: a state written another
    // way (a prefix, odd spacing) must not pass as "nothing hidden".
    let lower = wb.to_ascii_lowercase();
    let states = lower
        .match_indices("state")
        .filter(|(p, _)| {
            let rest = lower[p + 5..].trim_start();
            rest.strip_prefix('=').is_some_and(|r| {
                let r = r.trim_start().trim_start_matches(['"', '\'']);
                r.starts_with("hidden") || r.starts_with("veryhidden")
            })
        })
        .count();
    if states > n_hidden {
        return Err(bad(format!(
            "{wb_name} marks something hidden in a way this cannot read"
        )));
    }
    if n_hidden == 0 {
        return Ok(Sheets::default());
    }
    plain_xml(&wb_name, &wb)?;
    let dir = folder_of(&wb_name).to_string();
    let (wb_dir, wb_file) = wb_name.rsplit_once('/').unwrap_or(("", &wb_name));
    let rels_name = if wb_dir.is_empty() {
        format!("_rels/{wb_file}.rels")
    } else {
        format!("{wb_dir}/_rels/{wb_file}.rels")
    };
    let rels = read_part(zip, names, &rels_name, &mut budget)?.unwrap_or_default();
    plain_xml(&rels_name, &rels)?;
    let rels = relationships(&rels, &dir);
    let part_of = |id: &str| {
        rels.iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, ty, t)| (ty.clone(), t.clone()))
    };
    let shared_name = rels
        .iter()
        .find(|(_, ty, _)| ty.ends_with("/sharedStrings"))
        .map(|(_, _, t)| t.clone());
    let shared_xml = match &shared_name {
        Some(n) => read_part(zip, names, n, &mut budget)?,
        None => None,
    };
    let mut shared: Vec<String> = Vec::new();
    let mut si: Vec<(usize, usize, String)> = Vec::new();
    if let (Some(x), Some(n)) = (&shared_xml, &shared_name) {
        // A comment or the like could shift the count of strings: the wrong ones would go.
        plain_xml(n, x)?;
        let mut last = 0;
        for (at, _, q) in start_tags(x, "si") {
            if at < last {
                continue;
            }
            let (gt, inner_end, end) = element(x, q, at);
            shared.push(texts_of(&x[gt..inner_end.max(gt)], "t").join(""));
            si.push((at, end, q.to_string()));
            last = end;
        }
    }
    // Every sheet's cells: which shared strings the visible ones use, what the hidden say.
    let mut visible_used = std::collections::HashSet::new();
    let mut hidden_used = std::collections::HashSet::new();
    let mut out = Sheets::default();
    let mut said: Vec<(String, String)> = Vec::new();
    // Formula references to a hidden sheet by its old name ('Old name'!A1, Old!A1), in the
    // workbook's defined names and in every sheet, take the new one.
    let renames: Vec<(Vec<String>, String)> = sheets
        .iter()
        .filter(|(_, _, h)| *h)
        .enumerate()
        .filter(|(_, (n, _, _))| !n.is_empty())
        .map(|(k, (n, _, _))| {
            let plain = unescape(n);
            let xml_text = plain
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let quoted = format!("'{}'!", xml_text.replace('\'', "''"));
            (
                vec![quoted, format!("{xml_text}!")],
                format!("'Hidden {}'!", k + 1),
            )
        })
        .collect();
    let rename = |x: &str| {
        let mut x = x.to_string();
        for (olds, new) in &renames {
            for old in olds {
                x = replace_ref(&x, old, new);
            }
        }
        x
    };
    let new_wb = rename(&new_wb);
    for (name, id, hidden) in &sheets {
        let part = part_of(id);
        let xml = match &part {
            Some((_, p)) => read_part(zip, names, p, &mut budget)?,
            None => None,
        };
        let (Some((ty, part)), Some(xml)) = (part, xml) else {
            return Err(bad(format!(
                "sheet {:?} is not a part this can follow (relationship {id:?})",
                unescape(name)
            )));
        };
        let (used, text) = sheet_cells(&xml, &shared);
        if !*hidden {
            visible_used.extend(used);
            let renamed = rename(&xml);
            if renamed != xml {
                out.parts.push((part, renamed));
            }
            continue;
        }
        if !ty.ends_with("/worksheet") {
            // A chart sheet, a dialog or macro sheet: its text is elsewhere (charts, caches).
            return Err(bad(format!(
                "hidden sheet {:?} is not a worksheet this can clean ({ty})",
                unescape(name)
            )));
        }
        plain_xml(&part, &xml)?;
        hidden_used.extend(used);
        let xml = rename(&xml);
        // The cells go, and so do the header and footer texts.
        let mut new = String::with_capacity(xml.len());
        let mut copied = 0;
        let mut drops: Vec<(usize, usize, String)> = Vec::new();
        for local in ["sheetData", "headerFooter"] {
            for (at, _, q) in start_tags(&xml, local) {
                let (_, _, end) = element(&xml, q, at);
                let keep = if local == "sheetData" {
                    format!("<{q}/>")
                } else {
                    String::new()
                };
                drops.push((at, end, keep));
            }
        }
        drops.sort();
        for (at, end, keep) in drops {
            if at < copied {
                continue;
            }
            new.push_str(&xml[copied..at]);
            new.push_str(&keep);
            copied = end;
        }
        new.push_str(&xml[copied..]);
        if !start_tags(&new, "c").is_empty() {
            return Err(bad(format!(
                "hidden sheet {:?}: cells outside the sheet data this empties",
                unescape(name)
            )));
        }
        if new != xml {
            out.parts.push((part, new));
        }
        said.push((unescape(name), text));
    }
    if hidden_used.iter().any(|&n| n >= shared.len()) {
        return Err(bad(
            "a hidden sheet uses shared strings this cannot find (so cannot empty)",
        ));
    }
    // Shared strings only hidden sheets use: emptied where they are (indexes unchanged).
    if let (Some(x), Some(sn)) = (shared_xml, shared_name) {
        let mut new = String::with_capacity(x.len());
        let mut copied = 0;
        for (n, (at, end, q)) in si.iter().enumerate() {
            if hidden_used.contains(&n) && !visible_used.contains(&n) {
                new.push_str(&x[copied..*at]);
                let t = match q.rsplit_once(':') {
                    Some((p, _)) => format!("{p}:t"),
                    None => "t".to_string(),
                };
                new.push_str(&format!("<{q}><{t}></{t}></{q}>"));
                copied = *end;
            }
        }
        new.push_str(&x[copied..]);
        if new != x {
            out.parts.push((sn, new));
        }
    }
    // The old names in the document's list of parts (docProps/app.xml).
    if let Some(app) = read_part(zip, names, "docprops/app.xml", &mut budget)? {
        let mut new = app.clone();
        let mut k = 0;
        for (name, _, hidden) in &sheets {
            if !*hidden {
                continue;
            }
            k += 1;
            if name.is_empty() {
                continue;
            }
            // Compared as text: the attribute's escaping and the element's may differ.
            let plain = unescape(name);
            let mut out_app = String::with_capacity(new.len());
            let mut copied = 0;
            for (at, _, q) in start_tags(&new, "lpstr") {
                let (gt, inner_end, end) = element(&new, q, at);
                if at >= copied && unescape(&new[gt..inner_end.max(gt)]) == plain {
                    out_app.push_str(&new[copied..gt]);
                    out_app.push_str(&format!("Hidden {k}"));
                    out_app.push_str(&new[inner_end.max(gt)..end]);
                    copied = end;
                }
            }
            out_app.push_str(&new[copied..]);
            new = out_app;
        }
        if new != app {
            out.parts.push(("docprops/app.xml".into(), new));
        }
    }
    for (k, (name, text)) in said.into_iter().enumerate() {
        // An empty hidden sheet under the name this gives (a cleaned file) hides nothing.
        if text.is_empty() && name == format!("Hidden {}", k + 1) {
            continue;
        }
        let revealed = if text.is_empty() {
            name
        } else {
            format!("{name}: {text}")
        };
        found.push(Hidden::new(Technique::HiddenSheet, 0, 0, revealed));
    }
    if new_wb != wb {
        out.parts.push((wb_name, new_wb));
    }
    Ok(out)
}
