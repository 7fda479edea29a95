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

A=$(readlink -f "${1:?usage: benches/rss.sh A B}")
B=$(readlink -f "${2:?usage: benches/rss.sh A B}")
IDLE=${IDLE:-40}
NS1=wrss1-$$ NS2=wrss2-$$
WORK=$(mktemp -d /tmp/weft-rss.XXXXXX)
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

need_root
veth_pair "$NS1" "$NS2" 10.211.0.1/24 10.211.0.2/24
TOKEN=$("$A" token new)
start_weft "$A" "$NS1" a "$TOKEN"
start_weft "$B" "$NS2" b "$TOKEN"
addressed() { # name
  [ -n "$(overlay_ip "$A" "$1")" ]
}
for _ in $(seq 600); do
  addressed a && addressed b && break
  sleep 0.1
done
addressed a && addressed b || { echo "no mesh formed; logs:" >&2; cat "$WORK"/*/weft.log >&2; exit 1; }
sleep "$IDLE"
for i in 0 1; do
  kill -0 "${PIDS[$i]}" 2>/dev/null || {
    echo "node $i exited; its log:" >&2
    cat "$WORK/$([ "$i" = 0 ] && echo a || echo b)/weft.log" >&2
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
