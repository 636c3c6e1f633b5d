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
    let mut names = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| bad(e.to_string()))?
            .to_ascii_lowercase();
        if !names.insert(name.clone()) {
            return Err(bad(format!("two entries named {name}")));
        }
    }
    let sheets = if kind == Office::Xlsx {
        hidden_sheets(&mut zip, found)?
    } else {
        Sheets::default()
    };
    let mut total = 0u64;
    let mut changed: Vec<(usize, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = entry.name().map_err(|e| bad(e.to_string()))?.to_string();
        if let Some(new) = sheets.replacement(&name) {
            changed.push((i, new.into_bytes()));
            continue;
        }
        let Some(handler) = handler(kind, &name) else {
            continue;
        };
        let mut xml = Vec::new();
        (&mut entry)
            .take(MAX_PART + 1)
            .read_to_end(&mut xml)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        if xml.len() as u64 > MAX_PART {
            return Err(bad(format!("{name} is larger than {} MiB", MAX_PART >> 20)));
        }
        total += xml.len() as u64;
        if total > MAX_TOTAL {
            return Err(bad(format!("more than {} MiB of XML", MAX_TOTAL >> 20)));
        }
        let text = String::from_utf8_lossy(&xml).into_owned();
        let before = found.len();
        let new = handler(&text, &name, found);
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

/// The element opening at `at`: (just past its start tag, start of its end tag, just past
/// its end tag). Nested elements of the same name are counted; an element that is never
/// closed runs to the end of the part. Every index is on a character boundary.
fn element(xml: &str, tag: &str, at: usize) -> (usize, usize, usize) {
    let gt = xml[at..].find('>').map_or(xml.len(), |p| at + p + 1);
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
                let o_gt = xml[o..].find('>').map_or(xml.len(), |p| o + p + 1);
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
    let Some(i) = names.iter().position(|n| n == lower) else {
        return Ok(None);
    };
    let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
    let mut xml = Vec::new();
    (&mut entry)
        .take(MAX_PART + 1)
        .read_to_end(&mut xml)
        .map_err(|e| bad(format!("{lower}: {e}")))?;
    if xml.len() as u64 > MAX_PART {
        return Err(bad(format!(
            "{lower} is larger than {} MiB",
            MAX_PART >> 20
        )));
    }
    *budget += xml.len() as u64;
    if *budget > MAX_TOTAL {
        return Err(bad(format!("more than {} MiB of XML", MAX_TOTAL >> 20)));
    }
    Ok(Some(String::from_utf8_lossy(&xml).into_owned()))
}

/// The value of attribute `name` in the start tag `tag`, quoted either way.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    attr_span(tag, name).map(|(s, e)| &tag[s..e])
}

/// Where the value of attribute `name` is in `tag` (inside the quotes).
fn attr_span(tag: &str, name: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(p) = tag[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        if !tag[..at].ends_with([' ', '\t', '\r', '\n']) {
            continue;
        }
        let after = &tag[from..];
        let Some(rest) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let start = tag.len() - rest.len() + 1;
        return tag[start..].find(q).map(|e| (start, start + e));
    }
    None
}

/// Shared-string indexes the cells of a worksheet use, and its text (strings resolved).
fn sheet_cells(xml: &str, shared: &[String]) -> (Vec<usize>, String) {
    let mut used = Vec::new();
    let mut text = String::new();
    let mut j = 0;
    while let Some(at) = open_tag(xml, "c", j) {
        let (gt, inner_end, end) = element(xml, "c", at);
        let tag = &xml[at..gt];
        let inner = &xml[gt..inner_end.max(gt)];
        let said = match attr(tag, "t") {
            Some("s") => {
                let v = texts(inner, "v");
                match v.trim().parse::<usize>() {
                    Ok(n) => {
                        used.push(n);
                        shared.get(n).cloned().unwrap_or_default()
                    }
                    Err(_) => String::new(),
                }
            }
            Some("inlineStr") => texts(inner, "t"),
            _ => texts(inner, "v"),
        };
        if !said.is_empty() && text.len() < super::REVEAL_MAX {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&said);
        }
        j = end.max(at + 1);
    }
    (used, text)
}

/// Hidden and very hidden worksheets: cells removed, names replaced, their own shared
/// strings emptied; reported with their name and text.
fn hidden_sheets(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    found: &mut Vec<Hidden>,
) -> Result<Sheets, SanitizeError> {
    let mut budget = 0u64;
    // Entry names, lower-case, by index.
    let mut names = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        names.push(
            entry
                .name()
                .map_err(|e| bad(e.to_string()))?
                .to_ascii_lowercase(),
        );
    }
    let Some(wb) = read_part(zip, &names, "xl/workbook.xml", &mut budget)? else {
        return Ok(Sheets::default());
    };
    // The hidden sheets' names and relationship ids; the workbook with their names replaced.
    let mut hidden: Vec<(String, Option<String>)> = Vec::new();
    let mut new_wb = String::with_capacity(wb.len());
    let mut j = 0;
    while let Some(at) = open_tag(&wb, "sheet", j) {
        let end = wb[at..].find('>').map_or(wb.len(), |p| at + p);
        let t = &wb[at..end];
        if matches!(attr(t, "state"), Some("hidden" | "veryHidden")) {
            let name = attr(t, "name").unwrap_or("");
            new_wb.push_str(&wb[j..at]);
            // The name a person would see on unhiding it: it can carry text as well.
            match attr_span(t, "name") {
                Some((vs, ve)) => {
                    new_wb.push_str(&t[..vs]);
                    new_wb.push_str(&format!("Hidden {}", hidden.len() + 1));
                    new_wb.push_str(&t[ve..]);
                }
                None => new_wb.push_str(t),
            }
            j = end;
            hidden.push((unescape(name), attr(t, "r:id").map(str::to_string)));
        } else {
            j = end.max(at + 1);
        }
    }
    new_wb.push_str(&wb[j..]);
    if hidden.is_empty() {
        return Ok(Sheets::default());
    }
    // Their parts, through the workbook's relationships.
    let rels =
        read_part(zip, &names, "xl/_rels/workbook.xml.rels", &mut budget)?.unwrap_or_default();
    let target = |id: &str| -> Option<String> {
        let mut k = 0;
        while let Some(at) = open_tag(&rels, "Relationship", k) {
            let end = rels[at..].find('>').map_or(rels.len(), |p| at + p);
            let t = &rels[at..end];
            if attr(t, "Id") == Some(id) {
                let to = attr(t, "Target")?;
                let path = match to.strip_prefix('/') {
                    Some(abs) => abs.to_string(),
                    None => format!("xl/{}", to.trim_start_matches("./")),
                };
                return Some(path.to_ascii_lowercase());
            }
            k = end.max(at + 1);
        }
        None
    };
    let hidden_parts: Vec<Option<String>> = hidden
        .iter()
        .map(|(_, id)| id.as_deref().and_then(target))
        .collect();
    let shared_xml = read_part(zip, &names, "xl/sharedstrings.xml", &mut budget)?;
    let mut shared: Vec<String> = Vec::new();
    if let Some(x) = &shared_xml {
        let mut k = 0;
        while let Some(at) = open_tag(x, "si", k) {
            let (gt, inner_end, end) = element(x, "si", at);
            shared.push(texts(&x[gt..inner_end.max(gt)], "t"));
            k = end.max(at + 1);
        }
    }
    // Every worksheet: which shared strings the visible ones use, what the hidden ones say.
    let sheet_names: Vec<String> = names
        .iter()
        .filter(|n| {
            n.starts_with("xl/worksheets/") && !n.contains("/_rels/") && n.ends_with(".xml")
        })
        .cloned()
        .collect();
    let mut visible_used = std::collections::HashSet::new();
    let mut hidden_used = std::collections::HashSet::new();
    let mut out = Sheets::default();
    let mut said: Vec<String> = vec![String::new(); hidden.len()];
    let mut seen = vec![false; hidden.len()];
    for name in sheet_names {
        let Some(xml) = read_part(zip, &names, &name, &mut budget)? else {
            continue;
        };
        let (used, text) = sheet_cells(&xml, &shared);
        match hidden_parts
            .iter()
            .position(|p| p.as_deref() == Some(&name))
        {
            Some(h) => {
                seen[h] = true;
                hidden_used.extend(used);
                said[h] = text;
                if let Some(at) = open_tag(&xml, "sheetData", 0) {
                    let (_, _, end) = element(&xml, "sheetData", at);
                    let emptied = format!("{}<sheetData/>{}", &xml[..at], &xml[end..]);
                    if emptied != xml {
                        out.parts.push((name, emptied));
                    }
                }
            }
            None => visible_used.extend(used),
        }
    }
    // Fail closed: a hidden sheet whose cells this cannot reach (a chart sheet, a part the
    // relationships do not name) must not pass as cleaned.
    if let Some(h) = seen.iter().position(|s| !s) {
        return Err(bad(format!(
            "hidden sheet {:?} is not a worksheet this can clean (part {})",
            hidden[h].0,
            hidden_parts[h]
                .as_deref()
                .unwrap_or("not named in xl/_rels/workbook.xml.rels")
        )));
    }
    // Shared strings only hidden sheets use: emptied where they are (indexes unchanged).
    if let Some(x) = shared_xml {
        let mut new = String::with_capacity(x.len());
        let (mut k, mut n) = (0, 0usize);
        while let Some(at) = open_tag(&x, "si", k) {
            let (_, _, end) = element(&x, "si", at);
            new.push_str(&x[k..at]);
            if hidden_used.contains(&n) && !visible_used.contains(&n) {
                new.push_str("<si><t></t></si>");
            } else {
                new.push_str(&x[at..end]);
            }
            k = end.max(at + 1);
            n += 1;
        }
        new.push_str(&x[k.min(x.len())..]);
        if new != x {
            out.parts.push(("xl/sharedstrings.xml".into(), new));
        }
    }
    for (k, ((name, _), text)) in hidden.iter().zip(said).enumerate() {
        // An empty hidden sheet under the name this gives (a cleaned file) hides nothing.
        if text.is_empty() && *name == format!("Hidden {}", k + 1) {
            continue;
        }
        let revealed = if text.is_empty() {
            name.clone()
        } else {
            format!("{name}: {text}")
        };
        found.push(Hidden::new(Technique::HiddenSheet, 0, 0, revealed));
    }
    if new_wb != wb {
        out.parts.push(("xl/workbook.xml".into(), new_wb));
    }
    Ok(out)
}
