# Shared by the bench scripts (sourced, not run): network namespaces, weft nodes in them, and
# the clean-up of both on any exit. Set WORK (a directory of the run's own) before sourcing;
# processes started go in PIDS and namespaces made in NETNS, and are removed at exit.

PIDS=()
NETNS=()

log() { echo "[$(date +%T)] $*" >&2; }

bench_stop() { # stops the processes started and removes the namespaces made so far
  local p ns
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  PIDS=()
  NETNS=()
}

bench_cleanup() {
  bench_stop
  rm -rf "$WORK"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

need_root() {
  [ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
}

new_netns() { # ns: a namespace with its loopback up
  ip netns add "$1"
  NETNS+=("$1")
  ip -n "$1" link set lo up
}

veth_pair() { # ns1 ns2 address1/len address2/len: two namespaces joined by eth0 <-> eth0
  new_netns "$1"
  new_netns "$2"
  ip -n "$1" link add eth0 type veth peer name eth0 netns "$2"
  ip -n "$1" addr add "$3" dev eth0
  ip -n "$2" addr add "$4" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$2" link set eth0 up
}

start_weft() { # binary ns name token [up args...]: state, API socket and log under $WORK/name
  local bin=$1 ns=$2 name=$3 token=$4
  shift 4
  mkdir -p "$WORK/$name"
  ip netns exec "$ns" "$bin" up --token "$token" --no-dht --state-dir "$WORK/$name/state" \
    --api "unix://$WORK/$name/api.sock" --hostname "$name" "$@" >"$WORK/$name/weft.log" 2>&1 &
  PIDS+=($!)
}

start_load() { # ns dst port seconds log: one iperf3 TCP stream from ns to dst; its PID in LOAD
  # With LOAD_RATE set (iperf3's -b, such as 300M), the stream is held to that rate.
  LOAD=""
  local rate=()
  [ -n "${LOAD_RATE:-}" ] && rate=(-b "$LOAD_RATE")
  # Start until it runs: the server may not listen yet, or still wind up a test.
  for _ in $(seq 10); do
    ip netns exec "$1" iperf3 -c "$2" -p "$3" -t "$4" "${rate[@]}" >"$5" 2>&1 &
    LOAD=$!
    sleep 2
    kill -0 "$LOAD" 2>/dev/null && return 0
  done
  echo "the load to $2 did not start: $(cat "$5")" >&2
  exit 1
}

overlay_ip() { # binary name -> the node's overlay address, or nothing yet
  "$1" status --json --api "unix://$WORK/$2/api.sock" 2>/dev/null |
    sed -n 's/.*"overlay_ip": *"\([0-9.]*\)".*/\1/p' || true
}

overlay_pair() { # binary name1 name2: both nodes' overlay addresses in O1 and O2, within 60 s
  O1="" O2=""
  for _ in $(seq 600); do
    O1=$(overlay_ip "$1" "$2"); O2=$(overlay_ip "$1" "$3")
    [ -n "$O1" ] && [ -n "$O2" ] && return 0
    sleep 0.1
  done
  echo "no overlay addresses; logs in $WORK" >&2
  cat "$WORK/$2/weft.log" "$WORK/$3/weft.log" >&2
  exit 1
}
