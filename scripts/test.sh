#!/usr/bin/env bash
# weft's whole test suite, as CI runs it: installs what it needs (Debian), checks formatting and
# lints, runs the demo as a smoke test when root, then every test (the network-namespace tests
# need root and skip with a reason otherwise). The test runner's summary is the last thing shown.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/cargo-env.sh
# A CI run builds once from clean: incremental caches would only add gigabytes to its disk.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
if [ "$(id -u)" = 0 ]; then
  scripts/install-deps.sh
else
  echo "not root: skipping package installation; namespace tests will be skipped"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
if [ "$(id -u)" = 0 ]; then
  echo "== demo (smoke test)"
  cargo build --quiet --locked --bin weft --example demo
  target/debug/examples/demo
fi
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --locked --no-fail-fast
else
  cargo test --all-targets --locked --no-fail-fast
fi
