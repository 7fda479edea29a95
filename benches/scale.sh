#!/usr/bin/env bash
# Formation, idle traffic and memory of meshes of several sizes, weft beside a base binary, in
# one run: `examples/scale` for each size, the two binaries alternating (A B A B...) so that the
# machine's drift falls on both. Prints one summary line per run and a table of medians.
#
# Usage (root):  benches/scale.sh [NODES...]          (default: 1 5 20 50)
#   knobs: ROUNDS=3 SAMPLE_AT=30 END=40 WEFT=target/release/weft BASE=<a weft binary, optional>
#          LOG=/tmp/weft-scale-bench.log
# The idle window (SAMPLE_AT..END seconds after the start) is short by default: this compares
# formation. For the issue's idle and memory figures use SAMPLE_AT=420 END=1380 and ROUNDS=1
# (minute 7 to 23: after formation's connections idle out, holding one settled lookup round).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SAMPLE_AT=${SAMPLE_AT:-30}
END=${END:-40}
WEFT=${WEFT:-target/release/weft}
BASE=${BASE:-}
LOG=${LOG:-/tmp/weft-scale-bench.log}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1 5 20 50)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
[ -x target/release/examples/scale ] || {
  # Apart: built in one command, the example's dev-dependencies give weft tokio's test-util,
  # a binary other than the one shipped, whose functions the release symbol order misses.
  echo "build first: cargo build --release --bin weft && cargo build --release --example scale" >&2
  exit 1
}
: >"$LOG"

declare -A results
binaries=(weft)
[ -n "$BASE" ] && binaries+=(base)
for n in "${SIZES[@]}"; do
  for round in $(seq "$ROUNDS"); do
    for which in "${binaries[@]}"; do
      binary=$WEFT
      [ "$which" = base ] && binary=$BASE
      echo "[$(date +%T)] $n nodes, $which, round $round" >&2
      line=$(WEFT=$binary target/release/examples/scale "$n" "$SAMPLE_AT" "$END" 2>>"$LOG" |
        tee -a "$LOG" | grep '^summary:' || true)
      echo "$which $line"
      formed=$(sed -n 's/.*formation \([0-9.]*\) s.*/\1/p' <<<"$line")
      results[$n,$which]+="${formed:-fail} "
    done
  done
done

# The median of the formations that finished, and how many runs did not.
median() {
  local values failed sorted n middle
  values=$(tr ' ' '\n' | grep -v '^$' || true)
  failed=$(grep -c '^fail$' <<<"$values" || true)
  sorted=$(grep -v '^fail$' <<<"$values" | sort -g || true)
  n=$(grep -c . <<<"$sorted" || true)
  if [ "$n" = 0 ]; then
    echo "none formed"
    return
  fi
  middle=$(sed -n "$(((n + 1) / 2))p" <<<"$sorted")
  if [ "$failed" -gt 0 ]; then echo "$middle s ($failed did not form)"; else echo "$middle s"; fi
}
echo
echo "| nodes | weft formation (median of $ROUNDS) |${BASE:+ base formation | ratio |}"
echo "|---:|---:|${BASE:+---:|---:|}"
for n in "${SIZES[@]}"; do
  w=$(median <<<"${results[$n,weft]}")
  if [ -n "$BASE" ]; then
    b=$(median <<<"${results[$n,base]}")
    ratio=$(awk -v w="$w" -v b="$b" 'BEGIN { if (w+0 > 0 && b+0 > 0) printf "%.2f", w / b; else print "-" }')
    echo "| $n | $w | $b | $ratio |"
  else
    echo "| $n | $w |"
  fi
done
