#!/usr/bin/env bash
# Installs the local package registries the tests start on loopback, outside the clone (kept
# between runs): $WARD_REGISTRIES, else ~/.cache/ward-registries.
# - PyPI: pypiserver (pinned) in a venv of its own, serving pypi-packages/ (a pinned wheel).
# - npm: verdaccio (pinned, the last major that runs on Node.js 20), which the tests start
#   with a storage of their own and publish to.
# - crates: a pinned .crate file, served by the tests as a sparse registry.
# An install already there is not fetched again.
set -euo pipefail

dir="${WARD_REGISTRIES:-$HOME/.cache/ward-registries}"
mkdir -p "$dir"
pypiserver="pypiserver==2.4.2"
if [ "$(cat "$dir/pypi-venv/.version" 2>/dev/null || true)" != "$pypiserver" ]; then
  echo "registries: installing $pypiserver into $dir/pypi-venv"
  rm -rf "$dir/pypi-venv"
  /usr/bin/python3 -m venv "$dir/pypi-venv"
  "$dir/pypi-venv/bin/pip" install -q --disable-pip-version-check "$pypiserver"
  echo "$pypiserver" > "$dir/pypi-venv/.version"
fi
wheel="six-1.16.0-py2.py3-none-any.whl"
if [ ! -f "$dir/pypi-packages/$wheel" ]; then
  echo "registries: fetching $wheel"
  mkdir -p "$dir/pypi-packages"
  "$dir/pypi-venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$dir/pypi-packages" six==1.16.0
fi
verdaccio="verdaccio@5.33.0"
if [ "$(cat "$dir/verdaccio/.version" 2>/dev/null || true)" != "$verdaccio" ] \
  || [ ! -x "$dir/verdaccio/node_modules/.bin/verdaccio" ]; then
  echo "registries: installing $verdaccio into $dir/verdaccio"
  rm -rf "$dir/verdaccio"
  npm install --prefix "$dir/verdaccio" --no-audit --no-fund --loglevel=error "$verdaccio"
  echo "$verdaccio" > "$dir/verdaccio/.version"
fi
# The crate (its sha256 checked).
crate="itoa-1.0.11.crate"
sum="49f1f14873335454500d59611f1cf4a4b0f786f9ac11f4312a78e4cf2566695b"
if [ "$(sha256sum "$dir/crates/$crate" 2>/dev/null | cut -d' ' -f1)" != "$sum" ]; then
  echo "registries: fetching $crate"
  mkdir -p "$dir/crates"
  curl -sSfL -o "$dir/crates/$crate.part" "https://static.crates.io/crates/itoa/$crate"
  [ "$(sha256sum "$dir/crates/$crate.part" | cut -d' ' -f1)" = "$sum" ] \
    || { echo "registries: $crate does not have its pinned sha256" >&2; exit 1; }
  mv "$dir/crates/$crate.part" "$dir/crates/$crate"
fi
