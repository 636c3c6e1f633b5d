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
        f.set_permissions(std::fs::metadata(path)?.permissions())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    let opts = ward_core::LoadOptions {
        managed: a.managed.clone(),
        ..ward_core::LoadOptions::default()
    };
    if let Err(e) = ward_core::Manifest::load(&tmp, &opts) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("the manifest with the new rule does not load: {e}"));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

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
