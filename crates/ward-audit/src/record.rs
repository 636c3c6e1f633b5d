//! One line of the log and its fixed layout.
//!
//! ```text
//! {"seq":7,"ts":"2026-11-25T00:13:15.123456Z","kind":"file.read",...,"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//! `hash` is SHA-256 of every byte before `,"hash":`, which includes `prev`, the previous
//! record's hash: that is the chain. The layout is fixed so that verification can check the
//! chain without parsing JSON.

use crate::hex;
use crate::merkle::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ward_core::{Action, Decision, Effect};

/// `prev` of the first record.
pub const GENESIS_PREV: Hash = [0u8; 32];

/// What a caller records. Every field but `kind` is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The action kind (`file.read`, `net.upload`, ...) or a Ward event (`session.start`,
    /// `audit.checkpoint`, ...).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<EventDecision>,
    /// `granted`, `refused`, `timeout`, ... when a person was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// Capability token id the action was authorized under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDecision {
    pub result: Effect,
    pub by: ward_core::By,
    pub reason: String,
}

impl Event {
    pub fn new(kind: ward_core::EventKind) -> Self {
        Event {
            kind: kind.as_str().to_string(),
            ..Event::default()
        }
    }

    /// The record of a decision on an action.
    pub fn action(a: &Action, d: &Decision) -> Self {
        Event {
            kind: a.kind.as_str(),
            agent: a.agent.clone(),
            resource: (!a.resource.is_empty()).then(|| a.resource.clone()),
            dest: a.dest.clone(),
            size: a.size,
            decision: Some(EventDecision {
                result: d.effect,
                by: d.by.clone(),
                reason: d.reason.clone(),
            }),
            ..Event::default()
        }
    }
}

/// Append one record to `out` and return its hash. `scratch` is reused between calls.
pub(crate) fn encode_line(
    seq: u64,
    ts: &str,
    ev: &Event,
    prev: &Hash,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Hash {
    let start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",");
    // An Event always serializes (plain data); its object's braces are dropped to splice it in.
    scratch.clear();
    if serde_json::to_writer(&mut *scratch, ev).is_err() || scratch.len() < 2 {
        scratch.clear();
        scratch.extend_from_slice(b"{\"kind\":\"unserializable\"}");
    }
    out.extend_from_slice(&scratch[1..scratch.len() - 1]);
    out.extend_from_slice(b",\"prev\":\"");
    hex::encode_into(prev, out);
    out.push(b'"');
    let hash: Hash = Sha256::digest(&out[start..]).into();
    out.extend_from_slice(b",\"hash\":\"");
    hex::encode_into(&hash, out);
    out.extend_from_slice(b"\"}\n");
    hash
}

/// The parts of a line (without its newline) that the chain needs.
pub(crate) struct Parts<'a> {
    pub body: &'a [u8],
    pub prev: Hash,
    pub hash: Hash,
}

const HASH_SUFFIX: usize = 9 + 64 + 2; // ,"hash":"<64>"}
const PREV_SUFFIX: usize = 9 + 64 + 1; // ,"prev":"<64>"

pub(crate) fn split_line(line: &[u8]) -> Option<Parts<'_>> {
    let n = line.len();
    if n < HASH_SUFFIX + PREV_SUFFIX + 8 || !line.ends_with(b"\"}") {
        return None;
    }
    if &line[n - HASH_SUFFIX..n - HASH_SUFFIX + 9] != b",\"hash\":\"" {
        return None;
    }
    let hash = hex::decode32(&line[n - 66..n - 2])?;
    let body = &line[..n - HASH_SUFFIX];
    let b = body.len();
    if &body[b - PREV_SUFFIX..b - PREV_SUFFIX + 9] != b",\"prev\":\"" || body[b - 1] != b'"' {
        return None;
    }
    let prev = hex::decode32(&body[b - 65..b - 1])?;
    Some(Parts { body, prev, hash })
}

/// `(seq, kind)` read from the fixed head `{"seq":N,"ts":"...","kind":"..."`.
pub(crate) fn parse_head(line: &[u8]) -> Option<(u64, &[u8])> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"ts\":\"")?;
    let q = rest.iter().position(|&b| b == b'"')?;
    let rest = rest[q + 1..].strip_prefix(b",\"kind\":\"")?;
    let k = rest.iter().position(|&b| b == b'"')?;
    Some((seq, &rest[..k]))
}

/// What a checkpoint signs.
pub(crate) fn checkpoint_message(log_id: &str, size: u64, root: &Hash) -> Vec<u8> {
    format!(
        "ward-audit-checkpoint/v1\n{log_id}\n{size}\n{}\n",
        hex::encode(root)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_layout_round_trips() {
        let mut out = Vec::new();
        let ev = Event {
            resource: Some("/a \"quoted\" \u{2028} path".into()),
            kind: ward_core::ActionKind::FileRead.as_str(),
            ..Event::default()
        };
        let h = encode_line(
            12,
            "2026-11-25T00:00:00.000000Z",
            &ev,
            &[7u8; 32],
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        let p = split_line(line).unwrap();
        assert_eq!(p.hash, h);
        assert_eq!(p.prev, [7u8; 32]);
        assert_eq!(Sha256::digest(p.body).as_slice(), h);
        assert_eq!(parse_head(line), Some((12, &b"file.read"[..])));
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["resource"], "/a \"quoted\" \u{2028} path");
        assert_eq!(v["seq"], 12);
    }
}
