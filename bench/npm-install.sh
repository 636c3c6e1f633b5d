#!/usr/bin/env bash
# npm install of a 70-package project from a local registry (verdaccio on loopback, from
# scripts/registries.sh), outside Ward and inside `ward run` (staged, the default; and direct),
# interleaved, median of N rounds each with node_modules removed and npm's cache warm (each
# side's own: outside a cache folder of its own, inside the agent's home). Prints the ratios.
# Target (issue 17): inside <= 1.1x outside.
#   bash bench/npm-install.sh [ROUNDS]     (needs target/release/ward: cargo build --release -p ward)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-7}"
ward="${CARGO_TARGET_DIR:-target}/release/ward"
[ -x "$ward" ] || { echo "build the ward binary first: cargo build --release -p ward" >&2; exit 2; }
reg="${WARD_REGISTRIES:-$HOME/.cache/ward-registries}"
[ -x "$reg/verdaccio/node_modules/.bin/verdaccio" ] || bash scripts/registries.sh
work="$(mktemp -d)"
trap 'kill "$vpid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/verdaccio.yaml" <<YAML
storage: $work/storage
auth:
  htpasswd:
    file: $work/htpasswd
uplinks: {}
packages:
  '**':
    access: \$all
    publish: \$authenticated
log: { type: stdout, format: pretty, level: error }
YAML
"$reg/verdaccio/node_modules/.bin/verdaccio" --config "$work/verdaccio.yaml" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
vpid=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/-/ping" >/dev/null && break; sleep 0.1; done
token=$(curl -s -X PUT -H 'content-type: application/json' -d '{"name":"bench","password":"bench-pass-1"}' \
  "http://127.0.0.1:$port/-/user/org.couchdb.user:bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "//127.0.0.1:$port/:_authToken=$token" > "$work/npmrc"
echo "publishing 70 packages to verdaccio on 127.0.0.1:$port ..."
deps=""
for i in $(seq 0 69); do
  d="$work/pkgs/bench-pkg-$i"
  mkdir -p "$d"
  printf '{"name":"bench-pkg-%s","version":"1.0.0","main":"index.js"}\n' "$i" > "$d/package.json"
  head -c 20000 /dev/urandom | base64 > "$d/data.txt"
  printf 'module.exports = %s;\n' "$i" > "$d/index.js"
  (cd "$d" && npm publish --registry "http://127.0.0.1:$port/" --userconfig "$work/npmrc" >/dev/null 2>&1)
  deps="$deps\"bench-pkg-$i\":\"1.0.0\","
done
proj="$work/proj"
mkdir -p "$proj"
printf '{"name":"bench-proj","version":"1.0.0","dependencies":{%s}}\n' "${deps%,}" > "$proj/package.json"
printf '[[files]]\npath = "%s"\n[network]\nallow = ["http://localhost:%s"]\n' "$proj" "$port" > "$work/staged.toml"
printf '[[files]]\npath = "%s"\nmode = "direct"\n[network]\nallow = ["http://localhost:%s"]\n' "$proj" "$port" > "$work/direct.toml"
export XDG_STATE_HOME="$work/state" WARD_MANAGED="$work/none.toml"
install="npm install --no-audit --no-fund --loglevel=error --registry http://localhost:$port/"
clean() { rm -rf "$proj/node_modules" "$proj/package-lock.json"; }
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 </dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
out=(); staged=(); direct=()
# One warm-up each (fills each side's cache).
clean; (cd "$proj" && $install --cache "$work/cache" >/dev/null)
clean; (cd "$proj" && "$ward" run -m "$work/direct.toml" --review discard -- sh -c "$install" >/dev/null 2>&1 </dev/null)
for _ in $(seq "$rounds"); do
  clean; out+=("$(cd "$proj" && t sh -c "$install --cache $work/cache")")
  clean; staged+=("$(cd "$proj" && t "$ward" run -m "$work/staged.toml" --review discard -- sh -c "$install")")
  clean; direct+=("$(cd "$proj" && t "$ward" run -m "$work/direct.toml" --review discard -- sh -c "$install")")
done
test -d "$proj/node_modules/bench-pkg-69" || { echo "the direct install did not land" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${out[@]}"); ms=$(median "${staged[@]}"); md=$(median "${direct[@]}")
echo "== npm install, 70 packages from verdaccio on loopback, median of $rounds rounds =="
echo "outside Ward                     ${mo} ms"
awk -v o="$mo" -v s="$ms" -v d="$md" 'BEGIN {
  printf "ward run, staged (the default)   %d ms   %.2fx   (target <= 1.1x)\n", s, s / o
  printf "ward run, direct                 %d ms   %.2fx\n", d, d / o }'
