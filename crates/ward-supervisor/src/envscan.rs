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

/// Whether a value may hold a credential: a URL with a user part, a PEM block, a long run of
/// letters and digits that is not a path, or any value of a variable named like a secret.
fn suspect(name: &str, v: &str) -> bool {
    // A path names a file; the file may be secret, the name is not. (A path: a `/` or `~/`
    // first, at least two `/`, and only the characters paths are usually made of; a base64
    // secret that starts with `/` has `+` or `=`, or no second `/`, often enough to be kept.)
    let pathlike = (v.starts_with('/') || v.starts_with("~/"))
        && v.matches('/').count() >= 2
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~' | b':')
        });
    if pathlike {
        return false;
    }
    let n = name.to_ascii_uppercase();
    if [
        "KEY", "TOKEN", "SECRET", "PASS", "CRED", "AUTH", "COOKIE", "DSN", "URL", "URI",
    ]
    .iter()
    .any(|w| n.contains(w))
    {
        return true;
    }
    if (v.contains("://") && v.contains('@')) || v.contains("-----BEGIN") {
        return true;
    }
    v.split(|c: char| c.is_whitespace() || matches!(c, ':' | ';' | ',' | '"' | '\'' | '|' | '='))
        .any(|t| {
            t.len() >= 20
                && !t.starts_with('/')
                && !t.starts_with('.')
                && t.bytes().any(|b| b.is_ascii_digit())
                && t.bytes().any(|b| b.is_ascii_alphabetic())
        })
}

/// (name, rule) of each variable of `vars` whose value the scanner finds a credential in.
pub fn credentials(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scanner: Option<ward_scan::Scanner> = None;
    for (k, v) in vars {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        // Short values, paths and plain words hold no credential worth a scan (and most
        // environments hold nothing else: the scanner is then never built).
        if v.len() < 8 || v.len() > VALUE_LIMIT || CERT_PATHS.contains(&k) || !suspect(k, v) {
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
        // What a desktop session's environment holds is not even scanned.
        for (k, v) in [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            (
                "LS_COLORS",
                "rs=0:di=01;34:ln=01;36:mh=00:pi=40;33:so=01;35:*.tar=01;31",
            ),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"),
            ("SSH_CONNECTION", "10.0.2.2 50122 10.0.2.15 22"),
            ("LESSOPEN", "| /usr/bin/lesspipe %s"),
            (
                "XDG_DATA_DIRS",
                "/usr/share/gnome:/usr/local/share/:/usr/share/",
            ),
            ("XAUTHORITY", "/run/user/1000/gdm/Xauthority"),
            ("XDG_SESSION_ID", "c2"),
        ] {
            assert!(!suspect(k, v), "{k}");
        }
    }
}
