//! Credentials in the environment whatever their variable's name: each value (with its name,
//! which the scanner's context words use) goes through `ward-scan`; a variable whose value is
//! a credential or a connection string with a password is removed before the agent starts
//! and named in the session's record (never its value). Variables that name a certificate
//! file or folder are kept: they point at public data clients need.

use std::ffi::OsString;

/// Variables that hold paths to CA certificates: kept whatever the scanner says.
pub const CERT_PATHS: &[&str] = &[
    "AWS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "PIP_CERT",
    "NIX_SSL_CERT_FILE",
    "CARGO_HTTP_CAINFO",
];

/// Values longer than this are not scanned (nothing legitimate in an environment is).
const VALUE_LIMIT: usize = 64 << 10;

/// (name, rule) of each variable of `vars` whose value the scanner finds a credential in.
pub fn credentials(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scanner: Option<ward_scan::Scanner> = None;
    for (k, v) in vars {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        // Short values and paths hold no credential worth a scan.
        if v.len() < 8 || v.len() > VALUE_LIMIT || CERT_PATHS.contains(&k) {
            continue;
        }
        let s = scanner.get_or_insert_with(ward_scan::Scanner::builtin);
        let text = format!("{k}={v}\n");
        let found = s.scan(text.as_bytes()).into_iter().find(|f| {
            f.kind == ward_scan::Kind::Secret
                && f.confidence >= ward_scan::Confidence::Medium
                // The finding is in the value, not only in the name.
                && f.end > k.len() + 1
        });
        if let Some(f) = found {
            out.push((k.to_string(), f.rule));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn credentials_are_found_by_value_and_certificate_paths_kept() {
        let payload = "R2d2C3poBb8Ff6Gg5Hh4Jj3Kk2Ll1M";
        let gh = format!(
            "ghp_{payload}{}",
            ward_scan::base62_checksum(payload.as_bytes())
        );
        let found = credentials(vars(&[
            ("MY_HARMLESS_NAME", &gh),
            (
                "DATABASE",
                "postgres://app:s3cr3t-passw0rd@db.internal:5432/app",
            ),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("EDITOR", "vim"),
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
            ("LANG", "C.UTF-8"),
        ]));
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["MY_HARMLESS_NAME", "DATABASE"], "{found:?}");
    }
}
