#!/usr/bin/env bash
# Installs what weft's tests, demo and benches need on a Debian machine, skipping what is there.
# Safe to run repeatedly; needs root only when something is missing.
set -euo pipefail

# command -> Debian package
declare -A wanted=(
  [ip]=iproute2
  [bridge]=iproute2
  # Shapes links to a slow rate (tests/netns_slow_link.rs).
  [tc]=iproute2
  [ping]=iputils-ping
  [dig]=dnsutils
  [iperf3]=iperf3
  # `kill` is a shell builtin, so the check names other programs of procps (the tests send
  # signals with /usr/bin/kill).
  [ps]=procps
  [sysctl]=procps
  [systemd-analyze]=systemd
  [nft]=nftables
  [nc]=netcat-openbsd
  [tcpdump]=tcpdump
  [curl]=curl
  [miniupnpd]=miniupnpd-nftables
  # The dashboard's browser test.
  [chromium]=chromium
  # `promtool check metrics` lints /metrics (Debian ships promtool only with the server).
  [promtool]=prometheus
)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

. "$(dirname "$0")/cargo-env.sh"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "installing rust component $component"
    rustup component add "$component"
  fi
done
