#!/usr/bin/env bash
# Formation of one mesh size, two weft binaries alternating (A B A B...), with what the merges
# did: for each run, the formation time (`examples/scale`), how many clusters formed apart, how
# many members left their cluster for another, and whether two clusters drew members from each
# other (members moving both ways). Reads the nodes' logs kept by `examples/scale` (KEEP_LOGS).
#
# Usage (root):  benches/merges.sh NEW_WEFT BASE_WEFT
#   knobs: NODES=50 ROUNDS=4 LOG_LEVEL=info (info logs slow each node down: more admission lag,
#          so more clusters form apart; the autopilot's info lines, which the counts read, are
#          kept at any level) KEEP=/tmp/weft-merges (the kept logs, per run)
# Counts are of decisions logged: "left for another" counts each decision to leave, and "drew
# from each other" means both directions were logged during the run, not at the same moment.
set -euo pipefail

# The binaries are resolved where the caller stands, before moving to the repository.
for binary in "${1:?usage: benches/merges.sh NEW_WEFT BASE_WEFT}" "${2:?usage: benches/merges.sh NEW_WEFT BASE_WEFT}"; do
  [ -x "$binary" ] || { echo "merges.sh: $binary is not an executable weft binary" >&2; exit 1; }
done
NEW=$(readlink -f "$1")
BASE=$(readlink -f "$2")
cd "$(dirname "$0")/.."
NODES=${NODES:-50}
ROUNDS=${ROUNDS:-4}
LOG_LEVEL=${LOG_LEVEL:-info}
KEEP=${KEEP:-/tmp/weft-merges}

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
[ -x target/release/examples/scale ] || {
  # Apart: built in one command, the example's dev-dependencies give weft tokio's test-util,
  # a binary other than the one shipped, whose functions the release symbol order misses.
  echo "build first: cargo build --release --bin weft && cargo build --release --example scale" >&2
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
