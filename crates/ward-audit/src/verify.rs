//! `ward audit verify`: check every record, every checkpoint signature and the anchor, and
//! report the first record that is wrong.

use crate::error::AuditError;
use crate::hex;
use crate::keys::{verify_sig, Anchor};
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

/// Verify the log at `path` with the public key `vk` and, when known, the log's anchor.
pub fn verify(path: &Path, vk: &VerifyingKey, anchor: Option<&Anchor>) -> Result<VerifyReport, AuditError> {
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
    seq: Option<u64>,
    is_checkpoint: bool,
    prev: Hash,
    hash: Hash,
    leaf: Hash,
    /// Layout parsed and the stored hash matches the content.
    layout_ok: bool,
    hash_ok: bool,
}

fn check_line(line: &[u8]) -> LineCheck {
    let head = parse_head(line);
    match split_line(line) {
        Some(p) => {
            let computed: Hash = Sha256::digest(p.body).into();
            LineCheck {
                seq: head.map(|h| h.0),
                is_checkpoint: head.is_some_and(|h| h.1 == b"audit.checkpoint"),
                prev: p.prev,
                hash: p.hash,
                leaf: leaf_hash(&p.hash),
                layout_ok: head.is_some(),
                hash_ok: computed == p.hash,
            }
        }
        None => LineCheck {
            seq: head.map(|h| h.0),
            is_checkpoint: false,
            prev: [0; 32],
            hash: [0; 32],
            leaf: [0; 32],
            layout_ok: false,
            hash_ok: false,
        },
    }
}

pub fn verify_bytes(data: &[u8], vk: &VerifyingKey, anchor: Option<&Anchor>) -> VerifyReport {
    // Line boundaries; a final segment without a newline is a torn append.
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines.push((start, i));
            start = i + 1;
        }
    }
    let torn = start < data.len();

    // Hash every line in parallel: each line's hash depends only on its own bytes.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = lines.len().div_ceil(threads).max(1024);
    let checks: Vec<LineCheck> = std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|&(a, b)| check_line(&data[a..b])).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });

    let mut r = VerifyReport::default();
    let fail = |r: &mut VerifyReport, i: usize, message: String| {
        r.problem = Some(Problem {
            line: i as u64 + 1,
            offset: lines.get(i).map_or(data.len(), |l| l.0) as u64,
            message,
        });
    };
    if checks.len() != lines.len() {
        fail(&mut r, 0, "internal error: a verification thread failed".into());
        return r;
    }
    let mut size: u64 = 0;
    let mut stack: Vec<Hash> = Vec::new();
    let mut prev = GENESIS_PREV;
    for (i, c) in checks.iter().enumerate() {
        let n = i as u64 + 1;
        if !c.layout_ok {
            fail(&mut r, i, format!("record {n} is malformed (not a complete Ward audit record)"));
            return r;
        }
        if c.seq != Some(n) {
            fail(
                &mut r,
                i,
                format!(
                    "line {n} holds record {} where record {n} belongs: records were removed, inserted or reordered",
                    c.seq.unwrap_or(0)
                ),
            );
            return r;
        }
        if c.prev != prev {
            fail(&mut r, i, format!("record {n} does not follow record {}: the chain is broken here", n - 1));
            return r;
        }
        if !c.hash_ok {
            fail(&mut r, i, format!("record {n} was modified: its content does not match its hash"));
            return r;
        }
        if i == 0 {
            let (a, b) = lines[0];
            let kind_ok = matches!(parse_head(&data[a..b]), Some((_, k)) if k == b"audit.open");
            r.log_id = log_id_of(data);
            if !kind_ok || r.log_id.is_none() {
                fail(&mut r, 0, "record 1 is not the `audit.open` record that starts a log".into());
                return r;
            }
        }
        if c.is_checkpoint {
            let (a, b) = lines[i];
            let cp: Option<CheckpointLine> = serde_json::from_slice(&data[a..b]).ok();
            let root = root_of_stack(&stack);
            let why = match cp {
                None => Some("is not readable".to_string()),
                Some(cp) => {
                    let d = cp.detail;
                    if Some(&d.log_id) != r.log_id.as_ref() {
                        Some("names another log".into())
                    } else if d.size != size {
                        Some(format!("covers {} records but {size} precede it", d.size))
                    } else if d.root != hex::encode(&root) {
                        Some("has a Merkle root that does not match the records before it".into())
                    } else if !verify_sig(vk, &checkpoint_message(&d.log_id, d.size, &root), &d.sig) {
                        Some("has a signature that does not verify with this public key".into())
                    } else {
                        None
                    }
                }
            };
            if let Some(why) = why {
                fail(&mut r, i, format!("checkpoint record {n} {why}"));
                return r;
            }
            r.checkpoints += 1;
            r.signed = size;
        }
        push_leaf(&mut stack, size, c.leaf);
        size += 1;
        prev = c.hash;
        r.records = n;
    }

    if torn {
        r.warnings.push(format!(
            "the log ends with an incomplete record at byte {start} (an append interrupted by a crash; it was \
             never acknowledged, and the next writer removes it)"
        ));
    }
    match anchor {
        Some(a) => {
            if !a.verify(vk) {
                fail(&mut r, lines.len(), "the anchor's signature does not verify with this public key".into());
                return r;
            }
            if a.seq > r.records {
                let msg = format!(
                    "the log ends after record {}, but its anchor says {} records were written: it was truncated",
                    r.records, a.seq
                );
                fail(&mut r, lines.len(), msg);
                return r;
            }
            if a.seq > 0 && hex::encode(&checks[a.seq as usize - 1].hash) != a.head {
                fail(
                    &mut r,
                    a.seq as usize - 1,
                    format!("record {} is not the record the anchor signed: the log was rewritten", a.seq),
                );
                return r;
            }
            r.anchored = true;
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

/// Append a leaf hash to a frontier stack holding `size` leaves.
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

fn root_of_stack(stack: &[Hash]) -> Hash {
    let mut it = stack.iter().rev();
    match it.next() {
        None => Sha256::digest([]).into(),
        Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Every record of the log as JSON, with its line number; a line that is not JSON is an error
/// naming it.
pub fn read_records(path: &Path) -> Result<Vec<(u64, serde_json::Value)>, AuditError> {
    let data = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
    parse_records(&data, path)
}

pub(crate) fn parse_records(data: &[u8], path: &Path) -> Result<Vec<(u64, serde_json::Value)>, AuditError> {
    let mut out = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
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
