#!/usr/bin/env bash
# Writes link/symbol-order.txt.gz, the order in which the release link places weft's functions
# (build.rs hands it to the linker). The code a node runs is then packed together at the front
# of the executable, so the kernel maps about 40 % less of it into each node (the kernel maps
# code in 64 to 128 KiB blocks around each page touched; scattered, the code a node runs touched
# nearly every block). See BENCHMARKS.md, "Code packed by what a node runs" and "Relocations
# packed, and the order made with the DHT on and from native faults".
#
# It runs a mesh in network namespaces on a bridge, its first five nodes under valgrind's
# callgrind: four `weft up` with a script bootstrapper and one run as `edgevpn` from its
# environment, as Kairos runs it; with 3 voters, two of them follow without a raft seat, as most
# members of a mesh do. Nodes past the fifth run `weft up` unprofiled, so that the five see a
# larger mesh (more peers in each table, gossip pruning its mesh, connections idling out) on two
# cores. Then pings, a TCP and a UDP stream through the overlay, DNS queries, the CLI and the API
# on the five, then idle; then each node is stopped and the functions that ran are ordered
# (scripts/symbol-order.py). Each of RUNS is one mesh, NODES:IDLE:LOG_LEVEL, profiled one after
# another (default "5:420:info 5:60:warn 20:300:warn": seven idle minutes reach the renewals and
# the connections that idle out; roles fall differently each time; the level is that of the
# `weft up` nodes, the `edgevpn` node runs at its default). Nothing outside the namespaces is
# addressed (the private DHT among the nodes only, no DNS forwarding, mDNS on the bridge).
#
# Under valgrind the CPU lacks AVX-512 and more, so code that a library picks by the CPU's
# features (AES-GCM, hashes) runs only natively. So, second, with MODE=faults, it runs the
# meshes of RUNS natively (default "20:120:warn") under `perf record -e minor-faults`, and
# appends to the order the functions whose code faulted and that it does not list yet: run it on
# a release build linked with the order of the first step, where code faults beyond the ordered
# part only where it runs unprofiled.
#
# Regenerate after a toolchain or dependency update, or when functions that run were renamed or
# added: symbol names carry hashes of both, and a name the binary no longer has is skipped. The
# names come from the binary profiled, so build it first with `cargo build --release --bin
# weft` alone (built in one command with an example or the tests, weft gets tokio's test-util
# feature from the dev-dependencies, and every name changes).
# `scripts/symbol-order.py --check BINARY <(zcat link/symbol-order.txt.gz)` says how many hold.
#
# Usage (root, a release build of the tree first):  scripts/symbol-order.sh [target/release/weft]
#   then, after `cargo build --release --bin weft` again:  MODE=faults scripts/symbol-order.sh
# Needs iperf3, dig, curl, and valgrind (perf for MODE=faults). About 15 minutes with the
# default RUNS, 3 with MODE=faults.
set -euo pipefail

BIN=$(readlink -f "${1:-$(dirname "$0")/../target/release/weft}")
cd "$(dirname "$0")/.."
MODE=${MODE:-callgrind}
case $MODE in
  callgrind) RUNS=${RUNS:-5:420:info 5:60:warn 20:300:warn} ;;
  faults) RUNS=${RUNS:-20:120:warn} ;;
  *) echo "MODE is callgrind or faults, not $MODE" >&2; exit 2 ;;
esac
OUT=$(readlink -f link)/symbol-order.txt.gz
WORK=$(mktemp -d /tmp/weft-order.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh
need_root
for tool in iperf3 dig curl $([ "$MODE" = faults ] && echo perf || echo valgrind); do
  if ! command -v $tool >/dev/null; then
    echo "needs $tool (scripts/install-deps.sh installs the others than valgrind and perf)" >&2
    exit 1
  fi
done

node() { # ns name env... -- program args...: a node, under callgrind (its profile in WORK)
  local ns=$1 name=$2 envs=() profiler=()
  shift 2
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  if [ "$MODE" = callgrind ] && [ "${name#n}" -le 5 ]; then
    profiler=(valgrind --tool=callgrind --demangle=no --dump-instr=no
      "--callgrind-out-file=$WORK/profiles/$name.%p")
  fi
  mkdir -p "$WORK/$name/state"
  ip netns exec "$ns" env "${envs[@]}" "${profiler[@]}" "$@" >"$WORK/$name/weft.log" 2>&1 &
  PIDS+=($!)
  echo $! >>"$WORK/nodes" # ip and env exec: the node's own process
}

api() { # name args...: the CLI against one node
  local name=$1
  shift
  "$BIN" "$@" --api "unix://$WORK/$name/api.sock"
}

workload() { # run nodes idle log-level: one mesh, profiled, then stopped
  local run=$1 nodes=$2 idle=$3 level=$4 i name path token br
  br=word$run-$$
  new_netns "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  for i in $(seq "$nodes"); do
    new_netns "wor$run-$i-$$"
    ip link add eth0 netns "wor$run-$i-$$" type veth peer name p$i netns "$br"
    ip -n "$br" link set p$i master br0
    ip -n "$br" link set p$i up
    ip -n "wor$run-$i-$$" addr add 10.213.0.$i/24 dev eth0
    ip -n "wor$run-$i-$$" link set eth0 up
  done
  token=$("$BIN" token new)
  for i in $(seq "$nodes"); do
    [ "$i" = 5 ] && continue
    node "wor$run-$i-$$" n$i -- "$BIN" up --token "$token" \
      --state-dir "$WORK/n$i/state" --api "unix://$WORK/n$i/api.sock" --hostname n$i \
      --dns 127.0.0.1:5300 --no-dns-forward --log-level "$level" --bootstrapper script \
      --bootstrap-script "$WORK/boot.sh" --root "$WORK/n$i/root"
  done
  node "wor$run-5-$$" n5 EDGEVPNTOKEN="$token" EDGEVPNDHT=false \
    APILISTEN="unix://$WORK/n5/api.sock" DHCPLEASEDIR="$WORK/n5/state" -- "$WORK/edgevpn"
  log "run $run: waiting for the $nodes members"
  local members=0
  for _ in $(seq 1800); do
    members=$(api n1 members 2>/dev/null | grep -c '10\.1\.' || true)
    O1=$(overlay_ip "$BIN" n1) O2=$(overlay_ip "$BIN" n2) O3=$(overlay_ip "$BIN" n5)
    [ "$members" -ge "$nodes" ] && [ -n "$O1" ] && [ -n "$O2" ] && [ -n "$O3" ] && break
    sleep 0.2
  done
  if [ "$members" -lt "$nodes" ] || [ -z "$O1" ] || [ -z "$O2" ] || [ -z "$O3" ]; then
    echo "no mesh formed; the end of each node's log:" >&2
    tail -n 20 "$WORK"/n*/weft.log >&2
    exit 1
  fi
  log "run $run: the workload"
  ip netns exec "wor$run-1-$$" ping -q -c 10 -i 0.2 "$O2" >/dev/null || true
  ip netns exec "wor$run-2-$$" ping -q -c 10 -i 0.2 "$O1" >/dev/null || true
  ip netns exec "wor$run-5-$$" ping -q -c 5 -i 0.2 "$O1" >/dev/null || true
  ip netns exec "wor$run-4-$$" ping -q -c 5 -i 0.2 "$O3" >/dev/null || true
  ip netns exec "wor$run-2-$$" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  PIDS+=($!)
  ip netns exec "wor$run-1-$$" iperf3 -s -1 -p 5202 >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 1
  ip netns exec "wor$run-1-$$" iperf3 -c "$O2" -p 5201 -t 5 >/dev/null || true
  ip netns exec "wor$run-5-$$" iperf3 -c "$O1" -p 5202 -t 5 -u -b 50M >/dev/null || true
  for name in n1 n2 n3 n4 nobody; do
    ip netns exec "wor$run-1-$$" dig +short -p 5300 @127.0.0.1 "$name.weft.internal" \
      >/dev/null || true
  done
  for name in n1 n2 n3 n4 n5; do
    api $name status >/dev/null || true
    api $name status --json >/dev/null || true
    api $name peers >/dev/null || true
    api $name members >/dev/null || true
    api $name role ls >/dev/null || true
    api $name ledger put app "k$name" v >/dev/null || true
    api $name ledger get app kn1 >/dev/null || true
    api $name ledger ls app >/dev/null || true
    for path in /api/machines /api/users /api/ledger /api/ledger/app /api/dns /api/services \
      /api/summary /api/nodes /api/peerstore /api/ledger/healthcheck /metrics /healthz /readyz \
      / /ui /v1/status /v1/members /v1/peers /v1/roles /v1/dns /v1/ledger /v1/dataplane \
      /v1/audit /v1/denied /v1/trusted /v1/policy /v1/operator; do
      curl -s --unix-socket "$WORK/$name/api.sock" "http://weft$path" >/dev/null || true
    done
  done
  log "run $run: idle for $idle s"
  sleep "$idle"
  ip netns exec "wor$run-1-$$" ping -q -c 5 -i 0.2 "$O3" >/dev/null || true
  # Stopped by SIGTERM, so that each node shuts down and callgrind writes its profile.
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  done
  bench_stop
  rm -rf "$WORK"/n*/
}

mkdir -p "$WORK/profiles"
ln -s "$BIN" "$WORK/edgevpn"
printf '#!/bin/sh\n[ "$WEFT_ROLE" = worker ] || echo join-token >"$WEFT_JOIN_TOKEN_OUT"\n' \
  >"$WORK/boot.sh"
chmod +x "$WORK/boot.sh"
for spec in $RUNS; do
  if ! [[ $spec =~ ^([5-9]|[1-9][0-9]+):[0-9]+:[a-z]+$ ]]; then
    echo "RUNS: $spec is not NODES:IDLE:LOG_LEVEL with at least 5 nodes" >&2
    exit 2
  fi
done
if [ "$MODE" = faults ]; then
  [ -f "$OUT" ] || { echo "MODE=faults adds to $OUT: make it first" >&2; exit 1; }
  perf record -a -e minor-faults -c 1 -d -o "$WORK/faults.data" >"$WORK/perf.log" 2>&1 &
  PERF=$!
  # Stopped on any exit: it records the whole machine.
  trap 'kill -INT "$PERF" 2>/dev/null; wait "$PERF" || true; bench_cleanup' EXIT
  sleep 1
  kill -0 "$PERF" 2>/dev/null || { cat "$WORK/perf.log" >&2; exit 1; }
fi
run=0
for spec in $RUNS; do
  run=$((run + 1))
  IFS=: read -r nodes idle level <<<"$spec"
  workload "$run" "$nodes" "$idle" "$level"
done
if [ "$MODE" = faults ]; then
  kill -INT "$PERF"
  wait "$PERF" || true
  trap bench_cleanup EXIT
  perf script -i "$WORK/faults.data" --no-demangle -F pid,addr --show-mmap-events \
    >"$WORK/faults.txt" 2>/dev/null
  zcat "$OUT" >"$WORK/symbol-order.txt"
  python3 scripts/symbol-order.py --faults "$WORK/symbol-order.txt" "$BIN" "$WORK/faults.txt" \
    "$WORK/nodes"
else
  python3 scripts/symbol-order.py "$WORK/symbol-order.txt" "$BIN" "$WORK"/profiles/*
fi
gzip -9n <"$WORK/symbol-order.txt" >"$OUT"
log "wrote $OUT"
