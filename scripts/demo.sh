#!/usr/bin/env bash
# Ward's main job on its built-in example, until `ward run` lands: decide on agent actions with
# the seed's manifest and its upload policy, and show who decided and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ward
ward=target/release/ward
[ -n "${CARGO_TARGET_DIR:-}" ] && ward="$CARGO_TARGET_DIR/release/ward"

show() { echo; echo "\$ ward $*"; "$ward" "$@" || true; }
show manifest explain -m examples/acme.toml
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"uploads.acme.com","size":5242880}'
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"api.acme.com","size":5242880}'
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"uploads.acme.com","size":20971520}'
show policy eval -m examples/acme.toml --input '{"kind":"net.connect","resource":"https://evil.example.com/"}'
show policy test examples/policy-tests
