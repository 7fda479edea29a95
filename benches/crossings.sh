#!/usr/bin/env bash
# Where a ping's time goes through weft and through boringtun-cli with one thread, side by
# side, and the veth beneath them: for each, a pair of namespaces on a veth (A pings B over the
# tunnel; the veth alone: only the three RTTs), then
#   - idle RTT: the median of PINGS pings 20 ms apart;
#   - B's three steps of each echo, from tcpdump timestamps on B's underlay and tunnel device
#     (median of PINGS): opening (the sealed request seen on the veth -> the plain request
#     seen on the tunnel device), the kernel's answer (request -> reply on the tunnel device)
#     and sealing (the reply on the tunnel device -> the sealed reply on the veth);
#   - the same pings with every core kept busy by a spinning process at the lowest priority
#     (nice 19), so that no core sleeps: what the tunnel itself adds, without the time a
#     sleeping core of this virtual machine takes to wake;
#   - the same pings while one iperf3 TCP stream runs from A to B through the tunnel (held to
#     LOAD_RATE, iperf3's -b such as 300M, when set: every tunnel then carries the same load),
#     and each step of those echoes on both nodes (medians, tcpdump on both nodes' underlay and
#     tunnel device, frames of an echo's size only): A seals the request, B opens it, B's kernel
#     answers, B seals the reply, A opens it; what is left of the RTT is the wire and A's kernel;
#   - CPU per echo: B's daemon's user and system time over a flood of FLOOD pings, divided by
#     FLOOD (/proc/PID/stat, clock ticks), and the flood's mean RTT.
# ROUNDS rounds, the two tunnels alternating. Nothing outside the namespaces is addressed.
#
# Usage (root):  benches/crossings.sh
#   knobs: ROUNDS=3 PINGS=200 FLOOD=40000 WEFT=target/release/weft WEFT_ARGS="" LOAD_RATE=""
#   needs: boringtun-cli (cargo install boringtun-cli), wg (wireguard-tools), tcpdump, iperf3
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
PINGS=${PINGS:-200}
FLOOD=${FLOOD:-40000}
WEFT=${WEFT:-target/release/weft}
WEFT_ARGS=${WEFT_ARGS:-}
WORK=$(mktemp -d /tmp/weft-crossings.XXXXXX)
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=benches/lib.sh
. benches/lib.sh
trap 'bench_cleanup; rm -f /var/run/wireguard/wcr[12]-$$.sock' EXIT

need_root
scripts/install-deps.sh >/dev/null
for tool in boringtun-cli wg tcpdump iperf3; do
  command -v "$tool" >/dev/null || { echo "crossings: $tool is missing" >&2; exit 1; }
done
if [ "$WEFT" = target/release/weft ]; then
  log "building weft (release)"
  cargo build --release --quiet --locked --bin weft
fi
TICK_US=$((1000000 / $(getconf CLK_TCK)))

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user system

idle_rtt() { # ns dst: the median RTT (ms) of PINGS pings 20 ms apart
  ip netns exec "$1" ping -c "$PINGS" -i 0.02 "$2" |
    sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -g |
    awk '{v[NR] = $1} END {if (NR) printf "%.3f\n", v[int((NR + 1) / 2)]; else print "-"}'
}

# Both helpers below run in a command substitution, whose PIDS the EXIT trap never sees, and
# start_load may exit before they stop what they started: each process they start is bounded
# by timeout, so none outlives the measurement (a background job ignores ^C here).
loaded_rtt() { # ns_a ns_b dst: idle_rtt while one iperf3 TCP stream runs from ns_a to dst
  local rtt seconds=$((PINGS / 50 + 4))
  timeout $((seconds + 30)) ip netns exec "$2" iperf3 -s -1 -p 5209 >/dev/null 2>&1 &
  local server=$!
  start_load "$1" "$3" 5209 "$seconds" "$WORK/load.txt"
  rtt=$(idle_rtt "$1" "$3")
  wait "$LOAD" || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  # The rate the load held, for the record (to stderr: stdout is the RTT).
  grep sender "$WORK/load.txt" | tail -1 | sed "s/^/crossings: load to $3: /" >&2 || true
  echo "$rtt"
}

busy_rtt() { # ns dst: idle_rtt while every core spins at nice 19
  local spinners=() k rtt
  for k in $(seq "$(nproc)"); do
    timeout $((PINGS / 50 + 30)) nice -n 19 sh -c 'while :; do :; done' &
    spinners+=($!)
  done
  rtt=$(idle_rtt "$1" "$2")
  kill "${spinners[@]}"
  wait "${spinners[@]}" 2>/dev/null || true
  echo "$rtt"
}

capture() { # ns device filter file: a tcpdump of device in ns into file; its PID in CAPTURED
  # shellcheck disable=SC2086
  ip netns exec "$1" tcpdump -i "$2" -nn -tt --time-stamp-precision=micro -l $3 >"$4" 2>/dev/null &
  CAPTURED+=($!)
  PIDS+=($!)
}

# The frames of an echo through either tunnel (116 and 128 bytes of UDP payload, 158 and 170 on
# the wire); TCP acknowledgements and data of the load are shorter or longer.
ECHO_FRAMES="udp and greater 140 and less 220"

# measure NAME NS_A NS_B DST TUN_A TUN_B PID_B UNDERLAY_A UNDERLAY_B: prints one result line
measure() {
  local name=$1 a=$2 b=$3 dst=$4 tun_a=$5 tun=$6 pid=$7 under_a=$8 underlay=$9
  local idle busy loaded t0 t1 flood steps
  idle=$(idle_rtt "$a" "$dst")
  busy=$(busy_rtt "$a" "$dst")
  CAPTURED=()
  capture "$a" eth0 "$ECHO_FRAMES" "$WORK/l-eth-a.txt"
  capture "$a" "$tun_a" icmp "$WORK/l-tun-a.txt"
  capture "$b" eth0 "$ECHO_FRAMES" "$WORK/l-eth-b.txt"
  capture "$b" "$tun" icmp "$WORK/l-tun-b.txt"
  # The captures start while the load does (loaded_rtt waits for it before pinging).
  loaded=$(loaded_rtt "$a" "$b" "$dst")
  kill "${CAPTURED[@]}" 2>/dev/null || true
  wait "${CAPTURED[@]}" 2>/dev/null || true
  steps=$(python3 benches/crossings-steps.py "$under_a" "$underlay" "$WORK"/l-{eth-a,tun-a,eth-b,tun-b}.txt)
  ip netns exec "$b" tcpdump -i eth0 -nn -tt --time-stamp-precision=micro -l udp \
    >"$WORK/eth.txt" 2>/dev/null &
  local d1=$!
  PIDS+=("$d1")
  ip netns exec "$b" tcpdump -i "$tun" -nn -tt --time-stamp-precision=micro -l icmp \
    >"$WORK/tun.txt" 2>/dev/null &
  local d2=$!
  PIDS+=("$d2")
  for _ in $(seq 50); do
    ip netns exec "$a" ping -c1 -W1 "$dst" >/dev/null 2>&1 || true
    grep -q "echo reply" "$WORK/tun.txt" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "echo reply" "$WORK/tun.txt" || { echo "crossings: $name: tcpdump saw no echo" >&2; exit 1; }
  local skip_eth skip_tun
  skip_eth=$(wc -l <"$WORK/eth.txt")
  skip_tun=$(wc -l <"$WORK/tun.txt")
  ip netns exec "$a" ping -c "$PINGS" -i 0.02 -q "$dst" >/dev/null
  sleep 0.5
  kill "$d1" "$d2" 2>/dev/null || true
  wait "$d1" "$d2" 2>/dev/null || true
  read -r -a t0 <<<"$(ticks "$pid")"
  flood=$(ip netns exec "$a" ping -f -c "$FLOOD" -q "$dst" | awk -F/ '/^rtt/{print $5}')
  read -r -a t1 <<<"$(ticks "$pid")"
  python3 - "$name" "$underlay" "$idle" "$busy" "$loaded" "$flood" "$WORK/eth.txt" "$WORK/tun.txt" "$skip_eth" "$skip_tun" \
    "$(((t1[0] - t0[0]) * TICK_US))" "$(((t1[1] - t0[1]) * TICK_US))" "$FLOOD" "$steps" <<'EOF'
import bisect, statistics, sys
name, b_addr, idle, busy, loaded, flood, eth, tun, skip_eth, skip_tun, user_us, sys_us, count, steps = sys.argv[1:]
lines = lambda path, skip: open(path).readlines()[int(skip):]
# B's underlay carries the sealed request in (from A) and the sealed reply out (to A); an
# echo's frame is over 100 bytes, keepalives and handshake answers shorter or longer.
def length(l):
    return int(l.rsplit("length", 1)[1]) if "length" in l else 0
sealed = [l.split() for l in lines(eth, skip_eth) if " > " in l and 100 <= length(l) <= 160]
inbound = [float(f[0]) for f in sealed if f[4].startswith(b_addr + ".")]
outbound = [float(f[0]) for f in sealed if f[2].startswith(b_addr + ".")]
def by_seq(kind):
    out = {}
    for l in lines(tun, skip_tun):
        if kind in l and " seq " in l:
            out[int(l.split(" seq ")[1].split(",")[0])] = float(l.split()[0])
    return out
req, rep = by_seq("echo request"), by_seq("echo reply")
# Each echo is paired by its sequence number on the tunnel device; its request is matched
# with the last sealed frame in before it and its reply with the first sealed frame out
# after it, so that a keepalive or a lost capture shifts no other echo.
def before(xs, t):
    i = bisect.bisect_right(xs, t)
    return xs[i - 1] if i else None
def after(xs, t):
    i = bisect.bisect_left(xs, t)
    return xs[i] if i < len(xs) else None
opening, answer, sealing = [], [], []
for seq in sorted(set(req) & set(rep)):
    q, r = req[seq], rep[seq]
    into, out = before(inbound, q), after(outbound, r)
    if into is None or out is None or r < q:
        continue
    opening.append(q - into)
    answer.append(r - q)
    sealing.append(out - r)
n = len(opening)
def med(xs):
    return f"{statistics.median(xs) * 1e6:.1f}" if xs else "-"
per = int(count)
print(f"| {name} | {idle} | {busy} | {loaded} | {med(opening)} | {med(answer)} | {med(sealing)} | {n} "
      f"| {int(user_us) / per:.2f} | {int(sys_us) / per:.2f} | {flood} | {steps} |")
EOF
}

run_veth() { # the underlay alone: idle pings between two namespaces on a veth
  local a=wcross-v1-$$ b=wcross-v2-$$ idle busy loaded
  veth_pair "$a" "$b" 10.218.0.1/24 10.218.0.2/24
  idle=$(idle_rtt "$a" 10.218.0.2)
  busy=$(busy_rtt "$a" 10.218.0.2)
  loaded=$(loaded_rtt "$a" "$b" 10.218.0.2)
  echo "| veth | $idle | $busy | $loaded | | | | | | | | |"
  bench_stop
}

run_boringtun() {
  local a=wcross-bt1-$$ b=wcross-bt2-$$ d=$WORK/wg
  mkdir -p "$d" /var/run/wireguard
  veth_pair "$a" "$b" 10.214.0.1/24 10.214.0.2/24
  (umask 077; wg genkey >"$d/k1"; wg genkey >"$d/k2")
  wg pubkey <"$d/k1" >"$d/p1"
  wg pubkey <"$d/k2" >"$d/p2"
  local i1=wcr1-$$ i2=wcr2-$$
  # boringtun-cli leaves its socket behind when killed: a stale one would pass the wait below.
  rm -f "/var/run/wireguard/$i1.sock" "/var/run/wireguard/$i2.sock"
  ip netns exec "$a" boringtun-cli "$i1" --foreground --disable-drop-privileges --threads 1 \
    -l "$d/l1" >/dev/null 2>&1 &
  PIDS+=($!)
  ip netns exec "$b" boringtun-cli "$i2" --foreground --disable-drop-privileges --threads 1 \
    -l "$d/l2" >/dev/null 2>&1 &
  PIDS+=($!)
  local pid_b=$!
  for _ in $(seq 50); do
    [ -S "/var/run/wireguard/$i1.sock" ] && [ -S "/var/run/wireguard/$i2.sock" ] && break
    sleep 0.1
  done
  ip netns exec "$a" wg set "$i1" private-key "$d/k1" listen-port 51820 \
    peer "$(cat "$d/p2")" allowed-ips 10.215.0.2/32 endpoint 10.214.0.2:51820
  ip netns exec "$b" wg set "$i2" private-key "$d/k2" listen-port 51820 \
    peer "$(cat "$d/p1")" allowed-ips 10.215.0.1/32 endpoint 10.214.0.1:51820
  ip -n "$a" addr add 10.215.0.1/24 dev "$i1"
  ip -n "$a" link set "$i1" mtu 1420 up
  ip -n "$b" addr add 10.215.0.2/24 dev "$i2"
  ip -n "$b" link set "$i2" mtu 1420 up
  for _ in $(seq 20); do ip netns exec "$a" ping -c1 -W1 10.215.0.2 >/dev/null 2>&1 && break; done
  ip netns exec "$a" ping -c1 -W1 10.215.0.2 >/dev/null 2>&1 ||
    { echo "crossings: the boringtun pair does not answer" >&2; exit 1; }
  measure boringtun-t1 "$a" "$b" 10.215.0.2 "$i1" "$i2" "$pid_b" 10.214.0.1 10.214.0.2
  bench_stop
  rm -f "/var/run/wireguard/$i1.sock" "/var/run/wireguard/$i2.sock"
}

run_weft() {
  local a=wcross-w1-$$ b=wcross-w2-$$
  veth_pair "$a" "$b" 10.216.0.1/24 10.216.0.2/24
  local token
  token=$("$WEFT" token new)
  # shellcheck disable=SC2086
  start_weft "$WEFT" "$a" cross1 "$token" $WEFT_ARGS
  # shellcheck disable=SC2086
  start_weft "$WEFT" "$b" cross2 "$token" $WEFT_ARGS
  local pid_b=${PIDS[-1]}
  overlay_pair "$WEFT" cross1 cross2
  for _ in $(seq 300); do ip netns exec "$a" ping -c1 -W1 "$O2" >/dev/null 2>&1 && break; done
  ip netns exec "$a" ping -c1 -W1 "$O2" >/dev/null 2>&1 ||
    { echo "crossings: the weft pair does not answer" >&2; exit 1; }
  local tun_a tun_b
  tun_a=$(ip -n "$a" -o link | awk -F': ' '$2 !~ /^(lo|eth0)/ {print $2}' | cut -d@ -f1 | head -1)
  tun_b=$(ip -n "$b" -o link | awk -F': ' '$2 !~ /^(lo|eth0)/ {print $2}' | cut -d@ -f1 | head -1)
  measure weft "$a" "$b" "$O2" "$tun_a" "$tun_b" "$pid_b" 10.216.0.1 10.216.0.2
  bench_stop
}

echo "| tunnel | idle RTT median, ms | the same, cores kept busy, ms | the same, under one TCP stream, ms | B opens, µs | B's kernel answers, µs | B seals, µs | echoes matched | B user CPU per echo, µs | B system CPU per echo, µs | flood RTT mean, ms | under the stream: A seals / B opens / B's kernel answers / B seals / A opens, µs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for _ in $(seq "$ROUNDS"); do
  run_veth
  run_boringtun
  run_weft
done
