#!/usr/bin/env bash
# System calls of each node's packet thread per echo: two namespaces on a veth, `weft up` in
# each, then strace -c on both nodes' `weft-packets` threads while A pings B 200 times 20 ms
# apart. Prints, for each binary given, the counts of A (pinging) and B (answering); divide by
# 200 for a count per echo. Give several binaries (or the same one twice) to compare them in
# one run. Nothing outside the two namespaces is addressed.
#
# Usage (root):  benches/syscalls.sh BINARY [BINARY...]
#   needs: strace
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: benches/syscalls.sh BINARY [BINARY...]" >&2; exit 2; }
WORK=$(mktemp -d /tmp/weft-syscalls.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh

need_root
command -v strace >/dev/null || { echo "needs strace (apt-get install strace)" >&2; exit 1; }
packet_thread() { # pid -> the tid of its weft-packets thread
  local t
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm")" = weft-packets ] && basename "$t"
  done
}
run=0
for bin in "$@"; do
  # Each binary starts afresh: state directories of its own.
  run=$((run + 1))
  NS1=wsys1-$$ NS2=wsys2-$$
  veth_pair "$NS1" "$NS2" 10.219.0.1/24 10.219.0.2/24
  TOKEN=$("$bin" token new)
  start_weft "$bin" "$NS1" "a$run" "$TOKEN"
  start_weft "$bin" "$NS2" "b$run" "$TOKEN"
  overlay_pair "$bin" "a$run" "b$run"
  for _ in $(seq 100); do ip netns exec "$NS1" ping -c1 -W1 "$O2" >/dev/null 2>&1 && break; done
  ip netns exec "$NS1" ping -c 20 -i 0.02 "$O2" >/dev/null
  strace -c -p "$(packet_thread "${PIDS[0]}")" -o "$WORK/a.txt" 2>/dev/null & TRACE_A=$!
  strace -c -p "$(packet_thread "${PIDS[1]}")" -o "$WORK/b.txt" 2>/dev/null & TRACE_B=$!
  PIDS+=("$TRACE_A" "$TRACE_B")
  sleep 1
  ip netns exec "$NS1" ping -c 200 -i 0.02 "$O2" | tail -1
  kill -INT "$TRACE_A" "$TRACE_B"
  wait "$TRACE_A" "$TRACE_B" || true
  echo "== $bin: system calls of the packet threads in 200 echoes (calls, errors, name)"
  for node in a b; do
    awk -v node="${node^^}" '$NF != "syscall" && $4 !~ /^-/ && NF >= 5 {
      print node, $4, (NF == 6) ? $5 : 0, $NF
    }' "$WORK/$node.txt"
  done
  bench_stop
done
