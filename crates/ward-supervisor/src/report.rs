//! What Ward stopped, removed or hid during a session, said to the person when the agent has
//! ended (on Ward's own stream, after the agent's): destinations refused with the manifest line
//! that would allow each, destinations allowed but unreachable, variables removed, files hidden
//! in the grants, limits reached. Each line names what to change; the audit log has the rest.
//!
//! Everything here the agent chose (a destination, a path) goes through the inert printer.

use ward_core::inert;

/// What the session's end knows.
pub struct Ended<'a> {
    pub session: &'a str,
    /// The proxy's counts (`refused_destinations`, `failed_destinations`).
    pub network: &'a serde_json::Value,
    pub env_removed: &'a [String],
    /// Commands shells inside did not find that are on the host: (name, folder to grant).
    pub not_found: &'a [(String, std::path::PathBuf)],
    pub hidden: &'a [std::path::PathBuf],
    /// Hidden files a program inside opened (and read nothing from).
    pub looked_for: &'a [std::path::PathBuf],
    /// Tools' settings in the person's home that the agent's home lacks: (`~/path`, whether a
    /// grant can bring it in).
    pub left_out: &'a [(String, bool)],
    pub limits_hit: &'a serde_json::Map<String, serde_json::Value>,
}

/// At most this many items of a kind are named; the rest are counted.
const SHOWN: usize = 8;

/// `a, b, c (+N more)`.
fn some(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    let mut s = all
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", all.len() - SHOWN));
    }
    s
}

/// The manifest's way of writing a recorded destination (`https://host:443` is written
/// `https://host`).
pub fn manifest_dest(resource: &str) -> String {
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if let Some(rest) = resource.strip_prefix(scheme) {
            if let Some(host) = rest.strip_suffix(port) {
                return format!("{scheme}{host}");
            }
        }
    }
    resource.to_string()
}

/// The report's lines (empty when nothing was stopped, removed or hidden).
pub fn lines(e: &Ended) -> Vec<String> {
    let mut out = Vec::new();
    let list = |key: &str| e.network[key].as_array().cloned().unwrap_or_default();
    for r in list("refused_destinations") {
        let dest = r["resource"].as_str().unwrap_or_default();
        let reason = r["reason"].as_str().unwrap_or_default();
        // The line that would allow it, only where not being named was the reason (not a
        // finding, a credential's placeholder, a path or a push rule).
        let hint = if reason.contains("is not in the manifest") {
            format!(
                "; to allow it, add to ward.toml: [network] allow = [\"{}\"]",
                inert::line(&manifest_dest(dest))
            )
        } else {
            String::new()
        };
        out.push(format!(
            "refused  {} ({}x): {}{hint}",
            inert::line(dest),
            r["count"],
            inert::line(reason),
        ));
    }
    let names = list("refused_names");
    if !names.is_empty() {
        let total = e.network["refused_names_total"].as_u64().unwrap_or(0);
        out.push(format!(
            "refused by the sandbox's resolver (names no destination allows): {}{}",
            names
                .iter()
                .take(SHOWN)
                .map(|r| format!(
                    "{} ({}x)",
                    inert::line(r["name"].as_str().unwrap_or_default()),
                    r["count"]
                ))
                .collect::<Vec<_>>()
                .join(", "),
            match total.saturating_sub(SHOWN as u64) {
                0 => String::new(),
                n => format!(" (+{n} more)"),
            }
        ));
    }
    for r in list("failed_destinations") {
        out.push(format!(
            "failed   {} ({}x), allowed but not reachable: {}",
            inert::line(r["resource"].as_str().unwrap_or_default()),
            r["count"],
            inert::line(r["reason"].as_str().unwrap_or_default()),
        ));
    }
    if !e.env_removed.is_empty() {
        out.push(format!(
            "removed from the agent's environment: {}; to keep one: [env] keep = [\"NAME\"]",
            some(e.env_removed.iter().map(|k| inert::line(k).into_owned()))
        ));
    }
    let mut grants: Vec<&std::path::Path> = Vec::new();
    for (_, g) in e.not_found {
        if !grants.contains(&g.as_path()) {
            grants.push(g);
        }
    }
    for g in grants {
        out.push(format!(
            "not found inside: {}, on this machine under {}; to bring them in: --grant {}:ro, or in \
             ward.toml: [[files]] path = \"{}\" access = \"read\"",
            some(
                e.not_found
                    .iter()
                    .filter(|(_, x)| x == g)
                    .map(|(n, _)| inert::line(n).into_owned())
            ),
            inert::path(g),
            inert::path(g),
            inert::path(g)
        ));
    }
    if !e.looked_for.is_empty() {
        out.push(format!(
            "looked for by programs inside, but hidden (they read an empty file): {}; Ward \
             never shows keys and credentials; what a tool needs from such a file goes in \
             ward.toml's [env] set (npm_config_registry, PIP_INDEX_URL, ...) or a file \
             without secrets",
            some(e.looked_for.iter().map(|p| inert::path(p)))
        ));
    }
    let grantable: Vec<&(String, bool)> = e.left_out.iter().filter(|(_, g)| *g).collect();
    let secret: Vec<&(String, bool)> = e.left_out.iter().filter(|(_, g)| !*g).collect();
    if let Some((first, _)) = grantable.first() {
        out.push(format!(
            "tools inside ran without your {} (not in the agent's own home); to let it read \
             one (check first that it holds no token): --grant {}:ro",
            some(grantable.iter().map(|(p, _)| inert::line(p).into_owned())),
            inert::line(first)
        ));
    }
    if !secret.is_empty() {
        out.push(format!(
            "tools inside ran without your {} (they can hold credentials, so no grant brings \
             them in); what a tool needs from them goes in ward.toml's [env] set \
             (npm_config_registry, PIP_INDEX_URL, ...)",
            some(secret.iter().map(|(p, _)| inert::line(p).into_owned()))
        ));
    }
    if !e.hidden.is_empty() {
        out.push(format!(
            "hidden in the grants (keys, credentials, sockets, the manifest's denies): {}",
            some(e.hidden.iter().map(|p| inert::path(p)))
        ));
    }
    let reached: Vec<String> = e
        .limits_hit
        .iter()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{} ({v}x)", inert::line(k)))
        .collect();
    if !reached.is_empty() {
        out.push(format!(
            "limits reached: {}; raise them in ward.toml's [limits]",
            reached.join(", ")
        ));
    }
    out
}

/// Lines about the set-up (variables removed, files hidden) are said once: a line said in
/// one of the recent sessions is not repeated (the audit log has it every time). What the
/// session did (refusals, failures, limits) is said every time.
const SETUP_LINES: &[&str] = &[
    "removed from the agent's environment:",
    "hidden in the grants",
    "tools inside ran without your",
];

/// How many set-up lines are remembered (their SHA-256, in `state/report-said`).
const REMEMBERED: usize = 64;

/// `lines` less the set-up lines said recently; remembers the ones said now.
fn not_said_before(lines: Vec<String>, state: Option<&std::path::Path>) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let Some(file) = state.map(|s| s.join("report-said")) else {
        return lines;
    };
    let mut said: Vec<String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let before = said.len();
    let out: Vec<String> = lines
        .into_iter()
        .filter(|l| {
            if !SETUP_LINES.iter().any(|p| l.starts_with(p)) {
                return true;
            }
            let h = format!("{:x}", Sha256::digest(l.as_bytes()));
            if said.contains(&h) {
                return false;
            }
            said.push(h);
            true
        })
        .collect();
    if said.len() != before {
        let keep = said.len().saturating_sub(REMEMBERED);
        let _ = std::fs::write(&file, said[keep..].join("\n") + "\n");
    }
    out
}

/// Print the report on stderr, after the agent's own output. `state`: Ward's state folder,
/// where the set-up lines said recently are remembered.
pub fn print(e: &Ended, state: Option<&std::path::Path>) {
    let lines = not_said_before(lines(e), state);
    if lines.is_empty() {
        return;
    }
    let mut text = String::from("ward: during this session Ward\n");
    for l in &lines {
        text.push_str("  ");
        text.push_str(l);
        text.push('\n');
    }
    let refused = e.network["refused_destinations"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    text.push_str(&format!(
        "  details: ward audit tail --session {}{}\n",
        inert::line(e.session),
        if refused { " --denied" } else { "" }
    ));
    eprint!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_what_to_change_and_keeps_agent_text_inert() {
        let network = json!({
            "refused_destinations": [{"resource": "https://evil.example\u{1b}[2J:443", "count": 3,
                "by": "default", "reason": "https://evil.example:443 is not in the manifest (deny unknown destinations)"}],
            "failed_destinations": [{"resource": "https://api.anthropic.com:443", "count": 6,
                "by": "manifest", "reason": "cannot resolve api.anthropic.com"}],
        });
        let limits = serde_json::Map::from_iter([
            ("memory.max".to_string(), json!(2)),
            ("pids.max".to_string(), json!(0)),
        ]);
        let removed: Vec<String> = (0..10).map(|i| format!("V{i}")).collect();
        let hidden = vec![std::path::PathBuf::from("/p/.env")];
        let l = lines(&Ended {
            session: "s1",
            network: &network,
            env_removed: &removed,
            not_found: &[
                ("cargo".into(), "/h/.cargo".into()),
                ("x\u{1b}]0;t".into(), "/h/tools".into()),
                ("rustc".into(), "/h/.cargo".into()),
            ],
            hidden: &hidden,
            looked_for: &[],
            left_out: &[("~/.gitconfig".into(), true), ("~/.npmrc".into(), false)],
            limits_hit: &limits,
        });
        assert_eq!(l.len(), 9, "{l:?}");
        let nf: Vec<&String> = l
            .iter()
            .filter(|x| x.starts_with("not found inside"))
            .collect();
        assert_eq!(nf.len(), 2, "{l:?}");
        assert!(
            nf[0].starts_with("not found inside: cargo, rustc, on this machine under /h/.cargo; to bring them in: --grant /h/.cargo:ro"),
            "{}",
            nf[0]
        );
        let left: Vec<&String> = l
            .iter()
            .filter(|x| x.starts_with("tools inside ran without"))
            .collect();
        assert_eq!(left.len(), 2, "{l:?}");
        assert!(left[0].contains("~/.gitconfig") && left[0].ends_with("--grant ~/.gitconfig:ro"));
        assert!(left[1].contains("~/.npmrc") && left[1].contains("[env] set"));
        let l: Vec<String> = l
            .into_iter()
            .filter(|x| !x.starts_with("not found") && !x.starts_with("tools inside"))
            .collect();
        assert!(l[0].starts_with("refused  https://evil.example"));
        assert!(!l.iter().any(|x| x.contains('\u{1b}')), "{l:?}");
        assert!(
            l[0].ends_with("[network] allow = [\"https://evil.example\\e[2J\"]"),
            "{}",
            l[0]
        );
        assert!(l[1].contains("allowed but not reachable: cannot resolve"));
        assert!(l[2].contains("V0, V1") && l[2].contains("(+2 more)"));
        assert!(l[3].contains("/p/.env"));
        assert_eq!(
            l[4],
            "limits reached: memory.max (2x); raise them in ward.toml's [limits]"
        );
        assert!(lines(&Ended {
            session: "s1",
            network: &json!({}),
            env_removed: &[],
            not_found: &[],
            hidden: &[],
            looked_for: &[],
            left_out: &[],
            limits_hit: &serde_json::Map::new(),
        })
        .is_empty());
        assert_eq!(manifest_dest("http://h:8080"), "http://h:8080");
        // Set-up lines are said once; what the session did, every time.
        let dir = tempfile::tempdir().unwrap();
        let said = |v: &[String]| not_said_before(v.to_vec(), Some(dir.path()));
        assert_eq!(said(&l).len(), 5);
        let again = said(&l);
        assert_eq!(again.len(), 3, "{again:?}");
        assert!(!again
            .iter()
            .any(|x| x.starts_with("removed") || x.starts_with("hidden")));
        assert_eq!(manifest_dest("http://h:80"), "http://h");
    }
}
