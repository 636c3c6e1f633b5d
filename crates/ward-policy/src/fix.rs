//! `ward policy check --fix`: rewrite a Rego v0 file into v1.
//!
//! A token-level rewrite, not a pretty-printer: comments, spacing and order are kept; only
//! `if` is inserted before rule bodies and `contains` into partial-set heads (`p[x] {` becomes
//! `p contains x if {`). The result is parsed as v1 before it is returned, so a rewrite that did
//! not produce valid v1 is reported instead of written.

use crate::error::PolicyError;
use crate::rego::check_source;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Ident,
    Str,
    Num,
    Punct(u8),
    /// `:=`, `==`, `!=`, `<=`, `>=`
    Op,
}

struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

fn tokenize(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token {
                    kind: Tok::Str,
                    start,
                    end: i,
                });
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token {
                    kind: Tok::Str,
                    start,
                    end: i,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Ident,
                    start,
                    end: i,
                });
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Num,
                    start,
                    end: i,
                });
            }
            b':' | b'=' | b'!' | b'<' | b'>' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                out.push(Token {
                    kind: Tok::Op,
                    start,
                    end: i,
                });
            }
            _ => {
                // Skip the rest of a multi-byte character whole.
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Punct(c),
                    start,
                    end: i,
                });
            }
        }
    }
    out
}

/// Rewrite v0 text to v1. Text that is already v1 comes back unchanged.
pub fn rewrite_v0(src: &str) -> String {
    let toks = tokenize(src);
    let text = |t: &Token| &src[t.start..t.end];
    // (byte offset, text to insert) and (range, replacement) edits, applied back to front.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut depth = 0i32;
    let mut head_start: Option<usize> = None; // token index where the current rule head begins
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            Tok::Punct(b'{') if depth == 0 => {
                let prev = i.checked_sub(1).map(|p| &toks[p]);
                let prev_if = prev.is_some_and(|p| p.kind == Tok::Ident && text(p) == "if");
                let body = prev_if
                    || match prev {
                        Some(p) => match p.kind {
                            Tok::Ident => !matches!(
                                text(p),
                                "contains" | "in" | "not" | "some" | "with" | "as" | "every"
                            ),
                            Tok::Str | Tok::Num => true,
                            Tok::Punct(b']') | Tok::Punct(b')') | Tok::Punct(b'}') => true,
                            _ => false,
                        },
                        None => false,
                    };
                // `} {` continues the previous rule with another body (v0 "or"); leave it to the
                // v1 parser to report, as v1 has no spelling for it.
                let after_body = prev.is_some_and(|p| p.kind == Tok::Punct(b'}'));
                if body && !after_body {
                    // A head that already says `if` (v0 with `future.keywords.if`, or v1's
                    // `if every x in xs {`) gets no second one; a `p[x]` head still becomes
                    // `p contains x`, the only v1 spelling of a partial set.
                    let head_if = head_start.is_some_and(|hs| {
                        toks[hs..i]
                            .iter()
                            .any(|t| t.kind == Tok::Ident && text(t) == "if")
                    });
                    if let Some(hs) = head_start {
                        partial_set(&toks, hs, i, src, &mut edits);
                    }
                    if !head_if {
                        let spaced = src[..t.start].ends_with(char::is_whitespace);
                        edits.push((
                            t.start,
                            t.start,
                            if spaced { "if " } else { " if " }.to_string(),
                        ));
                    }
                }
                depth += 1;
            }
            Tok::Punct(b'{') | Tok::Punct(b'[') | Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b'}') | Tok::Punct(b']') | Tok::Punct(b')') => {
                depth -= 1;
                if depth == 0 && t.kind == Tok::Punct(b'}') {
                    head_start = None;
                }
            }
            Tok::Ident if depth == 0 => {
                let starts_line = src[..t.start]
                    .rfind('\n')
                    .map_or(src[..t.start].trim().is_empty(), |nl| {
                        src[nl + 1..t.start].trim().is_empty()
                    });
                if starts_line && !matches!(text(t), "else") {
                    head_start = Some(i);
                }
            }
            _ => {}
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = src.to_string();
    for (s, e, ins) in edits {
        out.replace_range(s..e, &ins);
    }
    out
}

/// `name[x] {` (no `=` in the head) is a v0 partial set: make it `name contains x`.
fn partial_set(
    toks: &[Token],
    hs: usize,
    brace: usize,
    src: &str,
    edits: &mut Vec<(usize, usize, String)>,
) {
    let head = &toks[hs..brace];
    if head.len() < 4 || head[0].kind != Tok::Ident || head[1].kind != Tok::Punct(b'[') {
        return;
    }
    if matches!(
        &src[head[0].start..head[0].end],
        "default" | "package" | "import"
    ) {
        return;
    }
    // An `if` at the end of the head is not part of it.
    let head = match head.last() {
        Some(t) if t.kind == Tok::Ident && &src[t.start..t.end] == "if" => &head[..head.len() - 1],
        _ => head,
    };
    if head.len() < 4 {
        return;
    }
    let Some(last) = head.last() else { return };
    if last.kind != Tok::Punct(b']') {
        return;
    }
    // The `[` must close at the end of the head, and no `=` may follow the name.
    let mut d = 0;
    for (k, t) in head.iter().enumerate().skip(1) {
        match t.kind {
            Tok::Punct(b'[') | Tok::Punct(b'(') | Tok::Punct(b'{') => d += 1,
            Tok::Punct(b']') | Tok::Punct(b')') | Tok::Punct(b'}') => {
                d -= 1;
                if d == 0 && k != head.len() - 1 {
                    return;
                }
            }
            Tok::Op | Tok::Punct(b'=') if d == 0 => return,
            _ => {}
        }
    }
    edits.push((head[1].start, head[1].end, " contains ".to_string()));
    edits.push((last.start, last.end, String::new()));
}

/// Rewrite and check: the v1 text, or why the rewrite could not produce valid v1.
pub fn fix_file_text(path: &Path, src: &str) -> Result<String, PolicyError> {
    let fixed = rewrite_v0(src);
    check_source(path, &fixed)
        .map(|_| fixed)
        .map_err(|e| match e {
            PolicyError::RegoV0 { detail, .. }
            | PolicyError::Parse {
                message: detail, ..
            } => PolicyError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "the automatic rewrite did not produce valid Rego v1; fix by hand:\n{detail}"
                ),
            },
            other => other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_if_and_contains() {
        let v0 = "package p\n\ndefault allow = false\n\nallow {\n  input.x == 1 # {not a body}\n}\n\ndeny[msg] {\n  msg := \"no\"\n}\n\nobj[k] = v {\n  k := \"a\"\n  v := 1\n}\n\nf(x) = y {\n  y := x + 1\n}\n\nconst = {\"a\": 1}\n";
        let v1 = rewrite_v0(v0);
        assert!(v1.contains("allow if {"), "{v1}");
        assert!(v1.contains("deny contains msg if {"), "{v1}");
        assert!(v1.contains("obj[k] = v if {"), "{v1}");
        assert!(v1.contains("f(x) = y if {"), "{v1}");
        assert!(v1.contains("const = {\"a\": 1}"), "{v1}");
        assert!(v1.contains("# {not a body}"), "{v1}");
        check_source(Path::new("t.rego"), &v1).unwrap();
    }

    #[test]
    fn review_cases() {
        // No space before the brace.
        let v1 = rewrite_v0("package p\nallow{\n  true\n}\ndeny[msg]{\n  msg := 1\n}\n");
        assert!(v1.contains("allow if {"), "{v1}");
        assert!(v1.contains("deny contains msg if {"), "{v1}");
        // v0 with `future.keywords.if`: the partial set still becomes `contains`.
        let v1 =
            rewrite_v0("package p\nimport future.keywords.if\ndeny[msg] if {\n  msg := 1\n}\n");
        assert!(v1.contains("deny contains msg if {"), "{v1}");
        check_source(Path::new("t.rego"), &v1).unwrap();
        // `if every` is already v1.
        let src = "package p\nallow if every x in input.xs {\n  x > 1\n}\n";
        assert_eq!(rewrite_v0(src), src);
    }

    #[test]
    fn v1_text_is_unchanged() {
        let v1 = "package p\n\nallow if {\n  input.x in [1, 2]\n}\n\ndeny contains m if {\n  m := 1\n}\n";
        assert_eq!(rewrite_v0(v1), v1);
    }
}
