#!/usr/bin/env bash
# Ward's main job on its built-in example, until `ward run` lands: decide on agent actions with
# the seed's manifest and its upload policy, and show who decided and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ward
ward="$PWD/target/release/ward"
[ -n "${CARGO_TARGET_DIR:-}" ] && ward="$CARGO_TARGET_DIR/release/ward"

show() { echo; echo "\$ ward $*"; "$ward" "$@" || true; }
show manifest explain -m examples/acme.toml
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"uploads.acme.com","size":5242880}'
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"api.acme.com","size":5242880}'
show policy eval -m examples/acme.toml --input '{"kind":"net.upload","dest":"uploads.acme.com","size":20971520}'
show policy eval -m examples/acme.toml --input '{"kind":"net.connect","resource":"https://evil.example.com/"}'
show policy test examples/policy-tests

# The confined agent: a folder granted, everything else out of reach, the session audited.
demo_dir=$(mktemp -d)
echo "a note" > "$demo_dir/notes.txt"
export XDG_STATE_HOME="$demo_dir/.state" XDG_CONFIG_HOME="$demo_dir/.config"
mkdir -p "$demo_dir/project" && echo "hello" > "$demo_dir/project/README"
(cd "$demo_dir/project" && show run --grant .:direct -- /bin/sh -c \
  'cat README; echo edited >> README; cat /etc/shadow; cat ../notes.txt; echo x > /usr/x; echo "exit code passes through"; exit 3')
show audit tail -n 4
rm -rf "$demo_dir"
