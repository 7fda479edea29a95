#!/usr/bin/env bash
# End-to-end throughput and latency of the weft overlay against the raw link, in one run.
#
# Two network namespaces joined by a veth pair (underlay 10.210.0.1 <-> 10.210.0.2), a release
# `weft up` in each, then for (a) the veth and (b) the overlay: ping RTT idle and while one TCP
# stream runs (median and p90 of PINGS pings 0.2 s apart), iperf3 TCP with 1 and with 4
# streams and one stream each way at once, and UDP offered at UDP_RATE in datagrams of UDP_LEN
# bytes for UDP_DUR seconds (the received rate and the loss). The TCP runs also report how busy
# the machine's cores were (all of them, from /proc/stat), to tell a tunnel that waits from one
# the CPU limits. Prints a table with overlay/veth ratios. Nothing outside the
# two namespaces is ever addressed (no DHT; mDNS stays on the veth).
#
# Usage (root):  benches/overlay.sh
#   knobs: DUR=10 PINGS=40 UDP_RATE=1G UDP_LEN=1200 UDP_DUR=5 WEFT=target/release/weft
#          WEFT_ARGS="" OUT=/tmp/weft-overlay-bench
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
PINGS=${PINGS:-40}
UDP_RATE=${UDP_RATE:-1G}
# The shared anchors script's datagram size, which fits every overlay MTU measured.
UDP_LEN=${UDP_LEN:-1200}
UDP_DUR=${UDP_DUR:-5}
WEFT=${WEFT:-target/release/weft}
WEFT_ARGS=${WEFT_ARGS:-}
OUT=${OUT:-/tmp/weft-overlay-bench}
NS1=wbench1-$$ NS2=wbench2-$$
U1=10.210.0.1 U2=10.210.0.2
WORK=$(mktemp -d /tmp/weft-bench.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh

need_root
scripts/install-deps.sh >/dev/null
if [ "$WEFT" = target/release/weft ]; then
  log "building weft (release)"
  cargo build --release --quiet --locked --bin weft
fi
mkdir -p "$OUT"

veth_pair "$NS1" "$NS2" "$U1/24" "$U2/24"
TOKEN=$("$WEFT" token new)
# shellcheck disable=SC2086
start_weft "$WEFT" "$NS1" bench1 "$TOKEN" $WEFT_ARGS
# shellcheck disable=SC2086
start_weft "$WEFT" "$NS2" bench2 "$TOKEN" $WEFT_ARGS

log "waiting for both nodes to get overlay addresses"
overlay_pair "$WEFT" bench1 bench2
log "overlay: $O1 <-> $O2; waiting for the path"
for _ in $(seq 300); do
  ip netns exec "$NS1" ping -c1 -W1 "$O2" >/dev/null 2>&1 && break
done

# Two servers: one for the measured runs, one for the load under the pings.
for port in 5201 5202; do
  ip netns exec "$NS2" iperf3 -s -p "$port" -D --pidfile "$WORK/iperf3-$port.pid" >/dev/null
  for _ in $(seq 50); do [ -s "$WORK/iperf3-$port.pid" ] && break; sleep 0.1; done
  PIDS+=("$(cat "$WORK/iperf3-$port.pid")")
done

rtt() { # dst -> "median p90" ms of PINGS pings 0.2 s apart
  ip netns exec "$NS1" ping -c "$PINGS" -i 0.2 "$1" >"$OUT/ping-$1.txt" || true
  python3 -c "
import re,sys
v=sorted(float(m) for m in re.findall(r'time=([0-9.]+)', open(sys.argv[1]).read()))
print('%.3f %.3f' % (v[len(v)//2], v[len(v)*9//10]) if v else 'nan nan')" "$OUT/ping-$1.txt"
}
loaded_rtt() { # dst -> "median p90" ms while one TCP stream runs to dst
  local measured
  start_load "$NS1" "$1" 5202 $((PINGS / 5 + 4)) "$OUT/load-$1.txt"
  measured=$(rtt "$1")
  # The caller reads the line as soon as it is printed: the load must have ended by then, or it
  # would run into the next measurement.
  wait "$LOAD" || true
  echo "$measured"
}
cpu_ticks() { # -> "busy idle" clock ticks of all cores since boot
  local _cpu user nice system idle iowait irq softirq steal
  read -r _cpu user nice system idle iowait irq softirq steal _ </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((idle + iowait))"
}
tcp() { # dst streams -> "Gbit/s received, % of all cores busy meanwhile"
  local b0 i0 b1 i1
  read -r b0 i0 < <(cpu_ticks)
  ip netns exec "$NS1" iperf3 -c "$1" -t "$DUR" -P "$2" -J >"$OUT/tcp-$1-$2.json"
  read -r b1 i1 < <(cpu_ticks)
  python3 -c "
import json,sys
bps=json.load(open(sys.argv[1]))['end']['sum_received']['bits_per_second']
busy,idle=int(sys.argv[2]),int(sys.argv[3])
print('%.2f %.0f' % (bps/1e9, 100*busy/max(1,busy+idle)))" "$OUT/tcp-$1-$2.json" "$((b1 - b0))" "$((i1 - i0))"
}
bidir() { # dst -> Gbit/s received both ways together, one stream each way
  ip netns exec "$NS1" iperf3 -c "$1" -t "$DUR" --bidir -J >"$OUT/bidir-$1.json"
  python3 -c "
import json,sys
e=json.load(open(sys.argv[1]))['end']
print('%.2f'%((e['sum_received']['bits_per_second']+e['sum_received_bidir_reverse']['bits_per_second'])/1e9))" "$OUT/bidir-$1.json"
}
udp() { # dst -> "received Gbit/s, loss %" of UDP offered at UDP_RATE, as the receiver counted
  ip netns exec "$NS1" iperf3 -c "$1" -u -b "$UDP_RATE" -l "$UDP_LEN" -t "$UDP_DUR" \
    -J >"$OUT/udp-$1.json"
  python3 -c "
import json,sys
s=json.load(open(sys.argv[1]))['end']['sum_received']
print('%.3f %.2f' % (s['bits_per_second']/1e9, s['lost_percent']))" "$OUT/udp-$1.json"
}

log "veth: ping"; read -r VR VR90 < <(rtt "$U2")
log "overlay: ping"; read -r OR OR90 < <(rtt "$O2")
log "veth: ping under one TCP stream"; read -r VL VL90 < <(loaded_rtt "$U2")
log "overlay: ping under one TCP stream"; read -r OL OL90 < <(loaded_rtt "$O2")
log "veth: TCP 1 stream"; read -r V1 V1C < <(tcp "$U2" 1)
log "overlay: TCP 1 stream"; read -r W1 W1C < <(tcp "$O2" 1)
log "veth: TCP 4 streams"; read -r V4 V4C < <(tcp "$U2" 4)
log "overlay: TCP 4 streams"; read -r W4 W4C < <(tcp "$O2" 4)
log "veth: TCP both ways"; VB=$(bidir "$U2")
log "overlay: TCP both ways"; WB=$(bidir "$O2")
log "veth: UDP at $UDP_RATE"; read -r VU VUL < <(udp "$U2")
log "overlay: UDP at $UDP_RATE"; read -r WU WUL < <(udp "$O2")

ratio() { python3 -c "print('%.3f' % ($1 / $2))"; }
added() { python3 -c "print('+%.3f ms added' % ($2 - $1))"; }
{
  echo "| measure | veth | weft overlay | overlay / veth |"
  echo "|---|---|---|---|"
  echo "| TCP 1 stream (Gbit/s) | $V1 | $W1 | $(ratio "$W1" "$V1") |"
  echo "| TCP 4 streams (Gbit/s) | $V4 | $W4 | $(ratio "$W4" "$V4") |"
  echo "| cores busy during TCP 1 stream (%) | $V1C | $W1C | |"
  echo "| cores busy during TCP 4 streams (%) | $V4C | $W4C | |"
  echo "| TCP both ways, 1 stream each (Gbit/s) | $VB | $WB | $(ratio "$WB" "$VB") |"
  echo "| UDP offered at $UDP_RATE, received (Gbit/s) | $VU | $WU | $(ratio "$WU" "$VU") |"
  echo "| UDP offered at $UDP_RATE, lost (%) | $VUL | $WUL | |"
  echo "| ping RTT median, idle (ms) | $VR | $OR | $(added "$VR" "$OR") |"
  echo "| ping RTT p90, idle (ms) | $VR90 | $OR90 | $(added "$VR90" "$OR90") |"
  echo "| ping RTT median, one TCP stream (ms) | $VL | $OL | $(added "$VL" "$OL") |"
  echo "| ping RTT p90, one TCP stream (ms) | $VL90 | $OL90 | $(added "$VL90" "$OL90") |"
} | tee "$OUT/summary.md"
"$WEFT" peers --api "unix://$WORK/bench1/api.sock" >&2 || true
