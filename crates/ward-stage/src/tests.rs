//! Changes read from a real overlay's upper layer: each test stages edits through an actual
//! overlay mount (in a user namespace, as `ward run` does), then lists them.

use super::*;
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
    assert!(d.contains("Binary, large or special"), "{d}");
    let l = &cs[1];
    assert_eq!(
        l.after.as_ref().unwrap().target.as_deref(),
        Some(Path::new("/etc/passwd"))
    );
    assert!(diff(&s, l, false).unwrap().contains("+-> /etc/passwd"));
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
