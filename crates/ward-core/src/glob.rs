//! Path globs for rules and mandatory denies: `*` (within a component), `?`, `**` (any number of
//! components). No character classes: what a pattern matches must be obvious when read.

/// Match `text` against the glob `pattern`, both `/`-separated.
pub fn matches(pattern: &str, text: &str) -> bool {
    let txt = split(text);
    reach(&split(pattern), &txt)[txt.len()]
}

/// Does `pattern` match `text` or any ancestor of it (so a directory pattern covers its contents)?
pub fn matches_or_contains(pattern: &str, text: &str) -> bool {
    let txt = split(text);
    reach(&split(pattern), &txt).iter().skip(1).any(|&m| m)
}

/// Does a mandatory-deny `pattern`, relative to a grant, cover the relative path `rel`?
/// A pattern without `/` is a name matched at any depth (like `.gitignore`); one with `/` is
/// anchored at the grant root. Either way it covers everything below what it matches.
pub fn deny_covers(pattern: &str, rel: &str) -> bool {
    let pattern = pattern.trim_start_matches('/');
    if pattern.contains('/') {
        matches_or_contains(pattern, rel)
    } else {
        split(rel)
            .iter()
            .any(|c| match_component(pattern.as_bytes(), c.as_bytes()))
    }
}

/// Match one path component (no `/`) against a pattern of `*` and `?`.
pub fn component_matches(pattern: &str, name: &str) -> bool {
    match_component(pattern.as_bytes(), name.as_bytes())
}

fn split(s: &str) -> Vec<&str> {
    s.split('/').filter(|c| !c.is_empty()).collect()
}

/// `reach[j]`: the whole pattern matches the first `j` components of the text. Dynamic
/// programming over (pattern, text) positions, so `**` never backtracks exponentially.
fn reach(pat: &[&str], txt: &[&str]) -> Vec<bool> {
    let mut dp = vec![false; txt.len() + 1];
    dp[0] = true;
    for p in pat {
        let mut next = vec![false; txt.len() + 1];
        if *p == "**" {
            let mut any = false;
            for j in 0..=txt.len() {
                any |= dp[j];
                next[j] = any;
            }
        } else {
            for j in 1..=txt.len() {
                next[j] = dp[j - 1] && match_component(p.as_bytes(), txt[j - 1].as_bytes());
            }
        }
        dp = next;
    }
    dp
}

/// Iterative wildcard match with single backtrack point: linear in practice, never exponential.
fn match_component(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("/usr/bin/*", "/usr/bin/curl"));
        assert!(!matches("/usr/bin/*", "/usr/bin/x/curl"));
        assert!(matches("/home/**/secret", "/home/a/b/secret"));
        assert!(matches("/home/**/secret", "/home/secret"));
        assert!(matches("*.pem", "key.pem"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("**", "/anything/at/all"));
        assert!(matches("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!matches("*a*b*c*", "xxaxxcxxbxx"));
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let pat = "**/a/**/a/**/a/**/a/**/b";
        let text = "a/".repeat(2000);
        assert!(!matches(pat, &text));
        assert!(matches(pat, &format!("{text}b")));
    }

    #[test]
    fn deny_patterns() {
        assert!(deny_covers(".env", ".env"));
        assert!(deny_covers(".env", "sub/dir/.env"));
        assert!(deny_covers(".git", ".git/hooks/pre-commit"));
        assert!(deny_covers(".git/hooks", ".git/hooks/pre-commit"));
        assert!(!deny_covers(".git/hooks", "sub/.git/hooks/pre-commit"));
        assert!(deny_covers("**/.git/hooks", "sub/.git/hooks/pre-commit"));
        assert!(deny_covers("*.pem", "certs/server.pem"));
        assert!(!deny_covers(".env", ".envrc"));
        assert!(deny_covers(".env.*", ".env.local"));
    }
}
