//! HTML, Markdown and SVG: comments, hidden and never-rendered elements.
//!
//! Not a full HTML parser: a tolerant tokenizer that finds comments and start tags, decides
//! from the tag's own attributes (inline style, `hidden`) and from simple class and id rules
//! in the document's `<style>` blocks whether an element is hidden, and then removes it up to
//! its matching end tag. What remains goes through the text sanitizer. Scripts and styles
//! are copied as they are (they are code, not hidden text).

use super::css::{number, style_hides};
use super::text;
use super::{truncate, Hidden, SanitizeError, Technique};

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

/// Elements whose content is text, not markup: it ends at the first `</name`.
const RAW: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];

/// The longest tag looked at; a longer one makes the document refused rather than guessed at.
const TAG_MAX: usize = 64 << 10;

pub(crate) fn clean(
    input: &[u8],
    dialect: Dialect,
    out: &mut Vec<u8>,
    found: &mut Vec<Hidden>,
) -> Result<(), SanitizeError> {
    let css = HiddenSelectors::from_styles(input);
    let mut kept_from = 0;
    let mut i = 0;
    // Cut [from, to) out: what was kept before it goes through the text sanitizer first.
    let mut remove = |technique: Technique, from: usize, to: usize, revealed: String| {
        text::clean(&input[kept_from..from], kept_from, out, found);
        kept_from = to;
        found.push(Hidden::new(technique, from, to, revealed));
    };
    // Where the next '>' is (a tag cannot end before it): a '<' with none near is rejected
    // without scanning.
    let mut next_gt = 0usize;
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
                remove(Technique::MarkdownComment, i, end, revealed);
                i = end;
                continue;
            }
        }
        if b != b'<' {
            i += 1;
            continue;
        }
        // Markdown: `\<` is a literal '<'.
        if dialect == Dialect::Markdown && i > 0 && input[i - 1] == b'\\' {
            i += 1;
            continue;
        }
        let rest = &input[i..];
        if rest.starts_with(b"<!--") {
            let end = find(input, i + 4, b"-->").map_or(input.len(), |p| p + 3);
            let inner = &input[i + 4..end.saturating_sub(3).max(i + 4)];
            let revealed = String::from_utf8_lossy(inner).trim().to_string();
            remove(Technique::HtmlComment, i, end, revealed);
            i = end;
            continue;
        }
        // Bogus comments and declarations, which render as nothing: `<!x...>`,
        // `<![CDATA[...]]>` (HTML and Markdown; in SVG, CDATA is text), `<?...>` (not in SVG,
        // where it is the XML declaration), `</ ...>` (HTML).
        if dialect != Dialect::Svg {
            let doctype = rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!doctype");
            let bogus_end = if rest.starts_with(b"<![CDATA[") {
                Some(find(input, i + 9, b"]]>").map_or(input.len(), |p| p + 3))
            } else if (rest.starts_with(b"<!") && !doctype)
                || rest.starts_with(b"<?")
                || (dialect == Dialect::Html
                    && rest.starts_with(b"</")
                    && rest.get(2).is_some_and(|c| !c.is_ascii_alphabetic()))
            {
                Some(find(input, i + 2, b">").map_or(input.len(), |p| p + 1))
            } else {
                None
            };
            if let Some(end) = bogus_end {
                let revealed = String::from_utf8_lossy(&input[i..end]).into_owned();
                remove(Technique::HtmlComment, i, end, revealed);
                i = end;
                continue;
            }
        }
        if next_gt <= i {
            next_gt = input[i..]
                .iter()
                .position(|&c| c == b'>')
                .map_or(usize::MAX, |p| i + p);
        }
        if next_gt == usize::MAX || next_gt - i > TAG_MAX {
            if next_gt != usize::MAX && rest.get(1).is_some_and(|c| c.is_ascii_alphabetic()) {
                return Err(SanitizeError::Malformed {
                    format: "markup",
                    message: format!("a tag at byte {i} is longer than {} KiB", TAG_MAX >> 10),
                });
            }
            i += 1;
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
        // A comment inside what parses as a tag may be a real comment to a renderer that
        // does not see the tag (an escaped '<', a code span): look inside rather than skip.
        if find(&input[..tag.end], i, b"<!--").is_some() {
            i += 1;
            continue;
        }
        let name = tag.name.as_str();
        let raw = !tag.self_closing && RAW.contains(&name);
        let end_of = |input: &[u8]| {
            if tag.self_closing || VOID.contains(&name) {
                tag.end
            } else if raw {
                raw_end(input, tag.end, name)
            } else {
                close_of(input, tag.end, name).map_or(input.len(), |(_, e)| e)
            }
        };
        if let Some(technique) = hidden(&tag, dialect, &css) {
            let end = end_of(input);
            let mut revealed = visible_text(&input[tag.end..end.max(tag.end)]);
            if revealed.is_empty() {
                revealed = String::from_utf8_lossy(&input[i..tag.end]).into_owned();
            }
            remove(technique, i, end, revealed);
            i = end;
            continue;
        }
        i = if raw { end_of(input) } else { tag.end };
    }
    text::clean(&input[kept_from..], kept_from, out, found);
    Ok(())
}

/// The end of the first `</name ...>` after `from` (raw text does not nest), or of the input.
fn raw_end(input: &[u8], from: usize, name: &str) -> usize {
    let mut j = from;
    while let Some(p) = find(input, j, b"</") {
        let after = &input[p + 2..];
        if after.len() >= name.len()
            && after[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && after
                .get(name.len())
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            return find(input, p, b">").map_or(input.len(), |q| q + 1);
        }
        j = p + 2;
    }
    input.len()
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
    let first_end = input[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| i + p + 1);
    // CommonMark: a backtick fence's info string has no backtick (else it is not a fence).
    if mark == b'`' && input[i + sp + n..first_end].contains(&b'`') {
        return None;
    }
    let mut j = first_end;
    while j < input.len() {
        let end = input[j..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| j + p + 1);
        let l = &input[j..end];
        // A closing fence: at most 3 spaces, at least as many marks, then only spaces.
        let sp = l.iter().take_while(|&&b| b == b' ').count();
        let m = l[sp..].iter().take_while(|&&b| b == mark).count();
        if sp <= 3 && m >= n && l[sp + m..].trim_ascii().is_empty() {
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
        let limit = (i + TAG_MAX).min(input.len());
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
                    let mut k = j;
                    while k < limit && input[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if k < limit && input[k] == b'=' {
                        j = k + 1;
                        while j < limit && input[j].is_ascii_whitespace() {
                            j += 1;
                        }
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
                    attrs.push((key, decode_entities(&value)));
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

/// Character references in an attribute value: numeric ones and the named ones that matter in
/// CSS (`display&#58;none`, `display&colon;none`).
fn decode_entities(v: &str) -> String {
    if !v.contains('&') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let r = &rest[p + 1..];
        let decoded = r.find(';').filter(|&e| e <= 32).and_then(|e| {
            let ent = &r[..e];
            let c = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                u32::from_str_radix(h, 16).ok().and_then(char::from_u32)
            } else if let Some(d) = ent.strip_prefix('#') {
                d.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                match ent.to_ascii_lowercase().as_str() {
                    "colon" => Some(':'),
                    "semi" => Some(';'),
                    "lpar" => Some('('),
                    "rpar" => Some(')'),
                    "num" => Some('#'),
                    "period" => Some('.'),
                    "comma" => Some(','),
                    "percnt" => Some('%'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "nbsp" | "tab" | "newline" => Some(' '),
                    _ => None,
                }
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &r[e + 1..];
            }
            None => {
                out.push('&');
                rest = r;
            }
        }
    }
    out.push_str(rest);
    out
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
        let text = matches!(name, "text" | "tspan" | "textpath");
        let unpainted = |k: &str| {
            tag.attr(k).is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "none" | "transparent"
                )
            })
        };
        let no_paint = unpainted("fill") && tag.attr("stroke").is_none_or(|_| unpainted("stroke"));
        if zero("opacity")
            || (text && (zero("fill-opacity") || no_paint))
            || zero("font-size")
            || tag.attr("display") == Some("none")
            || tag.attr("visibility") == Some("hidden")
            || tag.attr("style").is_some_and(style_hides)
            || css.matches(tag)
        {
            return Some(Technique::SvgHidden);
        }
        return None;
    }
    if matches!(name, "template" | "datalist" | "noembed" | "noframes") {
        return Some(Technique::NotRendered);
    }
    if name == "input"
        && tag
            .attr("type")
            .is_some_and(|t| t.eq_ignore_ascii_case("hidden"))
    {
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

/// Selectors whose rules hide, from the document's `<style>` blocks: the last compound of each
/// (`tag`, `.class`, `#id`, `tag.class`), ancestors ignored (a descendant rule then hides more
/// than a browser would: safe, not exact).
struct HiddenSelectors {
    tags: Vec<String>,
    classes: Vec<String>,
    ids: Vec<String>,
}

impl HiddenSelectors {
    fn from_styles(input: &[u8]) -> HiddenSelectors {
        let mut hs = HiddenSelectors {
            tags: Vec::new(),
            classes: Vec::new(),
            ids: Vec::new(),
        };
        let mut j = 0;
        while let Some(p) = find(input, j, b"<style") {
            let Some(tag) = Tag::parse(input, p) else {
                j = p + 1;
                continue;
            };
            let end = raw_end(input, tag.end, "style");
            hs.add_css(&String::from_utf8_lossy(&input[tag.end..end]));
            j = end.max(p + 1);
        }
        hs.classes.retain(|c| !c.is_empty());
        hs.ids.retain(|c| !c.is_empty());
        // Hiding the document itself by type would remove everything.
        hs.tags
            .retain(|t| !matches!(t.as_str(), "html" | "body" | "head" | "svg"));
        hs
    }

    /// Every innermost `selector { declarations }` (rules inside `@media { }` count too).
    fn add_css(&mut self, css: &str) {
        let mut sel_start = 0;
        let mut open: Option<usize> = None;
        for (k, c) in css.char_indices() {
            match c {
                '{' => {
                    if let Some(o) = open {
                        sel_start = o + 1;
                    }
                    open = Some(k);
                }
                '}' => {
                    if let Some(o) = open.take() {
                        if style_hides(&css[o + 1..k]) {
                            self.add_selectors(&css[sel_start.min(o)..o]);
                        }
                    }
                    sel_start = k + 1;
                }
                _ => {}
            }
        }
    }

    fn add_selectors(&mut self, list: &str) {
        for s in list.split(',') {
            let last = s
                .trim()
                .rsplit(|c: char| c.is_whitespace() || matches!(c, '>' | '+' | '~'))
                .next()
                .unwrap_or("");
            let last = last.split([':', '[']).next().unwrap_or("");
            let (tag_part, rest) = match last.find(['.', '#']) {
                Some(p) => (&last[..p], &last[p..]),
                None => (last, ""),
            };
            if rest.is_empty() && !tag_part.is_empty() && tag_part != "*" {
                self.tags.push(tag_part.to_ascii_lowercase());
            } else if let Some(c) = rest.strip_prefix('.') {
                self.classes
                    .push(c.split(['.', '#']).next().unwrap_or("").to_string());
            } else if let Some(id) = rest.strip_prefix('#') {
                self.ids
                    .push(id.split(['.', '#']).next().unwrap_or("").to_string());
            }
        }
    }

    fn matches(&self, tag: &Tag) -> bool {
        if self.tags.contains(&tag.name) {
            return true;
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
