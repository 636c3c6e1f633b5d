#!/usr/bin/env bash
# Installs what building and testing Ward needs on Debian 12, skipping what is already there:
# a C toolchain, Rust (through rustup, when cargo is missing) and cargo-nextest.
# Later issues add their packages here (bubblewrap, squid, ...).
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# The tests drive real agents: python3 and git inside the sandbox, unshare(1) and script(1)
# (util-linux) for overlay and terminal tests.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Virtual environments made inside the sandbox use Debian's python3 and its venv module.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
# The proxy tests build a small internet in a network namespace with ip(8).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Clients the network tests run inside the sandbox.
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# A real Secret Service (the keychain credentials can come from), run headless in the tests
# under dbus-run-session, and its client.
command -v dbus-run-session >/dev/null 2>&1 || need_apt+=(dbus)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need_apt+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || need_apt+=(libsecret-tools)
# The real agents (Claude Code, Codex, Gemini CLI) come from npm and run on Node.js.
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "setup: installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  }
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# The sandbox tests also run as an unprivileged user; as root, make sure it exists.
if [ "$(id -u)" -eq 0 ] && ! id wardtest >/dev/null 2>&1; then
  echo "setup: creating the unprivileged test user wardtest"
  useradd -m wardtest
fi

# The real agents and the local package registries, pinned, outside the clone (kept between
# runs).
bash "$(dirname "$0")/agents.sh"
bash "$(dirname "$0")/registries.sh"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
