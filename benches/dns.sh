#!/usr/bin/env bash
# DNS answer rate and latency of weft's embedded server against dnsmasq, in one run.
#
# One network namespace holds a release `weft up` (a one-node mesh with N user A records,
# `--dns 127.0.0.1:53`) and dnsmasq on 127.0.0.1:5353 serving the same N names from a hosts
# file, plus N names of its own zone with a 300 s TTL. dnsperf, in the same namespace, measures:
#   (a) local names: weft's mesh answers vs dnsmasq's hosts answers;
#   (b) forwarded names: weft forwarding to dnsmasq, all cache hits after the first round, vs
#       dnsmasq answering them directly.
# For each: answers per second, mean and p99 latency (dnsperf -v prints one line per answer),
# and the server's CPU time per answer (user and system, from /proc/PID/stat), the steadiest
# figure while dnsperf shares the cores. Only the namespace's loopback is used. Prints a table
# with weft/dnsmasq ratios.
#
# Usage (root):  benches/dns.sh
#   knobs: DUR=10 NAMES=200 CLIENTS=8 WEFT=target/release/weft OUT=/tmp/weft-dns-bench
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
NAMES=${NAMES:-200}
CLIENTS=${CLIENTS:-8}
WEFT=${WEFT:-target/release/weft}
OUT=${OUT:-/tmp/weft-dns-bench}
NS=wdnsbench-$$
WORK=$(mktemp -d /tmp/weft-dns-bench.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh

need_root
scripts/install-deps.sh >/dev/null
if ! command -v dnsperf >/dev/null || ! command -v dnsmasq >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsperf \
    dnsmasq-base >/dev/null
fi
if [ "$WEFT" = target/release/weft ]; then
  log "building weft (release)"
  cargo build --release --quiet --locked --bin weft
fi
mkdir -p "$OUT"
new_netns "$NS"
API="unix://$WORK/bench/api.sock"
start_weft "$WEFT" "$NS" bench "$("$WEFT" token new)" --no-mdns --dns 127.0.0.1:53 \
  --dns-forward-server 127.0.0.1:5353 --dns-cache-size 10000

# dnsmasq: the same local names (hosts file), and a zone of its own with a 300 s TTL.
: >"$WORK/hosts"
: >"$WORK/local.txt"
: >"$WORK/forwarded.txt"
for i in $(seq 1 "$NAMES"); do
  echo "10.2.$((i / 250)).$((i % 250 + 1)) host$i.weft.internal" >>"$WORK/hosts"
  echo "10.3.$((i / 250)).$((i % 250 + 1)) ext$i.example" >>"$WORK/hosts"
  echo "host$i.weft.internal A" >>"$WORK/local.txt"
  echo "ext$i.example A" >>"$WORK/forwarded.txt"
done
ip netns exec "$NS" dnsmasq --keep-in-foreground --no-resolv --no-hosts \
  --addn-hosts="$WORK/hosts" --local-ttl=300 --port=5353 --listen-address=127.0.0.1 \
  --bind-interfaces --cache-size=10000 --pid-file="$WORK/dnsmasq.pid" --user=root \
  >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)

log "waiting for weft's API and its one-node cluster"
for _ in $(seq 300); do
  "$WEFT" status --json --api "$API" 2>/dev/null | grep -q '"overlay_ip": "' && break
  sleep 0.1
done
log "adding $NAMES user records"
for i in $(seq 1 "$NAMES"); do
  "$WEFT" dns add "host$i.weft.internal" A "10.2.$((i / 250)).$((i % 250 + 1))" --api "$API"
done
for _ in $(seq 100); do
  [ "$(ip netns exec "$NS" dig @127.0.0.1 +short "host$NAMES.weft.internal")" != "" ] && break
  sleep 0.1
done

# Both servers must give the right answers, or the figures mean nothing.
expect() { # port name address
  local got
  got=$(ip netns exec "$NS" dig @127.0.0.1 -p "$1" +short "$2")
  [ "$got" = "$3" ] || { echo "port $1 answers $2 with '$got', not $3; logs in $WORK" >&2; exit 1; }
}
expect 53 "host$NAMES.weft.internal" "10.2.$((NAMES / 250)).$((NAMES % 250 + 1))"
expect 5353 "host$NAMES.weft.internal" "10.2.$((NAMES / 250)).$((NAMES % 250 + 1))"
expect 53 "ext$NAMES.example" "10.3.$((NAMES / 250)).$((NAMES % 250 + 1))"
expect 5353 "ext$NAMES.example" "10.3.$((NAMES / 250)).$((NAMES % 250 + 1))"

# CPU time a process has used, in clock ticks (user and system, all its threads).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ=$(getconf CLK_TCK)

perf() { # port datafile label server-pid -> "qps avg_ms lost p99_ms cpu_us_per_answer"
  local before after
  before=$(ticks "$4")
  ip netns exec "$NS" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DUR" -c "$CLIENTS" -T 1 \
    -q 200 -v >"$OUT/$3.txt" 2>&1
  after=$(ticks "$4")
  python3 - "$OUT/$3.txt" "$((after - before))" "$TICK_HZ" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
qps = re.search(r"Queries per second:\s+([0-9.]+)", text).group(1)
lat = re.search(r"Average Latency \(s\):\s+([0-9.]+)", text).group(1)
lost = re.search(r"Queries lost:\s+(\d+)", text).group(1)
done = int(re.search(r"Queries completed:\s+(\d+)", text).group(1))
codes = re.search(r"Response codes:\s+(.*)", text).group(1)
if not codes.startswith("NOERROR") or "," in codes:
    sys.exit(f"{sys.argv[1]}: not every answer was NOERROR: {codes}")
# -v prints one line per answer, "> NOERROR <name> <type> <latency in seconds>", and one per
# lost query, "> T <name> <type>" (counted in "Queries lost").
answers = (line.split() for line in text.splitlines() if line.startswith("> "))
latencies = sorted(float(a[4]) for a in answers if len(a) == 5 and a[1] != "T")
if not latencies:
    sys.exit(f"{sys.argv[1]}: dnsperf printed no latency per answer")
p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
cpu_us = int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / done
print(f"{float(qps):.0f} {float(lat) * 1000:.3f} {lost} {p99 * 1000:.3f} {cpu_us:.2f}")
EOF
}

DNSMASQ=$(cat "$WORK/dnsmasq.pid")
log "local names: weft"; read -r WL WLL WLX WLP WLC < <(perf 53 "$WORK/local.txt" weft-local "${PIDS[0]}")
log "local names: dnsmasq"; read -r DL DLL DLX DLP DLC < <(perf 5353 "$WORK/local.txt" dnsmasq-local "$DNSMASQ")
log "forwarded names: warming weft's cache"
while read -r name _; do ip netns exec "$NS" dig @127.0.0.1 +short "$name" >/dev/null; done <"$WORK/forwarded.txt"
log "forwarded names: weft (cache)"; read -r WF WFL WFX WFP WFC < <(perf 53 "$WORK/forwarded.txt" weft-cached "${PIDS[0]}")
log "forwarded names: dnsmasq (direct)"; read -r DF DFL DFX DFP DFC < <(perf 5353 "$WORK/forwarded.txt" dnsmasq-direct "$DNSMASQ")

log "weft's answers by source:"
curl -s --unix-socket "${API#unix://}" http://weft/metrics | grep '^weft_dns_answers_total' >&2 || true

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
{
  echo "| measure | weft | dnsmasq | weft / dnsmasq |"
  echo "|---|---|---|---|"
  echo "| local names: answers/s | $WL | $DL | $(ratio "$WL" "$DL") |"
  echo "| local names: mean latency (ms) | $WLL | $DLL | $(ratio "$WLL" "$DLL") |"
  echo "| local names: p99 latency (ms) | $WLP | $DLP | $(ratio "$WLP" "$DLP") |"
  echo "| local names: server CPU per answer (µs) | $WLC | $DLC | $(ratio "$WLC" "$DLC") |"
  echo "| forwarded names, weft from its cache: answers/s | $WF | $DF | $(ratio "$WF" "$DF") |"
  echo "| forwarded names, weft from its cache: mean latency (ms) | $WFL | $DFL | $(ratio "$WFL" "$DFL") |"
  echo "| forwarded names, weft from its cache: p99 latency (ms) | $WFP | $DFP | $(ratio "$WFP" "$DFP") |"
  echo "| forwarded names: server CPU per answer (µs) | $WFC | $DFC | $(ratio "$WFC" "$DFC") |"
  echo "| queries lost (local, forwarded) | $WLX, $WFX | $DLX, $DFX | |"
} | tee "$OUT/summary.md"
