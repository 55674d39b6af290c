#!/usr/bin/env bash
# Installs the system packages keyrack builds and tests with (Debian 12, as root). Idempotent:
# does nothing when everything is present.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(build-essential pkg-config m4 softhsm2 opensc swtpm swtpm-tools tpm2-tools libtss2-dev
          nats-server sqlite3 tmux)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing system packages: ${missing[*]}"
  [[ $(id -u) == 0 ]] || die "run as root (apt-get install ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
if ! command -v cargo-nextest >/dev/null; then
  say "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
