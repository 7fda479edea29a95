#!/usr/bin/env bash
# The weft demo: builds weft and starts a small mesh in network namespaces, shows what each node
# reports, and cleans up. Run as root on Debian: ./demo.sh
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh needs root (it creates network namespaces); try: sudo ./demo.sh" >&2
  exit 1
fi
scripts/install-deps.sh
. scripts/cargo-env.sh
cargo build --quiet --bin weft --example demo
exec target/debug/examples/demo
