#!/usr/bin/env bash
# Resident memory of two weft binaries side by side: binary A in one network namespace and B in
# another, joined by a veth pair, one mesh of two nodes; VmRSS of each IDLE seconds after both
# have overlay addresses, split into private memory, file pages and the executable's own file
# pages. Run it with the binaries both ways round: which node leads (the one
# with the lower PeerId, fresh each run) changes what it holds. Nothing outside the two
# namespaces is addressed (no DHT; mDNS stays on the veth).
#
# Usage (root):  benches/rss.sh A B        knob: IDLE=40
set -euo pipefail

A=${1:?usage: benches/rss.sh A B}
B=${2:?usage: benches/rss.sh A B}
IDLE=${IDLE:-40}
TAG=$$
NS1=wrss1-$TAG NS2=wrss2-$TAG
WORK=$(mktemp -d /tmp/weft-rss.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  ip netns del "$NS1" 2>/dev/null || true
  ip netns del "$NS2" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
ip netns add "$NS1"
ip netns add "$NS2"
ip -n "$NS1" link add eth0 type veth peer name eth0 netns "$NS2"
ip -n "$NS1" addr add 10.211.0.1/24 dev eth0
ip -n "$NS2" addr add 10.211.0.2/24 dev eth0
for ns in "$NS1" "$NS2"; do
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
done

TOKEN=$("$A" token new)
start() { # name binary ns
  ip netns exec "$3" "$2" up --token "$TOKEN" --no-dht --state-dir "$WORK/$1" \
    --api "unix://$WORK/$1.sock" --hostname "$1" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
}
start a "$A" "$NS1"
start b "$B" "$NS2"
addressed() { # name
  "$A" status --json --api "unix://$WORK/$1.sock" 2>/dev/null | grep -q '"overlay_ip": *"[0-9]'
}
for _ in $(seq 600); do
  addressed a && addressed b && break
  sleep 0.1
done
addressed a && addressed b || { echo "no mesh formed; logs:" >&2; cat "$WORK"/*.log >&2; exit 1; }
sleep "$IDLE"
for i in 0 1; do
  kill -0 "${PIDS[$i]}" 2>/dev/null || {
    echo "node $i exited; its log:" >&2
    cat "$WORK/$([ "$i" = 0 ] && echo a || echo b).log" >&2
    exit 1
  }
done
# VmRSS, and what it is made of: private memory (RssAnon), file pages (RssFile), and of those
# the pages of the weft executable itself (its code and read-only data, shared by every process
# that runs the same file and dropped by the kernel under pressure).
field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }
own() { # pid binary -> kB of the binary's own file pages that are resident (its mappings'
  # resident pages less those copied on write, which count as private memory)
  awk -v bin="$(readlink -f "$2")" '
    /^[0-9a-f]+-[0-9a-f]+ /{mine = ($6 == bin)}
    mine && /^Rss:/{kb += $2}
    mine && /^Anonymous:/{kb -= $2}
    END{print kb + 0 " kB"}' "/proc/$1/smaps"
}
report() { # label binary pid
  echo "$1 $2: $(field "$3" VmRSS) (anon $(field "$3" RssAnon), file $(field "$3" RssFile), of which the executable $(own "$3" "$2"))"
}
report A "$A" "${PIDS[0]}"
report B "$B" "${PIDS[1]}"
