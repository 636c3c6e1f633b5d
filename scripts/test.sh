#!/usr/bin/env bash
# The whole test suite. `.ci/run` calls this same script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo nextest run --workspace --no-fail-fast
