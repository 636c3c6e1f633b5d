//! HTML, Markdown and SVG: comments, hidden and never-rendered elements.
//!
//! Not a full HTML parser: a tolerant tokenizer that finds comments and start tags, decides
//! from the tag's own attributes (inline style, `hidden`) and from simple class and id rules
//! in the document's `<style>` blocks whether an element is hidden, and then removes it up to
//! its matching end tag. What remains goes through the text sanitizer. Scripts and styles
//! are copied as they are (they are code, not hidden text).

use super::text;
use super::{truncate, Hidden, Technique};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Html,
    Markdown,
    Svg,
}

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

pub(crate) fn clean(input: &[u8], dialect: Dialect, out: &mut Vec<u8>, found: &mut Vec<Hidden>) {
    let css = HiddenSelectors::from_styles(input);
    let mut kept_from = 0;
    let mut i = 0;
    let cut = |from: usize,
               to: usize,
               kept_from: &mut usize,
               out: &mut Vec<u8>,
               found: &mut Vec<Hidden>| {
        text::clean(&input[*kept_from..from], *kept_from, out, found);
        *kept_from = to;
    };
    while i < input.len() {
        let b = input[i];
        if dialect == Dialect::Markdown && (i == 0 || input[i - 1] == b'\n') {
            // Fenced code is shown as it is, comments and tags included: skip it whole.
            if let Some(end) = fence(input, i) {
                i = end;
                continue;
            }
            if let Some(end) = markdown_comment(input, i) {
                let revealed = String::from_utf8_lossy(&input[i..end]).trim().to_string();
                cut(i, end, &mut kept_from, out, found);
                found.push(Hidden::new(Technique::MarkdownComment, i, end, revealed));
                i = end;
                continue;
            }
        }
        if b != b'<' {
            i += 1;
            continue;
        }
        let rest = &input[i..];
        if rest.starts_with(b"<!--") {
            let end = find(input, i + 4, b"-->").map_or(input.len(), |p| p + 3);
            let inner = &input[i + 4..end.saturating_sub(3).max(i + 4)];
            let revealed = String::from_utf8_lossy(inner).trim().to_string();
            cut(i, end, &mut kept_from, out, found);
            found.push(Hidden::new(Technique::HtmlComment, i, end, revealed));
            i = end;
            continue;
        }
        let Some(tag) = Tag::parse(input, i) else {
            i += 1;
            continue;
        };
        if tag.closing {
            i = tag.end;
            continue;
        }
        let name = tag.name.as_str();
        if !tag.self_closing && matches!(name, "script" | "style") && dialect != Dialect::Svg {
            let end = close_of(input, tag.end, name).map_or(input.len(), |(_, e)| e);
            i = end;
            continue;
        }
        let verdict = hidden(&tag, dialect, &css);
        if let Some(technique) = verdict {
            let end = if tag.self_closing || VOID.contains(&name) {
                tag.end
            } else {
                close_of(input, tag.end, name).map_or(input.len(), |(_, e)| e)
            };
            let mut revealed = visible_text(&input[tag.end..end.max(tag.end)]);
            if revealed.is_empty() {
                revealed = String::from_utf8_lossy(&input[i..tag.end]).into_owned();
            }
            cut(i, end, &mut kept_from, out, found);
            found.push(Hidden::new(technique, i, end, revealed));
            i = end;
            continue;
        }
        i = tag.end;
    }
    text::clean(&input[kept_from..], kept_from, out, found);
}

/// A fenced code block starting at line start `i`: the end of its closing fence line (or of
/// the input).
fn fence(input: &[u8], i: usize) -> Option<usize> {
    let line = &input[i..];
    let sp = line.iter().take_while(|&&b| b == b' ').count();
    if sp > 3 {
        return None;
    }
    let mark = *line.get(sp)?;
    if mark != b'`' && mark != b'~' {
        return None;
    }
    let n = line[sp..].iter().take_while(|&&b| b == mark).count();
    if n < 3 {
        return None;
    }
    let mut j = input[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| i + p + 1);
    while j < input.len() {
        let end = input[j..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| j + p + 1);
        let l = input[j..end].trim_ascii();
        if l.len() >= n && l.iter().all(|&b| b == mark) {
            return Some(end);
        }
        j = end;
    }
    Some(input.len())
}

/// `[//]: # (text)`, `[comment]: <> (text)` and the like: a link reference definition whose
/// target is `#` or `<>`, used as a comment because Markdown renders nothing for it.
fn markdown_comment(input: &[u8], i: usize) -> Option<usize> {
    let line_end = input[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| i + p);
    let line = &input[i..line_end];
    let t = {
        let sp = line.iter().take_while(|&&b| b == b' ').count();
        if sp > 3 {
            return None;
        }
        &line[sp..]
    };
    let t = t.strip_prefix(b"[")?;
    let close = t.iter().position(|&b| b == b']')?;
    let t = t[close + 1..].strip_prefix(b":")?.trim_ascii_start();
    let t = if let Some(r) = t.strip_prefix(b"<>") {
        r
    } else if let Some(r) = t.strip_prefix(b"#") {
        r
    } else {
        t.strip_prefix(b"//")?
    };
    let t = t.trim_ascii();
    let quoted = t.len() >= 2
        && matches!(
            (t[0], t[t.len() - 1]),
            (b'(', b')') | (b'"', b'"') | (b'\'', b'\'')
        );
    if !quoted && !t.is_empty() {
        return None;
    }
    Some((line_end + 1).min(input.len()))
}

struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    closing: bool,
    self_closing: bool,
    /// Just past the `>`.
    end: usize,
}

impl Tag {
    /// A tag at `i` (`<name ...>` or `</name>`), if it is one: a name starting with a letter
    /// and a `>` within 8 KiB.
    fn parse(input: &[u8], i: usize) -> Option<Tag> {
        let mut j = i + 1;
        let closing = input.get(j) == Some(&b'/');
        if closing {
            j += 1;
        }
        if !input.get(j)?.is_ascii_alphabetic() {
            return None;
        }
        let start = j;
        while j < input.len()
            && (input[j].is_ascii_alphanumeric() || matches!(input[j], b'-' | b':' | b'_'))
        {
            j += 1;
        }
        let name = String::from_utf8_lossy(&input[start..j]).to_ascii_lowercase();
        let limit = (i + 8192).min(input.len());
        let mut attrs = Vec::new();
        loop {
            while j < limit && input[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= limit {
                return None;
            }
            match input[j] {
                b'>' => {
                    return Some(Tag {
                        name,
                        attrs,
                        closing,
                        self_closing: false,
                        end: j + 1,
                    });
                }
                b'/' if input.get(j + 1) == Some(&b'>') => {
                    return Some(Tag {
                        name,
                        attrs,
                        closing,
                        self_closing: true,
                        end: j + 2,
                    });
                }
                b'/' => j += 1,
                _ => {
                    let a = j;
                    while j < limit
                        && !input[j].is_ascii_whitespace()
                        && !matches!(input[j], b'=' | b'>' | b'/')
                    {
                        j += 1;
                    }
                    let key = String::from_utf8_lossy(&input[a..j]).to_ascii_lowercase();
                    let mut value = String::new();
                    if j < limit && input[j] == b'=' {
                        j += 1;
                        if j < limit && matches!(input[j], b'"' | b'\'') {
                            let q = input[j];
                            let v = j + 1;
                            let e = input[v..limit].iter().position(|&b| b == q)? + v;
                            value = String::from_utf8_lossy(&input[v..e]).into_owned();
                            j = e + 1;
                        } else {
                            let v = j;
                            while j < limit && !input[j].is_ascii_whitespace() && input[j] != b'>' {
                                j += 1;
                            }
                            value = String::from_utf8_lossy(&input[v..j]).into_owned();
                        }
                    }
                    if attrs.len() < 64 {
                        attrs.push((key, value));
                    }
                }
            }
        }
    }

    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// The matching `</name>` after `from` (nested `<name` counted): (start, end).
fn close_of(input: &[u8], from: usize, name: &str) -> Option<(usize, usize)> {
    let mut depth = 1usize;
    let mut j = from;
    while let Some(p) = input[j..].iter().position(|&b| b == b'<') {
        let at = j + p;
        if let Some(t) = Tag::parse(input, at) {
            if t.name == name {
                if t.closing {
                    depth -= 1;
                    if depth == 0 {
                        return Some((at, t.end));
                    }
                } else if !t.self_closing {
                    depth += 1;
                }
            }
            j = t.end;
        } else {
            j = at + 1;
        }
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The text of some markup: tags dropped, whitespace runs collapsed.
fn visible_text(b: &[u8]) -> String {
    let mut s = String::new();
    let mut in_tag = false;
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                s.push(' ');
            }
            _ if in_tag => {}
            _ => s.push(c),
        }
        if s.len() > super::REVEAL_MAX * 2 {
            break;
        }
    }
    let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&mut s);
    s
}

/// Why an element is hidden, if it is.
fn hidden(tag: &Tag, dialect: Dialect, css: &HiddenSelectors) -> Option<Technique> {
    let name = tag.name.as_str();
    if dialect == Dialect::Svg {
        match name {
            "desc" | "title" | "metadata" => return Some(Technique::SvgHidden),
            "script" | "foreignobject" => return Some(Technique::SvgActive),
            _ => {}
        }
        let zero = |k: &str| {
            tag.attr(k)
                .is_some_and(|v| number(v).is_some_and(|n| n <= 0.0))
        };
        if zero("opacity")
            || zero("fill-opacity") && name == "text"
            || zero("font-size")
            || tag.attr("display") == Some("none")
            || tag.attr("visibility") == Some("hidden")
        {
            return Some(Technique::SvgHidden);
        }
        if let Some(style) = tag.attr("style") {
            if style_hides(style) {
                return Some(Technique::SvgHidden);
            }
        }
        return None;
    }
    if name == "template" {
        return Some(Technique::NotRendered);
    }
    if tag.attr("hidden").is_some() {
        return Some(Technique::CssHidden);
    }
    if tag.attr("style").is_some_and(style_hides) {
        return Some(Technique::CssHidden);
    }
    if css.matches(tag) {
        return Some(Technique::CssHidden);
    }
    None
}

fn number(v: &str) -> Option<f64> {
    let v = v.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(v.len());
    let n: f64 = v[..end].parse().ok()?;
    Some(if v[end..].trim() == "%" { n / 100.0 } else { n })
}

fn white(v: &str) -> bool {
    let v: String = v
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        v.as_str(),
        "#fff"
            | "#ffffff"
            | "#ffff"
            | "#ffffffff"
            | "white"
            | "rgb(255,255,255)"
            | "rgba(255,255,255,1)"
    )
}

/// Whether a CSS declaration list hides what it applies to.
fn style_hides(style: &str) -> bool {
    let mut color = None;
    let mut background = None;
    let mut overflow_hidden = false;
    let mut zero_box = false;
    for decl in style.split(';') {
        let Some((k, v)) = decl.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v
            .trim()
            .trim_end_matches("!important")
            .trim()
            .to_ascii_lowercase();
        let n = number(&v);
        let px = |v: &str| v.ends_with("px") || v.trim().parse::<f64>().is_ok();
        match k.as_str() {
            "display" if v == "none" => return true,
            "visibility" if v == "hidden" || v == "collapse" => return true,
            "opacity" if n.is_some_and(|n| n <= 0.01) => return true,
            "font-size" => {
                if let Some(n) = n {
                    if (px(&v) && n < 2.0)
                        || (v.ends_with("pt") && n < 1.5)
                        || ((v.ends_with("em") || v.ends_with("rem")) && n < 0.1)
                        || n <= 0.0
                    {
                        return true;
                    }
                }
            }
            "left" | "top" | "text-indent" | "margin-left" | "margin-top"
                if n.is_some_and(|n| n <= -999.0) =>
            {
                return true
            }
            "transform" if v.replace(' ', "").contains("scale(0)") => return true,
            "clip" if v.replace(' ', "").starts_with("rect(0") => return true,
            "clip-path"
                if v.replace(' ', "").contains("inset(50%)")
                    || v.replace(' ', "").contains("inset(100%)")
                    || v.replace(' ', "").contains("circle(0") =>
            {
                return true
            }
            "height" | "max-height" | "width" | "max-width" if n.is_some_and(|n| n <= 0.0) => {
                zero_box = true
            }
            "overflow" if v == "hidden" => overflow_hidden = true,
            "color" => color = Some(v.clone()),
            "background" | "background-color" => background = Some(v.clone()),
            _ => {}
        }
    }
    if zero_box && overflow_hidden {
        return true;
    }
    match (color, background) {
        (Some(c), Some(b)) => c == b || (white(&c) && white(&b)),
        // White text on the page's default white.
        (Some(c), None) => white(&c),
        _ => false,
    }
}

/// `.class` and `#id` selectors whose rules hide, from the document's `<style>` blocks.
struct HiddenSelectors {
    classes: Vec<String>,
    ids: Vec<String>,
}

impl HiddenSelectors {
    fn from_styles(input: &[u8]) -> HiddenSelectors {
        let mut hs = HiddenSelectors {
            classes: Vec::new(),
            ids: Vec::new(),
        };
        let mut j = 0;
        while let Some(p) = find(input, j, b"<style") {
            let Some(tag) = Tag::parse(input, p) else {
                j = p + 1;
                continue;
            };
            let end = close_of(input, tag.end, "style").map_or(input.len(), |(s, _)| s);
            let css = String::from_utf8_lossy(&input[tag.end..end]).into_owned();
            for rule in css.split('}') {
                let Some((sel, body)) = rule.split_once('{') else {
                    continue;
                };
                if !style_hides(body) {
                    continue;
                }
                for s in sel.split(',') {
                    let s = s.trim();
                    let last = s
                        .rsplit(|c: char| c.is_whitespace() || c == '>')
                        .next()
                        .unwrap_or("");
                    if let Some((_, c)) = last.split_once('.') {
                        hs.classes
                            .push(c.split(['.', ':', '[']).next().unwrap_or("").to_string());
                    } else if let Some(id) = last.strip_prefix('#') {
                        hs.ids
                            .push(id.split(['.', ':', '[']).next().unwrap_or("").to_string());
                    }
                }
            }
            j = end;
        }
        hs.classes.retain(|c| !c.is_empty());
        hs.ids.retain(|c| !c.is_empty());
        hs
    }

    fn matches(&self, tag: &Tag) -> bool {
        if self.classes.is_empty() && self.ids.is_empty() {
            return false;
        }
        let classes = tag.attr("class").unwrap_or("");
        classes
            .split_whitespace()
            .any(|c| self.classes.iter().any(|h| h == c))
            || tag
                .attr("id")
                .is_some_and(|id| self.ids.iter().any(|h| h == id))
    }
}
