#!/usr/bin/env bash
# Regression check of the data plane's hot path: runs the seal+open and route lookup criterion
# benches of BASE (a git revision, default HEAD~1) and of the working tree, alternately, ROUNDS
# times each (default 3), and fails when the median time of any of them is more than 20 % above
# BASE's. The two sides take turns so that the machine's drift weighs on both alike.
#
#   benches/regression.sh [BASE] [ROUNDS]
#
# BASE is built in its own worktree and target directory (target/regression/), so the first
# run compiles it whole. Prints one line per bench: both medians and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

base=${1:-HEAD~1}
rounds=${2:-3}
limit=1.20
filter='seal\+open|route lookup'
work=target/regression
mkdir -p "$work"

# The path of the dataplane bench executable built in the current directory into target dir $1
# (empty when the build fails; cargo's errors go to the terminal).
bench_binary() {
  { CARGO_TARGET_DIR=$1 cargo bench --bench dataplane --no-run --message-format=json || true; } \
    | { grep '"executable":"[^"]*dataplane-' || true; } \
    | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -1
}

echo "== building the benches of the working tree"
current=$(bench_binary "$PWD/target")
echo "== building the benches of $base"
rm -rf "$work/tree"
git worktree prune
git worktree add --detach "$work/tree" "$base" >/dev/null
results=$(mktemp)
trap 'git worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -f "$results"' EXIT
baseline=$(cd "$work/tree" && bench_binary "$PWD/../target")
[ -x "$current" ] && [ -x "$baseline" ] || { echo "cannot build both bench executables" >&2; exit 2; }

# Runs bench executable $1 once; appends "side<TAB>bench<TAB>nanoseconds" lines ($3 is the
# side) to $2. Each side keeps criterion's files in its own directory, so neither the other
# side nor the user's saved baselines are compared against or overwritten. Criterion prints
# "NAME  time: [low mid high]", or NAME on a line of its own when it is long; a "time:" line
# of percentages is its change since the last run, skipped.
run() {
  CRITERION_HOME="$work/criterion-$3" "$1" --bench "$filter" --warm-up-time 1 \
    --measurement-time 2 --noplot 2>/dev/null > "$work/run.txt" \
    || { echo "the $3 bench executable failed" >&2; exit 2; }
  awk -v side="$3" '
    /^[^ ]/ && !/time:/ { last = $0 }
    /time:/ && !/%/ {
      name = $0; sub(/ *time:.*/, "", name); gsub(/^ +| +$/, "", name)
      if (name == "") name = last
      match($0, /\[[^]]*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), f, " ")
      unit = f[4]
      scale = (unit == "ps") ? 0.001 : (unit == "ns") ? 1 : (unit == "ms") ? 1e6 : (unit == "s") ? 1e9 : 1000
      printf "%s\t%s\t%.3f\n", side, name, f[3] * scale
    }' "$work/run.txt" >> "$2"
}

for round in $(seq "$rounds"); do
  echo "== round $round of $rounds"
  run "$baseline" "$results" base
  run "$current" "$results" current
done

echo
printf '%-34s %12s %12s %7s\n' bench "base ns" "current ns" ratio
awk -F'\t' -v limit="$limit" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { times[$1, $2] = times[$1, $2] " " $3; names[$2] = 1 }
  END {
    failed = 0
    for (name in names) {
      b = median(times["base", name]); c = median(times["current", name])
      if (c == 0) { printf "%-34s missing in the working tree\n", name; failed = 1; continue }
      if (b == 0) { printf "%-34s new, not in the base: not compared\n", name; continue }
      ratio = c / b
      flag = (ratio > limit) ? "  SLOWER than the limit" : ""
      printf "%-34s %12.1f %12.1f %7.2f%s\n", name, b, c, ratio, flag
      if (ratio > limit) failed = 1
    }
    if (failed) { print "\nregression: a hot-path bench is more than " (limit - 1) * 100 " % slower than the base"; exit 1 }
    print "\nno hot-path bench is more than " (limit - 1) * 100 " % slower than the base"
  }' "$results"
