# Sourced by the scripts that build weft: makes cargo reachable under sudo. sudo resets PATH and
# HOME, so a toolchain that rustup installed for the invoking user is found through SUDO_USER's
# home; RUSTUP_HOME points at that user's toolchains, while cargo's own downloads stay in the
# current user's CARGO_HOME.
if ! command -v cargo >/dev/null 2>&1; then
  for home in "${HOME:-}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
    if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
      # rustup's env file names $HOME, which is not that user's home under sudo.
      export PATH="$home/.cargo/bin:$PATH"
      if [ -d "$home/.rustup" ]; then
        export RUSTUP_HOME="$home/.rustup"
      fi
      break
    fi
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (for your user or root), then run this again" >&2
  exit 1
fi
