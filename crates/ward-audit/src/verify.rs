//! `ward audit verify`: check every record, every checkpoint signature and the anchor, and
//! report the first record that is wrong.

use crate::error::AuditError;
use crate::hex;
use crate::keys::{verify_sig, Anchor, KeyStore};
use crate::merkle::{leaf_hash, node_hash, Hash};
use crate::record::{checkpoint_message, parse_head, split_line, GENESIS_PREV};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line number of the bad record (one past the end for a truncated log).
    pub line: u64,
    /// Byte offset where that line starts.
    pub offset: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub log_id: Option<String>,
    /// Records that verified (all of them when there is no problem).
    pub records: u64,
    pub checkpoints: u64,
    /// Records covered by the last valid checkpoint signature.
    pub signed: u64,
    /// Whether the anchor (signed head) was found and matched.
    pub anchored: bool,
    /// Records after the anchored head (not yet signed by anything).
    pub beyond_anchor: u64,
    pub warnings: Vec<String>,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

#[derive(Deserialize)]
struct CheckpointLine {
    detail: CheckpointDetail,
}

#[derive(Deserialize)]
struct CheckpointDetail {
    log_id: String,
    size: u64,
    root: String,
    sig: String,
}

/// Verify the log at `path` the way `ward audit verify` does: with the public key (`vk`, else
/// the key store's), the log's anchor, and the other anchors the key store holds for this path
/// (a file that is not the log Ward wrote there is reported as replaced).
pub fn verify_log(
    path: &Path,
    keys: &KeyStore,
    vk: Option<VerifyingKey>,
) -> Result<VerifyReport, AuditError> {
    let data = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    let vk = match vk {
        Some(k) => k,
        None => keys.verifying_key()?.ok_or_else(|| {
            AuditError::Config(format!(
                "no public key in {} to check the signatures with (pass --pubkey FILE)",
                keys.dir.display()
            ))
        })?,
    };
    let id = log_id_of(&data).filter(|id| crate::keys::valid_log_id(id));
    let anchor = match &id {
        Some(id) => keys.read_anchor(id)?,
        None => None,
    };
    let canon = path.canonicalize().map_err(|e| AuditError::io(path, e))?;
    let others: Vec<_> = keys
        .anchors_for_path(&canon.to_string_lossy())?
        .into_iter()
        .filter(|a| Some(&a.log_id) != id.as_ref())
        .collect();
    let mut r = verify_bytes(&data, &vk, anchor.as_ref());
    if r.problem.is_none() {
        if let Some(other) = others.first() {
            r.problem = Some(Problem {
                line: 1,
                offset: 0,
                message: format!(
                    "this is not the log Ward keeps at this path: the key directory holds the signed head of \
                     log {} ({} records) here; the file was replaced",
                    other.log_id, other.seq
                ),
            });
            r.records = 0;
        }
    }
    if let Some(prev) = first_record_previous(&data) {
        r.warnings.push(format!(
            "this log started where an earlier log went missing: {prev}"
        ));
    }
    Ok(r)
}

/// The `previous` logs an `audit.open` record names (a log that was deleted or emptied).
fn first_record_previous(data: &[u8]) -> Option<String> {
    let end = memchr::memchr(b'\n', data)?;
    let v: serde_json::Value = serde_json::from_slice(&data[..end]).ok()?;
    let prev = v["detail"]["previous"].as_array()?;
    Some(
        prev.iter()
            .map(|p| {
                format!(
                    "log {} ({} records)",
                    p["log_id"].as_str().unwrap_or("?"),
                    p["records"]
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Verify the log at `path` with the public key `vk` and, when known, the log's anchor.
pub fn verify(
    path: &Path,
    vk: &VerifyingKey,
    anchor: Option<&Anchor>,
) -> Result<VerifyReport, AuditError> {
    let data = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    Ok(verify_bytes(&data, vk, anchor))
}

/// The log id from the first line of a log file, if it has one.
pub fn log_id_of(data: &[u8]) -> Option<String> {
    let end = data.iter().position(|&b| b == b'\n')?;
    let v: serde_json::Value = serde_json::from_slice(&data[..end]).ok()?;
    v["detail"]["log_id"].as_str().map(str::to_string)
}

/// Per-line results of the parallel pass.
struct LineCheck {
    seq: u64,
    /// The stored hash (checked against the content when `hash_ok`).
    hash: Hash,
    /// RFC 6962 leaf hash of `hash`.
    leaf: Hash,
    flags: u8,
}

const LAYOUT_OK: u8 = 1;
const HASH_OK: u8 = 2;
const CHECKPOINT: u8 = 4;
/// `prev` equals the hash of the line before it in the same range.
const LINKED: u8 = 8;

/// Check one line; `prev` is the stored hash of the line before it in this range.
fn check_line(line: &[u8], prev: Option<&Hash>) -> (LineCheck, Hash) {
    let head = parse_head(line);
    match split_line(line) {
        Some(p) => {
            let computed: Hash = Sha256::digest(p.body).into();
            let mut flags = 0;
            if head.is_some() {
                flags |= LAYOUT_OK;
            }
            if computed == p.hash {
                flags |= HASH_OK;
            }
            if head.is_some_and(|h| h.1 == b"audit.checkpoint") {
                flags |= CHECKPOINT;
            }
            if prev == Some(&p.prev) {
                flags |= LINKED;
            }
            let c = LineCheck {
                seq: head.map_or(0, |h| h.0),
                hash: p.hash,
                leaf: leaf_hash(&p.hash),
                flags,
            };
            (c, p.prev)
        }
        None => (
            LineCheck {
                seq: head.map_or(0, |h| h.0),
                hash: [0; 32],
                leaf: [0; 32],
                flags: 0,
            },
            [0; 32],
        ),
    }
}

/// Leaves per node of the level that is hashed in parallel (2^4).
const GROUP_BITS: u32 = 4;

/// Root of a perfect subtree over `leaves` (a power-of-two count).
fn perfect_root(leaves: &[Hash]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let half = leaves.len() / 2;
    node_hash(
        &perfect_root(&leaves[..half]),
        &perfect_root(&leaves[half..]),
    )
}

/// The RFC 6962 root of the first `size` leaves, from the frontier `stack` over whole groups
/// (the first `size >> GROUP_BITS` group nodes) and the leaves of the partial group after them.
fn root_at(stack: &[Hash], leaves: &[Hash], size: usize) -> Hash {
    let mut parts: Vec<Hash> = stack.to_vec();
    let mut pos = (size >> GROUP_BITS) << GROUP_BITS;
    let rem = size - pos;
    for b in (0..GROUP_BITS).rev() {
        if rem & (1 << b) != 0 {
            parts.push(perfect_root(&leaves[pos..pos + (1 << b)]));
            pos += 1 << b;
        }
    }
    let mut it = parts.iter().rev();
    match it.next() {
        None => Sha256::digest([]).into(),
        Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Run `f` over `items` split into one chunk per thread, in order.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() < 64 {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| s.spawn(|| f(c))).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

pub fn verify_bytes(data: &[u8], vk: &VerifyingKey, anchor: Option<&Anchor>) -> VerifyReport {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let threads = if data.len() < 1 << 20 { 1 } else { threads };

    // 1. In parallel: split the bytes at line boundaries, one range per thread; hash each line
    //    and check its link to the line before it within the range.
    let mut bounds = vec![0usize];
    for k in 1..threads {
        let target = (data.len() / threads * k).max(*bounds.last().unwrap_or(&0));
        if let Some(nl) = memchr::memchr(b'\n', &data[target..]) {
            bounds.push(target + nl + 1);
        }
    }
    bounds.push(data.len());
    bounds.dedup();
    type Part = (Vec<usize>, Vec<LineCheck>, Hash);
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0], w[1]);
                s.spawn(move || {
                    // Records are a few hundred bytes: reserve once instead of regrowing.
                    let mut starts = Vec::with_capacity((to - from) / 200);
                    let mut checks: Vec<LineCheck> = Vec::with_capacity((to - from) / 200);
                    let mut first_prev = [0u8; 32];
                    let mut start = from;
                    for nl in memchr::memchr_iter(b'\n', &data[from..to]) {
                        let end = from + nl;
                        let (c, prev) =
                            check_line(&data[start..end], checks.last().map(|c| &c.hash));
                        if checks.is_empty() {
                            first_prev = prev;
                        }
                        starts.push(start);
                        checks.push(c);
                        start = end + 1;
                    }
                    (starts, checks, first_prev)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| (vec![], vec![], [0; 32])))
            .collect()
    });
    let mut starts: Vec<usize> = Vec::new();
    let mut checks: Vec<LineCheck> = Vec::new();
    for (s, mut c, first_prev) in parts {
        // The first line of a range links to the last line of the previous range.
        if let Some(first) = c.first_mut() {
            let expected = checks.last().map_or(GENESIS_PREV, |l| l.hash);
            if first_prev == expected {
                first.flags |= LINKED;
            } else {
                first.flags &= !LINKED;
            }
        }
        starts.extend(s);
        checks.append(&mut c);
    }
    let complete = starts.last().map_or(0, |&s| {
        s + memchr::memchr(b'\n', &data[s..]).map_or(0, |n| n + 1)
    });
    let torn = complete < data.len();
    let line_of = |i: usize| -> &[u8] {
        let end = starts.get(i + 1).map_or(complete, |&n| n) - 1;
        &data[starts[i]..end]
    };

    let mut r = VerifyReport::default();
    let problem = |i: usize, message: String| Problem {
        line: i as u64 + 1,
        offset: starts.get(i).map_or(complete, |&o| o) as u64,
        message,
    };

    // 2. In order: the first record that breaks the chain.
    let mut first_bad: Option<Problem> = None;
    for (i, c) in checks.iter().enumerate() {
        let n = i as u64 + 1;
        let why = if c.flags & LAYOUT_OK == 0 {
            Some(format!(
                "record {n} is malformed (not a complete Ward audit record)"
            ))
        } else if c.seq != n {
            Some(format!(
                "line {n} holds record {} where record {n} belongs: records were removed, inserted or reordered",
                c.seq
            ))
        } else if c.flags & LINKED == 0 {
            Some(format!(
                "record {n} does not follow record {}: the chain is broken here",
                n - 1
            ))
        } else if c.flags & HASH_OK == 0 {
            Some(format!(
                "record {n} was modified: its content does not match its hash"
            ))
        } else if i == 0 {
            r.log_id = log_id_of(data);
            let open = matches!(parse_head(line_of(0)), Some((_, k)) if k == b"audit.open");
            (!open || r.log_id.is_none())
                .then(|| "record 1 is not the `audit.open` record that starts a log".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            first_bad = Some(problem(i, why));
            break;
        }
    }
    let good = first_bad
        .as_ref()
        .map_or(checks.len(), |p| p.line as usize - 1);

    // 3. In parallel: the Merkle nodes over whole groups of leaves; then, in order, the root
    //    at each checkpoint, compared with what the checkpoint says.
    let leaves: Vec<Hash> = checks[..good].iter().map(|c| c.leaf).collect();
    let groups: Vec<Hash> = par_map(
        &leaves.chunks_exact(1 << GROUP_BITS).collect::<Vec<_>>(),
        threads,
        |gs| gs.iter().map(|g| perfect_root(g)).collect(),
    );
    let mut stack: Vec<Hash> = Vec::new();
    let mut pushed = 0usize;
    let mut sigs: Vec<(usize, Vec<u8>, String)> = Vec::new();
    let mut cp_bad: Option<Problem> = None;
    for i in (0..good).filter(|&i| checks[i].flags & CHECKPOINT != 0) {
        while pushed < i >> GROUP_BITS {
            push_leaf(&mut stack, pushed as u64, groups[pushed]);
            pushed += 1;
        }
        let root = root_at(&stack, &leaves, i);
        let cp: Option<CheckpointLine> = serde_json::from_slice(line_of(i)).ok();
        let why = match cp {
            None => Some("is not readable".to_string()),
            Some(cp) => {
                let d = cp.detail;
                if Some(&d.log_id) != r.log_id.as_ref() {
                    Some("names another log".into())
                } else if d.size != i as u64 {
                    Some(format!("covers {} records but {i} precede it", d.size))
                } else if d.root != hex::encode(&root) {
                    Some("has a Merkle root that does not match the records before it".into())
                } else {
                    sigs.push((i, checkpoint_message(&d.log_id, d.size, &root), d.sig));
                    None
                }
            }
        };
        if let Some(why) = why {
            cp_bad = Some(problem(i, format!("checkpoint record {} {why}", i + 1)));
            break;
        }
    }
    // Signatures are independent of each other: check them in parallel.
    let bad_sigs: Vec<usize> = par_map(&sigs, threads, |part| {
        part.iter()
            .filter(|(_, msg, sig)| !verify_sig(vk, msg, sig))
            .map(|(i, _, _)| *i)
            .collect()
    });
    if let Some(&i) = bad_sigs.iter().min() {
        if cp_bad.as_ref().is_none_or(|p| (i as u64) < p.line - 1) {
            cp_bad = Some(problem(
                i,
                format!("checkpoint record {} has a signature that does not verify with this public key", i + 1),
            ));
        }
    }
    let checked: Vec<usize> = sigs.iter().map(|s| s.0).collect();
    let first = match (first_bad, cp_bad) {
        (Some(a), Some(b)) => Some(if b.line < a.line { b } else { a }),
        (a, b) => a.or(b),
    };
    if let Some(p) = first {
        r.records = p.line - 1;
        r.checkpoints = checked.iter().filter(|&&i| (i as u64) < p.line - 1).count() as u64;
        r.signed = checked
            .iter()
            .copied()
            .filter(|&i| (i as u64) < p.line - 1)
            .max()
            .unwrap_or(0) as u64;
        r.problem = Some(p);
        return r;
    }
    r.records = checks.len() as u64;
    r.checkpoints = checked.len() as u64;
    r.signed = checked.last().copied().unwrap_or(0) as u64;

    // 4. The end of the log against its anchor (the signed head kept beside the key).
    if torn {
        r.warnings.push(format!(
            "the log ends with an incomplete record at byte {complete} (an append interrupted by a crash; it was \
             never acknowledged, and the next writer removes it)"
        ));
    }
    match anchor {
        Some(a) => {
            if !a.verify(vk) {
                r.problem = Some(problem(checks.len(), "the anchor's signature does not verify with this public key".into()));
                return r;
            }
            if a.seq > r.records {
                let msg = format!(
                    "the log ends after record {}, but its anchor says {} records were written: it was truncated",
                    r.records, a.seq
                );
                r.problem = Some(problem(checks.len(), msg));
                return r;
            }
            if a.seq > 0 && hex::encode(&checks[a.seq as usize - 1].hash) != a.head {
                let i = a.seq as usize - 1;
                r.problem = Some(problem(i, format!("record {} is not the record the anchor signed: the log was rewritten", a.seq)));
                return r;
            }
            r.anchored = true;
            if r.records > a.seq {
                r.beyond_anchor = r.records - a.seq;
                r.warnings.push(format!(
                    "records {}..{} come after the signed head: a writer stopped before signing them, or \
                     someone appended them (the next writer adopts them with an `audit.recovered` record)",
                    a.seq + 1,
                    r.records
                ));
            }
        }
        None => r.warnings.push(
            "no anchor for this log was found: records after the last checkpoint could have been cut off \
             without trace"
                .into(),
        ),
    }
    if r.records > r.signed && !r.anchored {
        r.warnings.push(format!(
            "records {}..{} are not yet covered by a signed checkpoint",
            r.signed + 1,
            r.records
        ));
    }
    r
}

/// Append a node to a frontier stack holding `size` nodes of its level.
fn push_leaf(stack: &mut Vec<Hash>, size: u64, leaf: Hash) {
    let mut h = leaf;
    let mut n = size;
    while n & 1 == 1 {
        let left = stack.pop().unwrap_or([0; 32]);
        h = node_hash(&left, &h);
        n >>= 1;
    }
    stack.push(h);
}

/// Every record of the log as JSON, with its line number; a line that is not JSON is an error
/// naming it.
pub fn read_records(path: &Path) -> Result<Vec<(u64, serde_json::Value)>, AuditError> {
    let data = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    parse_records(&data, path)
}

pub(crate) fn parse_records(
    data: &[u8],
    path: &Path,
) -> Result<Vec<(u64, serde_json::Value)>, AuditError> {
    let mut out = Vec::new();
    // A final line without its newline is an append cut short by a crash: not a record.
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for (i, line) in data[..complete].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v = serde_json::from_slice(line).map_err(|e| AuditError::Tampered {
            path: path.to_path_buf(),
            message: format!("line {} is not a JSON record: {e}", i + 1),
        })?;
        out.push((i as u64 + 1, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::root_of;

    #[test]
    fn grouped_roots_match_rfc6962_at_every_size() {
        let data: Vec<[u8; 4]> = (0u32..300).map(|i| i.to_le_bytes()).collect();
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let groups: Vec<Hash> = leaves
            .chunks_exact(1 << GROUP_BITS)
            .map(perfect_root)
            .collect();
        let mut stack = Vec::new();
        let mut pushed = 0;
        for size in 0..=data.len() {
            while pushed < size >> GROUP_BITS {
                push_leaf(&mut stack, pushed as u64, groups[pushed]);
                pushed += 1;
            }
            let refs: Vec<&[u8]> = data[..size].iter().map(|d| d.as_slice()).collect();
            assert_eq!(
                root_at(&stack, &leaves, size),
                root_of(&refs),
                "size {size}"
            );
        }
    }
}
