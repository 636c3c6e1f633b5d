#!/usr/bin/env bash
# Ward's main job on its built-in default: `ward run` an agent in a project folder with no
# manifest (the folder granted, staged; no network destination: the egress proxy refuses and
# records the agent's request), show what it cannot reach, what it
# changed (held for review, the real folder untouched) and the audit trail. Then decisions on
# agent actions with the seed's manifest and its upload policy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ward
ward="$PWD/target/release/ward"
[ -n "${CARGO_TARGET_DIR:-}" ] && ward="$CARGO_TARGET_DIR/release/ward"
examples="$PWD/examples"

show() { echo; echo "\$ ward $*"; "$ward" "$@" || true; }

# A throwaway home for the demo's state (audit log, keys, stages).
demo_dir=$(mktemp -d)
trap 'rm -rf "$demo_dir"' EXIT
export XDG_STATE_HOME="$demo_dir/.state" XDG_CONFIG_HOME="$demo_dir/.config"
echo "a note next to the project" > "$demo_dir/notes.txt"
mkdir -p "$demo_dir/project" && echo "hello" > "$demo_dir/project/README"
cd "$demo_dir/project"
show run --review keep -- /bin/sh -c 'cat README; cat ../notes.txt; cat /etc/shadow; echo x > /usr/x; echo edited >> README; echo new > NEW; python3 -c "import urllib.request as u; u.urlopen(\"http://example.com/\")" 2>&1 | tail -n 1; echo "exit code passes through"; exit 3'
echo; echo "\$ cat README    # the real folder is untouched until someone reviews"; cat README
show review --diff
show audit tail -n 5
cd - > /dev/null

show manifest explain -m "$examples/acme.toml"
show policy eval -m "$examples/acme.toml" --input '{"kind":"net.upload","dest":"uploads.acme.com","size":5242880}'
show policy eval -m "$examples/acme.toml" --input '{"kind":"net.upload","dest":"api.acme.com","size":5242880}'
show policy eval -m "$examples/acme.toml" --input '{"kind":"net.upload","dest":"uploads.acme.com","size":20971520}'
show policy test "$examples/policy-tests"
