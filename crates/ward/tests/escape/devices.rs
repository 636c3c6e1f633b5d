//! Devices (issue 16): nothing of the host's devices is inside but what `[[devices]]` names
//! (GPU render nodes, cameras), each asked for at the start of the session and recorded; a
//! refusal, silence or nobody to ask leaves it out.

use crate::common::Person;
use crate::*;

/// A fake GPU render node (226:128) for the test (no driver answers it: the test looks at
/// whether the node is there inside, not at a GPU). Needs CAP_MKNOD.
fn render_node(e: &Env) -> Option<std::path::PathBuf> {
    let dir = e.p("devs");
    std::fs::create_dir_all(&dir).unwrap();
    let node = dir.join("renderD128");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod of a path we own the C string for.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(226, 128)) };
    if r != 0 {
        let msg = format!(
            "DEVICE TEST SKIPPED: cannot create a device node ({}); run as root",
            std::io::Error::last_os_error()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI runs as root: this must not happen there)");
        }
        eprintln!("\n*** {msg} ***\n");
        return None;
    }
    Some(node)
}

const LOOK: &str = "import os, sys\n\
    p = sys.argv[1]\n\
    try:\n    st = os.stat(p); print('present', os.major(st.st_rdev), os.minor(st.st_rdev), flush=True)\n\
    except OSError as e:\n    print('absent', e.errno, flush=True)\n";

#[test]
fn escape_via_a_device_the_person_did_not_allow() {
    let e = Env::new();
    let Some(node) = render_node(&e) else { return };
    let m = e.p("ward.toml");
    std::fs::write(
        &m,
        format!(
            "name = \"t\"\n[[files]]\npath = \"{}\"\nmode = \"direct\"\n[[devices]]\npath = \"{}\"\nreason = \"model inference\"\n",
            e.p("proj").display(),
            node.display()
        ),
    )
    .unwrap();
    let session = |keys: &[u8]| {
        let mut c = e.command(&["run", "--review", "keep", "-m", m.to_str().unwrap(), "--"]);
        c.args([PY, "-c", LOOK, node.to_str().unwrap()])
            .env("WARD_ASK_TIMEOUT", "20");
        let mut p = Person::spawn(c);
        let asked = p.question(0);
        assert!(
            p.wait_for("grants the agent the gpu", asked, 5).is_some(),
            "{}",
            p.text()
        );
        p.reply(keys);
        let (code, screen) = p.finish(30);
        (code, String::from_utf8_lossy(&screen).into_owned())
    };
    let (code, out) = session(b"y\r");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("present 226 128"),
        "allowed, yet not there: {out}"
    );
    let (code, out) = session(b"n\r");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("absent 2"), "refused, yet there: {out}");
    // Nobody to ask: left out.
    let o = e
        .command(&["run", "--review", "keep", "-m", m.to_str().unwrap(), "--"])
        .args([PY, "-c", LOOK, node.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(text(&o).contains("absent 2"), "{}", text(&o));
    let recs: Vec<_> = e
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "device.gpu")
        .collect();
    let consents: Vec<&str> = recs
        .iter()
        .map(|r| r["consent"].as_str().unwrap())
        .collect();
    assert_eq!(
        consents,
        ["granted", "refused", "nobody to ask"],
        "{recs:?}"
    );
    assert!(
        recs[0]["decision"]["by"]
            .as_str()
            .unwrap()
            .ends_with("ward.toml:6:8"),
        "{:?}",
        recs[0]
    );
    assert_eq!(recs[1]["decision"]["result"], "deny");
    // Something that is not a GPU or a camera cannot be granted at all.
    std::fs::write(&m, "name = \"t\"\n[[devices]]\npath = \"/dev/null\"\n").unwrap();
    let o = e
        .command(&["manifest", "check", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a GPU render node or a camera (device 1:3)"),
        "{}",
        text(&o)
    );
}
