//! Built-in agent profiles: what Claude Code, Codex and Gemini CLI need to work under Ward, and
//! what they must never get.
//!
//! A profile is a manifest fragment (its API destinations, the variables it keeps, sets and
//! never gets) loaded by the same validator as a person's manifest, with origins `profile
//! NAME:LINE`, and merged under the person's manifest: their `deny` entries and `env.scrub`
//! beat the profile's allows and keeps (deny > ask > allow; a scrub beats a keep), and the
//! managed file narrows both. Beside the fragment: the name of the agent's own home (one per
//! profile, kept under Ward's state) and the files its home starts with, which turn off a
//! nested sandbox of the agent's own (Ward is its sandbox; theirs cannot nest inside Ward's).
//!
//! The profile is chosen by `--profile NAME` (or `none`), else the manifest's `profile` key,
//! else the agent's program name (`claude`, `codex`, `gemini`).

use super::raw::{self, Pos};
use super::validate::{build, Ctx};
use super::{LoadOptions, Manifest, ManifestError};
use std::path::Path;

/// One built-in profile.
pub struct Profile {
    pub name: &'static str,
    /// Program names (the last part of the agent's command) that choose it.
    pub commands: &'static [&'static str],
    /// One line on the agent.
    pub about: &'static str,
    /// The manifest fragment: `[network]`, `[env]` (keep, scrub, set), `deny_paths`.
    pub manifest: &'static str,
    /// Files the agent's home starts with, when it does not have them: path below the home,
    /// contents, and why.
    pub seed: &'static [Seed],
    /// What the agent never gets, in words (each is enforced by the fragment or by Ward).
    pub never: &'static [&'static str],
    /// What in its home runs code in its later sessions (hooks, MCP servers, permission
    /// allow-lists): held for review at the end of a session, not written through. `rel` is a
    /// file, `rel/` a folder and all it holds, `rel#/a/*/b` some keys of a JSON file (`*`: any
    /// key); the files these name in the home are held too.
    pub guard: &'static [&'static str],
}

/// A file the agent's home starts with.
pub struct Seed {
    pub path: &'static str,
    pub contents: &'static str,
    pub why: &'static str,
}

/// Ward's profiles.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "claude",
        commands: &["claude", "claude-code"],
        about: "Claude Code (Anthropic)",
        manifest: r#"
[network]
# The API, and the sign-in and token refresh of a Claude account.
allow = [
  "https://api.anthropic.com",
  "https://console.anthropic.com",
  "https://platform.claude.com",
  "https://claude.ai",
]

[env]
# Its own key and settings (the keys pass as placeholders: see [[credentials]] below).
keep = [
  "ANTHROPIC_API_KEY",
  "ANTHROPIC_AUTH_TOKEN",
  "CLAUDE_CODE_OAUTH_TOKEN",
  "ANTHROPIC_BASE_URL",
  "ANTHROPIC_MODEL",
  "ANTHROPIC_SMALL_FAST_MODEL",
]
# Other providers' keys, whatever a manifest keeps.
scrub = ["OPENAI_*", "CODEX_*", "GEMINI_*", "GOOGLE_API_KEY"]
# No telemetry, error reports or update checks (they would only be refused), and no
# self-update (its installation is read-only inside).
set = { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_AUTOUPDATER = "1" }

# Its keys stay with Ward: the agent holds placeholders, the proxy puts each key in
# toward the API only (not when a base URL sends its requests elsewhere).
[[credentials]]
name = "anthropic-api-key"
secret = "env:ANTHROPIC_API_KEY"
env = "ANTHROPIC_API_KEY"
to = "https://api.anthropic.com/"
header = "x-api-key"
optional = true
unless_env = ["ANTHROPIC_BASE_URL"]
[[credentials]]
name = "anthropic-auth-token"
secret = "env:ANTHROPIC_AUTH_TOKEN"
env = "ANTHROPIC_AUTH_TOKEN"
to = "https://api.anthropic.com/"
header = "authorization"
optional = true
unless_env = ["ANTHROPIC_BASE_URL"]
[[credentials]]
name = "claude-oauth-token"
secret = "env:CLAUDE_CODE_OAUTH_TOKEN"
env = "CLAUDE_CODE_OAUTH_TOKEN"
to = "https://api.anthropic.com/"
header = "authorization"
optional = true
unless_env = ["ANTHROPIC_BASE_URL"]
"#,
        seed: &[],
        never: &[
            "your own ~/.claude and ~/.claude.json: its home is Ward's (homes/claude), where it \
             signs in once",
            "other providers' keys (OPENAI_*, CODEX_*, GEMINI_*, GOOGLE_API_KEY)",
            "a sandbox of its own: Claude Code's is off unless its settings turn it on, and it \
             cannot nest inside Ward's",
        ],
        guard: &[
            ".claude/settings.json",
            ".claude/settings.local.json",
            // Its own state file, rewritten all the time: only the keys that start servers,
            // run a helper, set variables or widen permissions are held.
            ".claude.json#/mcpServers",
            ".claude.json#/apiKeyHelper",
            ".claude.json#/env",
            ".claude.json#/projects/*/mcpServers",
            ".claude.json#/projects/*/allowedTools",
            ".claude.json#/projects/*/enabledMcpjsonServers",
            ".claude.json#/projects/*/enableAllProjectMcpServers",
            // Plugins (hooks, servers), skills (scripts), commands (`!` runs the shell),
            // subagents (their tools) and the usual folder of hook scripts.
            ".claude/plugins/",
            ".claude/skills/",
            ".claude/commands/",
            ".claude/agents/",
            ".claude/hooks/",
        ],
    },
    Profile {
        name: "codex",
        commands: &["codex"],
        about: "Codex CLI (OpenAI)",
        manifest: r#"
[network]
# The API, the ChatGPT sign-in's backend, and sign-in and token refresh.
allow = [
  "https://api.openai.com",
  "https://chatgpt.com",
  "https://auth.openai.com",
]

[env]
keep = [
  "OPENAI_API_KEY",
  "CODEX_API_KEY",
  "OPENAI_BASE_URL",
  "OPENAI_ORGANIZATION",
  "OPENAI_PROJECT",
]
scrub = ["ANTHROPIC_*", "CLAUDE_*", "GEMINI_*", "GOOGLE_API_KEY"]

# Its keys stay with Ward: the agent holds placeholders, the proxy puts each key in
# toward the API only (not when a base URL sends its requests elsewhere).
[[credentials]]
name = "openai-api-key"
secret = "env:OPENAI_API_KEY"
env = "OPENAI_API_KEY"
to = "https://api.openai.com/"
header = "authorization"
optional = true
unless_env = ["OPENAI_BASE_URL"]
[[credentials]]
name = "codex-api-key"
secret = "env:CODEX_API_KEY"
env = "CODEX_API_KEY"
to = "https://api.openai.com/"
header = "authorization"
optional = true
unless_env = ["OPENAI_BASE_URL"]
"#,
        seed: &[Seed {
            path: ".codex/config.toml",
            contents: "# Written by Ward when this home was new: Ward is Codex's sandbox here \
                       (its own bubblewrap\n# sandbox cannot nest inside Ward's). Ward's grants, \
                       network rules and review still apply.\nsandbox_mode = \
                       \"danger-full-access\"\n",
            why: "Codex's own sandbox off: it cannot nest inside Ward's",
        }],
        never: &[
            "your own ~/.codex: its home is Ward's (homes/codex)",
            "other providers' keys (ANTHROPIC_*, CLAUDE_*, GEMINI_*, GOOGLE_API_KEY)",
            "its own sandbox (bubblewrap): Ward is its sandbox",
        ],
        guard: &[
            ".codex/config.toml",
            // Its hooks, and its rules of commands it may run without asking.
            ".codex/hooks.json",
            ".codex/rules/",
            ".codex/skills/",
        ],
    },
    Profile {
        name: "gemini",
        commands: &["gemini"],
        about: "Gemini CLI (Google)",
        manifest: r#"
[network]
# The Gemini API, the API behind a Google sign-in, and the sign-in's tokens.
allow = [
  "https://generativelanguage.googleapis.com",
  "https://cloudcode-pa.googleapis.com",
  "https://oauth2.googleapis.com",
]

[env]
keep = [
  "GEMINI_API_KEY",
  "GOOGLE_API_KEY",
  "GOOGLE_GENAI_USE_VERTEXAI",
  "GOOGLE_GENAI_USE_GCA",
  "GOOGLE_CLOUD_PROJECT",
  "GOOGLE_CLOUD_LOCATION",
  "GEMINI_MODEL",
]
scrub = ["ANTHROPIC_*", "CLAUDE_*", "OPENAI_*", "CODEX_*"]
# Its own sandbox (a container or macOS seatbelt) off: Ward is its sandbox.
set = { GEMINI_SANDBOX = "false" }

# Its keys stay with Ward: the agent holds placeholders, the proxy puts each key in
# toward the API only (not when a base URL sends its requests elsewhere).
[[credentials]]
name = "gemini-api-key"
secret = "env:GEMINI_API_KEY"
env = "GEMINI_API_KEY"
to = "https://generativelanguage.googleapis.com/"
header = "x-goog-api-key"
optional = true
unless_env = ["GOOGLE_GEMINI_BASE_URL"]
[[credentials]]
name = "google-api-key"
secret = "env:GOOGLE_API_KEY"
env = "GOOGLE_API_KEY"
to = "https://generativelanguage.googleapis.com/"
header = "x-goog-api-key"
optional = true
unless_env = ["GOOGLE_GEMINI_BASE_URL"]
"#,
        seed: &[Seed {
            path: ".gemini/settings.json",
            contents: "{\n  \"privacy\": { \"usageStatisticsEnabled\": false }\n}\n",
            why: "no usage statistics (they would only be refused)",
        }],
        never: &[
            "your own ~/.gemini: its home is Ward's (homes/gemini)",
            "other providers' keys (ANTHROPIC_*, CLAUDE_*, OPENAI_*, CODEX_*)",
            "its own sandbox (GEMINI_SANDBOX=false): Ward is its sandbox",
        ],
        guard: &[
            ".gemini/settings.json",
            // Folders whose own settings (servers, hooks) it trusts.
            ".gemini/trustedFolders.json",
            // Extensions (servers, commands) and commands (`!{...}` runs the shell).
            ".gemini/extensions/",
            ".gemini/commands/",
        ],
    },
];

/// The profile of this name.
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The profile an agent's program chooses: `/usr/bin/claude`, `claude` (not `claude.sh`).
pub fn for_command(program: &str) -> Option<&'static Profile> {
    let base = Path::new(program).file_name()?.to_str()?;
    PROFILES.iter().find(|p| p.commands.contains(&base))
}

/// The profiles' names, for messages: "`claude`, `codex`, `gemini`".
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the profile is chosen (see the module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Choice {
    /// The manifest's `profile` key, else the one this program chooses (`None`: no program,
    /// as in `ward manifest explain`).
    #[default]
    Auto,
    /// By the agent's program, unless the manifest says otherwise.
    Program(String),
    /// `--profile NAME`: this one, whatever the manifest says.
    Named(String),
    /// `--profile none`.
    Off,
}

/// The profile merged into a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub name: String,
    pub about: String,
    /// Why this profile: `--profile`, the manifest's line, or the program's name.
    pub chosen_by: String,
    /// Files the agent's home starts with: path below the home, contents, why.
    pub seed: Vec<(String, String, String)>,
    pub never: Vec<String>,
    /// Files in its home held for review when the agent changes them.
    pub guard: Vec<String>,
}

/// The profile `opts` and the manifest choose, merged into `m` (before the managed file).
pub(super) fn apply(m: &mut Manifest, opts: &LoadOptions) -> Result<(), ManifestError> {
    let chosen = match (&opts.profile, &m.profile_named) {
        (Choice::Off, _) => None,
        (Choice::Named(n), _) => Some((n.clone(), "--profile".to_string())),
        (_, Some((n, o))) => (n != "none").then(|| (n.clone(), format!("the manifest ({o})"))),
        (Choice::Program(prog), None) => for_command(prog).map(|p| {
            (
                p.name.to_string(),
                format!("the agent's program `{}`", p.name),
            )
        }),
        (Choice::Auto, None) => None,
    };
    let Some((name, chosen_by)) = chosen else {
        return Ok(());
    };
    let Some(p) = find(&name) else {
        return Err(ManifestError {
            file: "--profile".into(),
            line: 0,
            column: 0,
            message: format!(
                "unknown profile `{}`; Ward's profiles are {}, or `none`",
                crate::inert::line(&name),
                names()
            ),
        });
    };
    let fragment = load(p, opts)?;
    merge(m, fragment);
    m.profile = Some(Applied {
        name: p.name.to_string(),
        about: p.about.to_string(),
        chosen_by,
        seed: p
            .seed
            .iter()
            .map(|s| (s.path.into(), s.contents.into(), s.why.into()))
            .collect(),
        never: p.never.iter().map(|s| s.to_string()).collect(),
        guard: p.guard.iter().map(|s| s.to_string()).collect(),
    });
    Ok(())
}

/// A profile's fragment as a manifest of its own (origins `profile NAME:LINE`).
pub fn load(p: &Profile, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let file = format!("<profile {}>", p.name);
    let cx = Ctx {
        file: Path::new(&file),
        managed: false,
        profile: Some(p.name),
    };
    let doc = raw::parse_toml(p.manifest).map_err(|e| cx.err(e.pos, e.message))?;
    let only = doc.files.is_empty()
        && doc.policies.is_empty()
        && doc.devices.is_empty()
        && doc.exec_unknown.is_none()
        && doc.network.as_ref().is_none_or(|n| n.unknown.is_none());
    if !only {
        return Err(cx.err(
            Pos::default(),
            "a profile holds destinations, variables and denies only",
        ));
    }
    build(doc, &cx, opts)
}

/// The profile's entries after the manifest's own: the person's words come first in every
/// list (and win where both speak: deny > allow, scrub > keep, their `set` over the profile's).
fn merge(m: &mut Manifest, p: Manifest) {
    m.network.extend(p.network);
    m.deny_paths.extend(p.deny_paths);
    m.rules.extend(p.rules);
    m.env_scrub.extend(p.env_scrub);
    m.env_keep.extend(p.env_keep);
    // The profile's credentials, unless the person's manifest has one of the name or for the
    // variable.
    for c in p.credentials {
        if !m
            .credentials
            .iter()
            .any(|x| x.name == c.name || (x.env.is_some() && x.env == c.env))
            && !m.env_set.iter().any(|(k, _, _)| Some(k) == c.env.as_ref())
        {
            m.credentials.push(c);
        }
    }
    for (k, v, o) in p.env_set {
        if !m.env_set.iter().any(|(n, _, _)| *n == k) {
            m.env_set.push((k, v, o));
        }
    }
}
