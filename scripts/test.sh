#!/usr/bin/env bash
# weft's whole test suite, as CI runs it: installs what it needs (Debian), checks formatting and
# lints, runs the demo as a smoke test when root, then every test (the network-namespace tests
# need root and skip with a reason otherwise). The test runner's summary is the last thing shown,
# unless a test left network namespaces behind: their deletion is reported after it.
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

# Deletes the namespaces of test processes that are gone, naming each: a test's `Lan` deletes
# its own on drop, and one left behind would make a later process with the same PID fail.
sweep_namespaces() {
  [ "$(id -u)" = 0 ] || return 0
  local ns pid
  for ns in $(ip netns list | awk '{print $1}'); do
    [[ $ns =~ ^wft(probe)?([0-9]+)- ]] || continue
    pid=${BASH_REMATCH[2]}
    [ -d "/proc/$pid" ] && continue
    echo "deleting network namespace $ns, left behind by process $pid"
    ip netns del "$ns" || true
  done
}

sweep_namespaces
echo "== tests"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --locked --no-fail-fast || status=$?
else
  cargo test --all-targets --locked --no-fail-fast || status=$?
fi
sweep_namespaces
exit "$status"
