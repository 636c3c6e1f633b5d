//! "Always": an answer that adds a rule to the user's manifest, with a comment saying who and
//! when. The new text is validated (loaded as Ward would load it, managed files included) before
//! it replaces the file, atomically and with its permissions; a file Ward cannot write or
//! validate is left as it was and the answer holds for the session only.

use crate::{Always, Remember};
use std::io::Write;

/// A TOML basic string of `s` (quotes, backslashes and control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Append the rule `r` to `a`'s manifest. Returns the rule's text.
pub fn append_rule(
    a: &Always,
    r: &Remember,
    session: &str,
    channel: &str,
) -> Result<String, String> {
    let path = &a.manifest;
    if path.extension().is_some_and(|e| e == "json") {
        return Err(
            "the manifest is JSON (the seed's form); Ward adds rules to TOML manifests only".into(),
        );
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // The comment line is Ward's words; the name and channel are made one plain line.
    let who = a.who.replace(['\n', '\r'], " ");
    let rule = format!(
        "# Added by Ward on {}: {who} answered \"always\" on the {channel} (session {session}).\n\
         [[rules]]\naction = \"{}\"\neffect = \"allow\"\nresource = {}\n",
        ward_audit::time::now_rfc3339(),
        r.kind.as_str(),
        toml_string(&r.resource),
    );
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push('\n');
    new.push_str(&rule);
    replace_validated(path, &new, &a.managed)?;
    Ok(rule)
}

/// The TOML manifest `text` with `dest` added to `[network] allow`, after a comment line
/// (Ward's words): into the `allow` array where there is one, as a new `allow` under
/// `[network]` where the table has none, or as a new `[network]` table at the end. The caller
/// validates the result ([`replace_validated`]).
pub fn add_destination(text: &str, dest: &str, comment: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        network: Option<toml::Spanned<Net>>,
    }
    #[derive(serde::Deserialize)]
    struct Net {
        allow: Option<toml::Spanned<Vec<String>>>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
    let entry = toml_string(dest);
    let comment = comment.replace(['\n', '\r'], " ");
    match doc.network {
        Some(net) => {
            if let Some(allow) = net.get_ref().allow.as_ref() {
                // The array's span starts at its `[`.
                let at = allow.span().start;
                if text.as_bytes().get(at) != Some(&b'[') {
                    return Err("`network.allow` is not written as an array here".into());
                }
                let rest = text[at + 1..].trim_start_matches([' ', '\t']);
                let sep = if rest.starts_with('\n') { "" } else { "  " };
                return Ok(format!(
                    "{}[\n  # {comment}\n  {entry},\n{sep}{rest}",
                    &text[..at],
                ));
            }
            // `[network]` without `allow`: the line after its header.
            let header = text
                .match_indices("[network]")
                .map(|(i, _)| i)
                .find(|&i| {
                    text[..i]
                        .rsplit('\n')
                        .next()
                        .is_some_and(|l| l.trim().is_empty())
                        && text[i + 9..].split('\n').next().is_some_and(|rest| {
                            rest.trim().is_empty() || rest.trim().starts_with('#')
                        })
                })
                .ok_or("the `network` table is not written as a `[network]` header")?;
            let eol = text[header..].find('\n').map_or(text.len(), |i| header + i);
            let (head, tail) = text.split_at(eol);
            let nl = if tail.is_empty() { "\n" } else { "" };
            Ok(format!("{head}{nl}\n# {comment}\nallow = [{entry}]{tail}"))
        }
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("\n[network]\n# {comment}\nallow = [{entry}]\n"));
            Ok(out)
        }
    }
}

/// Replace the manifest at `path` with `new`: written beside it under a name nobody can
/// predict, with its permissions, loaded as Ward would load it (the managed files included),
/// then renamed over it. Anything that fails leaves the manifest as it was.
pub fn replace_validated(
    path: &std::path::Path,
    new: &str,
    managed: &[std::path::PathBuf],
) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ward.toml".into());
    // A new file of a name nobody can predict, never through a link (O_EXCL): the folder may
    // be one the agent can write to.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = path.with_file_name(format!(".{name}.ward-{}-{nonce:x}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(new.as_bytes())?;
        // A manifest made anew (`ward allow` without one) keeps the default permissions.
        if let Ok(m) = std::fs::metadata(path) {
            f.set_permissions(m.permissions())?;
        }
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    let opts = ward_core::LoadOptions {
        managed: managed.to_vec(),
        ..ward_core::LoadOptions::default()
    };
    if let Err(e) = ward_core::Manifest::load(&tmp, &opts) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("the manifest with the new rule does not load: {e}"));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_goes_into_the_allow_array_the_network_table_or_a_new_one() {
        let c = "Added by Ward";
        let load = |t: &str| {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("ward.toml");
            std::fs::write(&p, t).unwrap();
            let m = ward_core::Manifest::load(
                &p,
                &ward_core::LoadOptions {
                    managed: vec![],
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{t}"));
            m.network
                .iter()
                .map(|e| e.dest.to_string())
                .collect::<Vec<_>>()
        };
        let a = add_destination(
            "name = \"x\"\n[network]\nallow = [\"https://a.example\"] # mine\nunknown = \"ask\"\n",
            "https://b.example",
            c,
        )
        .unwrap();
        assert_eq!(
            load(&a),
            ["https://b.example:443", "https://a.example:443"],
            "{a}"
        );
        assert!(a.contains("# Added by Ward") && a.contains("# mine"));
        let b = add_destination(
            "[network] # outbound\nunknown = \"ask\"\n",
            "http://localhost:11434",
            c,
        )
        .unwrap();
        assert_eq!(load(&b), ["http://localhost:11434"], "{b}");
        let n = add_destination("name = \"x\"", "https://c.example", c).unwrap();
        assert_eq!(load(&n), ["https://c.example:443"], "{n}");
        // A value that would break out of its string stays a string.
        let evil = add_destination("", "https://x\"]\n[[files]]", c).unwrap();
        assert!(
            evil.contains("\"https://x\\\"]\\u000A[[files]]\""),
            "{evil}"
        );
        assert!(add_destination("network = 1", "https://c.example", c).is_err());
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000Ad\"");
    }

    #[test]
    fn a_rule_is_appended_validated_and_a_json_manifest_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("ward.toml");
        std::fs::write(&m, "name = \"t\"\n[exec]\nunknown = \"ask\"").unwrap();
        let a = Always {
            manifest: m.clone(),
            managed: vec![],
            who: "alice".into(),
        };
        let r = Remember {
            kind: ward_core::ActionKind::Exec,
            resource: "/usr/bin/\"odd\"".into(),
        };
        append_rule(&a, &r, "s1", "terminal").unwrap();
        let text = std::fs::read_to_string(&m).unwrap();
        assert!(
            text.starts_with("name = \"t\"\n[exec]\nunknown = \"ask\"\n\n# Added by Ward on "),
            "{text}"
        );
        assert!(text.contains("alice answered \"always\" on the terminal (session s1)"));
        let loaded = ward_core::Manifest::load(
            &m,
            &ward_core::LoadOptions {
                managed: vec![],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            loaded.rules[0].resource.as_deref(),
            Some("/usr/bin/\"odd\"")
        );
        let json = dir.path().join("seed.json");
        std::fs::write(&json, "{}").unwrap();
        let e = append_rule(
            &Always {
                manifest: json.clone(),
                ..a
            },
            &r,
            "s1",
            "terminal",
        )
        .unwrap_err();
        assert!(e.contains("JSON"), "{e}");
        assert_eq!(std::fs::read_to_string(&json).unwrap(), "{}");
    }
}
