//! Export to OCSF (Open Cybersecurity Schema Framework) for SIEMs, carrying the hash chain in
//! the `record_integrity` profile's `attestation` object.
//!
//! Each record keeps everything it said under `unmapped.ward`, so nothing is lost in export.

use crate::time::parse_millis;
use serde_json::{json, Value};

/// The OCSF schema version the events are written against.
pub const OCSF_VERSION: &str = "1.5.0";

/// (class_uid, class_name, category_uid, category_name, activity_id, activity_name)
fn classify(kind: &str) -> (u32, &'static str, u32, &'static str, u32, &'static str) {
    match kind {
        "file.read" => (
            1001,
            "File System Activity",
            1,
            "System Activity",
            2,
            "Read",
        ),
        "file.write" => (
            1001,
            "File System Activity",
            1,
            "System Activity",
            3,
            "Update",
        ),
        "file.delete" => (
            1001,
            "File System Activity",
            1,
            "System Activity",
            4,
            "Delete",
        ),
        "exec" => (1007, "Process Activity", 1, "System Activity", 1, "Launch"),
        "net.connect" => (4001, "Network Activity", 4, "Network Activity", 1, "Open"),
        "net.failed" => (4001, "Network Activity", 4, "Network Activity", 4, "Fail"),
        "net.upload" => (4002, "HTTP Activity", 4, "Network Activity", 6, "Post"),
        _ => (6003, "API Activity", 6, "Application Activity", 99, "Other"),
    }
}

fn sha256(value: &Value) -> Value {
    json!({"algorithm": "SHA-256", "algorithm_id": 3, "value": value})
}

/// One audit record as an OCSF event.
pub fn to_ocsf(rec: &Value) -> Value {
    let kind = rec["kind"].as_str().unwrap_or("unknown");
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        classify(kind);
    let seq = rec["seq"].as_u64().unwrap_or(0);
    let time = rec["ts"].as_str().and_then(parse_millis).unwrap_or(0);
    let result = rec["decision"]["result"].as_str();
    let (action_id, action, disposition_id, disposition, severity_id, severity) = match result {
        Some("allow") => (1, "Allowed", 1, "Allowed", 1, "Informational"),
        Some("ask") => (99, "Ask", 99, "Held for consent", 2, "Low"),
        Some("deny") => (2, "Denied", 2, "Blocked", 3, "Medium"),
        _ => (0, "Unknown", 0, "Unknown", 1, "Informational"),
    };
    let chain = rec["session"].as_str().map(str::to_string);
    let mut ev = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": time,
        "severity_id": severity_id,
        "severity": severity,
        "message": rec["decision"]["reason"].as_str().unwrap_or(kind),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "Ward", "vendor_name": "Ward", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "ward-audit",
            "sequence": seq,
            "profiles": ["security_control", "record_integrity"],
        },
        "attestation": {
            "fingerprint": sha256(&rec["hash"]),
            "prev_event": {"fingerprint": sha256(&rec["prev"]), "sequence": seq.saturating_sub(1)},
        },
        "unmapped": {"ward": rec},
    });
    if result.is_some() {
        ev["action_id"] = json!(action_id);
        ev["action"] = json!(action);
        ev["disposition_id"] = json!(disposition_id);
        ev["disposition"] = json!(disposition);
        let (status_id, status) = match result {
            Some("deny") => (2, "Failure"),
            Some("ask") => (99, "Held for consent"),
            _ => (1, "Success"),
        };
        ev["status_id"] = json!(status_id);
        ev["status"] = json!(status);
        ev["policy"] = json!({"uid": rec["decision"]["by"], "desc": rec["decision"]["reason"]});
    }
    if let Some(s) = &chain {
        ev["actor"] = json!({"session": {"uid": s}});
    }
    if let Some(a) = rec["agent"].as_str() {
        ev["actor"]["app_name"] = json!(a);
    }
    let resource = rec["resource"].clone();
    match class_uid {
        1001 => {
            ev["file"] = json!({"path": resource, "name": resource.as_str().and_then(|p| p.rsplit('/').next()), "type_id": 0})
        }
        1007 => ev["process"] = json!({"cmd_line": resource}),
        4001 | 4002 => {
            let host = rec["dest"]
                .as_str()
                .or_else(|| resource.as_str().and_then(url_host));
            ev["dst_endpoint"] = json!({"hostname": host});
            if let Some(n) = rec["size"].as_u64() {
                ev["traffic"] = json!({"bytes_out": n});
            }
            if class_uid == 4002 {
                ev["http_request"] = json!({"http_method": "POST", "url": {"url_string": resource}, "length": rec["size"]});
            }
        }
        _ => ev["api"] = json!({"operation": kind, "service": {"name": "ward"}}),
    }
    if kind == "audit.checkpoint" {
        let d = &rec["detail"];
        ev["attestation"]["chain_uid"] = d["log_id"].clone();
        ev["attestation"]["signatures"] = json!([{
            "algorithm": "Ed25519",
            "algorithm_id": 99,
            "value": d["sig"],
            "digest": {"algorithm": "RFC 6962 Merkle root (SHA-256)", "algorithm_id": 99, "value": d["root"]},
            "certificate": {"uid": d["key"]},
        }]);
    }
    ev
}

/// The host of a URL (`https://user@host:port/path` -> `host`).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '\\', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => host,
    };
    (!host.is_empty()).then_some(host)
}

/// Export every record, setting `attestation.chain_uid` to the log's id throughout.
pub fn export_ocsf(records: &[(u64, Value)]) -> Vec<Value> {
    let log_id = records
        .first()
        .and_then(|(_, r)| r["detail"]["log_id"].as_str())
        .unwrap_or("")
        .to_string();
    records
        .iter()
        .map(|(_, r)| {
            let mut ev = to_ocsf(r);
            ev["attestation"]["chain_uid"] = json!(log_id);
            ev["metadata"]["uid"] = json!(format!("{log_id}-{}", r["seq"]));
            ev
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_denied_upload() {
        let rec = json!({"seq": 5, "ts": "2026-11-25T00:00:01.500000Z", "kind": "net.upload",
            "dest": "uploads.acme.com", "size": 20971520, "resource": "https://uploads.acme.com/",
            "decision": {"result": "deny", "by": "policy:p.rego#data.x", "reason": "too big"},
            "prev": "aa", "hash": "bb"});
        let out = export_ocsf(&[(1, json!({"detail": {"log_id": "L"}})), (5, rec)]);
        let ev = &out[1];
        assert_eq!(ev["class_uid"], 4002);
        assert_eq!(ev["type_uid"], 400206);
        assert_eq!(ev["time"], 1_795_564_801_500i64);
        assert_eq!(ev["disposition"], "Blocked");
        assert_eq!(ev["action_id"], 2);
        assert_eq!(ev["attestation"]["fingerprint"]["value"], "bb");
        assert_eq!(
            ev["attestation"]["prev_event"]["fingerprint"]["value"],
            "aa"
        );
        assert_eq!(ev["attestation"]["chain_uid"], "L");
        assert_eq!(ev["dst_endpoint"]["hostname"], "uploads.acme.com");
        assert_eq!(
            ev["unmapped"]["ward"]["decision"]["by"],
            "policy:p.rego#data.x"
        );
    }
}
