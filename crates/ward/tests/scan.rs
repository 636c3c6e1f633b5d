//! `ward scan` on real files: exit codes, JSON, masking, unreadable paths.

use std::process::Command;

fn ward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ward"))
}

#[test]
fn scan_finds_a_planted_key_masks_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let key = "sk_live_4eC39HqLyjWDarjtT1zdp7dcQ9Xb";
    std::fs::write(dir.path().join("clean.txt"), "nothing here\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/app.env"),
        format!("# payments\nSTRIPE_SECRET_KEY={key}\n"),
    )
    .unwrap();
    let out = ward()
        .arg("scan")
        .arg("--json")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains(key),
        "the secret itself must never be printed: {text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["files"], 2);
    let f = &doc["findings"][0];
    assert_eq!(f["rule"], "stripe-live-secret-key");
    assert_eq!(f["line"], 2);
    assert!(f["path"].as_str().unwrap().ends_with("sub/app.env"));

    let out = ward()
        .arg("scan")
        .arg(dir.path().join("clean.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn scan_of_an_unreadable_path_is_not_clean() {
    let out = ward()
        .args(["scan", "/nonexistent/ward-scan-test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot scan"));
}

#[test]
fn scan_rejects_a_broken_rules_file_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"mine\"\ndescription = \"x\"\nkeywords = [\"ab\"]\nregex = \"(unclosed\"\n",
    )
    .unwrap();
    let out = ward()
        .arg("scan")
        .arg("--rules")
        .arg(&rules)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule mine: regex"), "{err}");
}
