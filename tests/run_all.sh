#!/usr/bin/env bash
# The whole test suite from a fresh checkout: installs the package (building the Rust
# extension) with its test dependencies, then runs the Rust and the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
cargo test --workspace
python3 -m pytest "$@"
