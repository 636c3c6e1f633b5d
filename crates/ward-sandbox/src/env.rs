//! The agent's environment, scrubbed of credentials before it starts.
//!
//! A variable is removed when its name, upper-cased, matches one of [`DEFAULT_SCRUB`] (globs
//! over the name) or an extra pattern from the manifest, unless it is listed to keep. Proxy
//! variables go too (they can carry credentials, and there is no network inside); the egress
//! proxy issue sets Ward's own after scrubbing.

use std::ffi::{OsStr, OsString};
use ward_core::glob::component_matches;

/// Names removed by default: tokens, keys, secrets and passwords by naming convention, cloud
/// provider credentials, and the sockets of agents that hold keys (ssh-agent, gpg-agent) or
/// grant control of the desktop or the machine (D-Bus, Docker).
pub const DEFAULT_SCRUB: &[&str] = &[
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "API_KEY",
    "APIKEY",
    "*_APIKEY",
    "*_PAT",
    "*_JWT",
    "*_PROXY",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "NPM_CONFIG_*",
    "*_TOKEN",
    "*_TOKENS",
    "*TOKEN_*",
    "*_KEY",
    "*_KEYS",
    "*_KEY_*",
    "*_SECRET",
    "*_SECRETS",
    "*SECRET_*",
    "*_PASSWORD",
    "*_PASSWD",
    "*_PASS",
    "*_PWD_*",
    "*_CREDENTIALS",
    "*_CREDENTIAL",
    "*_AUTH",
    "*_COOKIE",
    "*_SESSION",
    "AWS_*",
    "AZURE_*",
    "ARM_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_*",
    "GCP_*",
    "DIGITALOCEAN_*",
    "HCLOUD_*",
    "OPENAI_*",
    "ANTHROPIC_*",
    "HF_*",
    "HUGGING_FACE_*",
    "GITHUB_*",
    "GH_*",
    "GITLAB_*",
    "NPM_*",
    "PYPI_*",
    "TWINE_*",
    "CARGO_REGISTRY_*",
    "DOCKER_*",
    "KUBECONFIG",
    "VAULT_*",
    "KRB5CCNAME",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_AGENT_INFO",
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS",
    "XAUTHORITY",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "DATABASE_URL",
    "*_DATABASE_URL",
    "*_DSN",
    "PGPASSWORD",
    "MYSQL_PWD",
    "REDIS_URL",
    "SENTRY_DSN",
    "SLACK_*",
    "STRIPE_*",
    "TWILIO_*",
    "SENDGRID_*",
];

/// Which variables to remove.
#[derive(Debug, Clone)]
pub struct Scrub {
    patterns: Vec<String>,
    /// The manifest's and managed files' patterns: removed whatever `keep` says.
    extra: Vec<String>,
    keep: Vec<String>,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub {
            patterns: DEFAULT_SCRUB.iter().map(|s| s.to_string()).collect(),
            extra: Vec::new(),
            keep: Vec::new(),
        }
    }
}

impl Scrub {
    /// Add patterns (the manifest's `env.scrub`) and names to keep (`env.keep`): a kept name
    /// escapes the built-in list, never an added pattern.
    pub fn with(mut self, extra: &[String], keep: &[String]) -> Self {
        self.extra
            .extend(extra.iter().map(|p| p.to_ascii_uppercase()));
        self.keep.extend(keep.iter().cloned());
        self
    }

    /// Whether `name` is removed.
    pub fn removes(&self, name: &OsStr) -> bool {
        // A name that is not UTF-8 is nobody's convention: remove it rather than guess.
        let Some(name) = name.to_str() else {
            return true;
        };
        let upper = name.to_ascii_uppercase();
        if self.extra.iter().any(|p| component_matches(p, &upper)) {
            return true;
        }
        if self.keep.iter().any(|k| k == name) {
            return false;
        }
        self.patterns
            .iter()
            .any(|p| component_matches(p, &upper) || component_matches(p, name))
    }

    /// Split `vars` into what the agent gets and the names removed.
    pub fn apply(
        &self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> (Vec<(OsString, OsString)>, Vec<String>) {
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for (k, v) in vars {
            if self.removes(&k) {
                removed.push(k.to_string_lossy().into_owned());
            } else {
                kept.push((k, v));
            }
        }
        removed.sort();
        (kept, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removes(name: &str) -> bool {
        Scrub::default().removes(OsStr::new(name))
    }

    #[test]
    fn credentials_go_and_ordinary_variables_stay() {
        for name in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "NPM_TOKEN",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AZURE_CLIENT_SECRET",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "SSH_AUTH_SOCK",
            "DBUS_SESSION_BUS_ADDRESS",
            "MY_APP_SECRET",
            "STRIPE_SECRET_KEY",
            "DB_PASSWORD",
            "DATABASE_URL",
            "SLACK_BOT_TOKEN",
            "DOCKER_HOST",
            "KUBECONFIG",
            "github_token",
            "https_proxy",
            "HTTPS_PROXY",
            "TOKEN",
            "STRIPE_APIKEY",
        ] {
            assert!(removes(name), "{name} must be scrubbed");
        }
        for name in [
            "PATH", "HOME", "LANG", "TERM", "USER", "SHELL", "EDITOR", "TZ", "PWD", "KEYMAP",
        ] {
            assert!(!removes(name), "{name} must stay");
        }
    }

    #[test]
    fn the_manifest_can_extend_and_keep() {
        let s = Scrub::default().with(&["CORP_*".into()], &["GH_HOST".into()]);
        assert!(s.removes(OsStr::new("CORP_VPN")));
        assert!(!s.removes(OsStr::new("GH_HOST")));
        let (kept, removed) = s.apply([
            (OsString::from("PATH"), OsString::from("/bin")),
            (OsString::from("CORP_X"), OsString::from("1")),
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!(removed, ["CORP_X"]);
    }
}
