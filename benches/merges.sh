#!/usr/bin/env bash
# Formation of one mesh size, two weft binaries alternating (A B A B...), with what the merges
# did: for each run, the formation time (`examples/scale`), how many clusters formed apart, how
# many members left their cluster for another, and whether two clusters drew members from each
# other (members moving both ways). Reads the nodes' logs kept by `examples/scale` (KEEP_LOGS).
#
# Usage (root):  benches/merges.sh NEW_WEFT BASE_WEFT
#   knobs: NODES=50 ROUNDS=4 LOG_LEVEL=info (info logs slow each node down: more admission lag,
#          so more clusters form apart) KEEP=/tmp/weft-merges (the kept logs, per run)
set -euo pipefail
cd "$(dirname "$0")/.."

NEW=$(readlink -f "${1:?usage: benches/merges.sh NEW_WEFT BASE_WEFT}")
BASE=$(readlink -f "${2:?usage: benches/merges.sh NEW_WEFT BASE_WEFT}")
NODES=${NODES:-50}
ROUNDS=${ROUNDS:-4}
LOG_LEVEL=${LOG_LEVEL:-info}
KEEP=${KEEP:-/tmp/weft-merges}

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
[ -x target/release/examples/scale ] || {
  echo "build first: cargo build --release --bin weft --example scale" >&2
  exit 1
}

for round in $(seq "$ROUNDS"); do
  for which in new base; do
    binary=$NEW
    [ "$which" = base ] && binary=$BASE
    dir=$KEEP/$which-$round
    rm -rf "$dir"
    # The idle window is not used: SAMPLE_AT 30 ends a run soon after formation.
    line=$(KEEP_LOGS=$dir WEFT_ARGS="--log-level $LOG_LEVEL,weft::ledger::autopilot=info" \
      WEFT=$binary timeout 600 target/release/examples/scale "$NODES" 30 31 2>&1 |
      grep -E '^formation|did not form' | head -1 || true)
    logs() { cat "$dir"/*.log 2>/dev/null || true; }
    formed=$(logs | grep -c "forming one" || true)
    left=$(logs | grep -c "cluster is reachable; leaving" || true)
    pairs=$(logs | grep "cluster is reachable; leaving" |
      sed -n 's/.*ours=Some("\([0-9a-f]*\)") winner=\([0-9a-f]*\).*/\1 \2/p' | sort -u || true)
    crossed=no
    while read -r from to; do
      if [ -n "$from" ] && grep -q "^$to $from$" <<<"$pairs"; then crossed=yes; fi
    done <<<"$pairs"
    echo "$which round $round: ${line:-no formation line}; clusters formed $formed;" \
      "members that left for another $left; two clusters drew from each other: $crossed"
  done
done
