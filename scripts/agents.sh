#!/usr/bin/env bash
# Installs the real agents the tests run under Ward, at pinned versions, from the npm registry,
# into a folder outside the clone (kept between runs): $WARD_AGENTS, else ~/.cache/ward-agents.
# Each agent has its own prefix (AGENT/node_modules/.bin/AGENT); an agent already there at its
# version is not fetched again. Needs node and npm (scripts/setup.sh installs them).
set -euo pipefail

dir="${WARD_AGENTS:-$HOME/.cache/ward-agents}"
mkdir -p "$dir"
# name package version: the last versions checked here, on Node.js 20.
agents=(
  "claude @anthropic-ai/claude-code 2.1.100"
  "codex @openai/codex 0.171.0"
  "gemini @google/gemini-cli 0.61.0"
)
for a in "${agents[@]}"; do
  read -r name pkg version <<<"$a"
  have="$(cat "$dir/$name/.version" 2>/dev/null || true)"
  if [ "$have" = "$pkg@$version" ] && [ -x "$dir/$name/node_modules/.bin/$name" ]; then
    continue
  fi
  echo "agents: installing $pkg@$version into $dir/$name"
  rm -rf "$dir/$name"
  npm install --prefix "$dir/$name" --no-audit --no-fund --loglevel=error "$pkg@$version"
  echo "$pkg@$version" > "$dir/$name/.version"
done
