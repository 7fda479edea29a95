#!/usr/bin/env bash
# Writes link/symbol-order.txt.gz, the order in which the release link places weft's functions
# (build.rs hands it to the linker). The code a node runs is then packed together at the front
# of the executable, so the kernel maps about 40 % less of it into each node (the kernel maps
# code in 64 to 128 KiB blocks around each page touched; scattered, the code a node runs touched
# nearly every block). See BENCHMARKS.md, "Code packed by what a node runs".
#
# It runs a 5-node mesh in network namespaces on a bridge, every node under valgrind's callgrind:
# four `weft up` with a script bootstrapper and one run as `edgevpn` from its environment, as
# Kairos runs it; with 3 voters, two of them follow without a raft seat, as most members of a
# mesh do. Then pings, a TCP and a UDP stream through the overlay, DNS queries, the CLI
# and the API on every node, then idle; then each node is stopped and the functions that ran are
# ordered (scripts/symbol-order.py). Each of RUNS is one mesh, IDLE:LOG_LEVEL, profiled one after
# another (default "420:info 60:warn": seven idle minutes reach the renewals and the connections
# that idle out; roles fall differently each time; the level is that of the four `weft up`, the
# `edgevpn` node runs at its default). Nothing outside the namespaces is addressed (no DHT, no DNS
# forwarding, mDNS on the bridge).
#
# Regenerate after a toolchain or dependency update, or when functions that run were renamed or
# added: symbol names carry hashes of both, and a name the binary no longer has is skipped. The
# names come from the binary profiled, so build it first (`cargo build --release`).
# `scripts/symbol-order.py --check BINARY <(zcat link/symbol-order.txt.gz)` says how many hold.
#
# Usage (root, a release build of the tree first):  scripts/symbol-order.sh [target/release/weft]
# Needs valgrind, iperf3, dig, curl. About 10 minutes with the default RUNS.
set -euo pipefail

BIN=$(readlink -f "${1:-$(dirname "$0")/../target/release/weft}")
cd "$(dirname "$0")/.."
RUNS=${RUNS:-420:info 60:warn}
OUT=$(readlink -f link)/symbol-order.txt.gz
WORK=$(mktemp -d /tmp/weft-order.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh
need_root
for tool in valgrind iperf3 dig curl; do
  if ! command -v $tool >/dev/null; then
    echo "needs $tool (scripts/install-deps.sh installs the others than valgrind)" >&2
    exit 1
  fi
done

node() { # ns name env... -- program args...: a node under callgrind, its profile in WORK
  local ns=$1 name=$2 envs=()
  shift 2
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$WORK/$name/state"
  ip netns exec "$ns" env "${envs[@]}" valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$WORK/profiles/$name.%p" "$@" >"$WORK/$name/weft.log" 2>&1 &
  PIDS+=($!)
}

api() { # name args...: the CLI against one node
  local name=$1
  shift
  "$BIN" "$@" --api "unix://$WORK/$name/api.sock"
}

workload() { # run idle log-level: one mesh, profiled, then stopped
  local run=$1 idle=$2 level=$3 i name path token br
  br=word$run-$$
  new_netns "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  for i in 1 2 3 4 5; do
    new_netns "wor$run-$i-$$"
    ip link add eth0 netns "wor$run-$i-$$" type veth peer name p$i netns "$br"
    ip -n "$br" link set p$i master br0
    ip -n "$br" link set p$i up
    ip -n "wor$run-$i-$$" addr add 10.213.0.$i/24 dev eth0
    ip -n "wor$run-$i-$$" link set eth0 up
  done
  token=$("$BIN" token new)
  for i in 1 2 3 4; do
    node "wor$run-$i-$$" n$i -- "$BIN" up --token "$token" --no-dht \
      --state-dir "$WORK/n$i/state" --api "unix://$WORK/n$i/api.sock" --hostname n$i \
      --dns 127.0.0.1:5300 --no-dns-forward --log-level "$level" --bootstrapper script \
      --bootstrap-script "$WORK/boot.sh" --root "$WORK/n$i/root"
  done
  node "wor$run-5-$$" n5 EDGEVPNTOKEN="$token" EDGEVPNDHT=false \
    APILISTEN="unix://$WORK/n5/api.sock" DHCPLEASEDIR="$WORK/n5/state" -- "$WORK/edgevpn"
  log "run $run: waiting for the five members"
  local members=0
  for _ in $(seq 1800); do
    members=$(api n1 members 2>/dev/null | grep -c '10\.1\.' || true)
    [ "$members" -ge 5 ] && break
    sleep 0.2
  done
  O1=$(overlay_ip "$BIN" n1) O2=$(overlay_ip "$BIN" n2) O3=$(overlay_ip "$BIN" n5)
  if [ "$members" -lt 5 ] || [ -z "$O1" ] || [ -z "$O2" ] || [ -z "$O3" ]; then
    echo "no mesh formed; the end of each node's log:" >&2
    tail -n 20 "$WORK"/n?/weft.log >&2
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
      /api/blockchain /api/ledger/healthcheck /metrics /; do
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
  rm -rf "$WORK"/n?
}

mkdir -p "$WORK/profiles"
ln -s "$BIN" "$WORK/edgevpn"
printf '#!/bin/sh\n[ "$WEFT_ROLE" = worker ] || echo join-token >"$WEFT_JOIN_TOKEN_OUT"\n' \
  >"$WORK/boot.sh"
chmod +x "$WORK/boot.sh"
run=0
for spec in $RUNS; do
  run=$((run + 1))
  workload "$run" "${spec%%:*}" "${spec#*:}"
done
python3 scripts/symbol-order.py "$WORK/symbol-order.txt" "$BIN" "$WORK"/profiles/*
gzip -9n <"$WORK/symbol-order.txt" >"$OUT"
log "wrote $OUT"
