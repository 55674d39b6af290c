# shellcheck shell=bash
# Shared by the softhsm-setup scripts: paths, state directory, free ports. Source it.
set -euo pipefail
KEYRACK_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEYRACK_REPO
# Project-local state: SoftHSM tokens, swtpm and nats-server state, PIN files, logs.
export KEYRACK_STATE_DIR="${KEYRACK_STATE_DIR:-$KEYRACK_REPO/.state}"
# One build directory and GMP cache outside the clone, shared by every clone on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyrack/target}"
export GMP_MPFR_SYS_CACHE="${GMP_MPFR_SYS_CACHE:-$HOME/.cache/keyrack/gmp}"
export SOFTHSM2_CONF="$KEYRACK_STATE_DIR/softhsm2.conf"
export KEYRACK_PKCS11_MODULE="${KEYRACK_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
export TSS2_LOG="${TSS2_LOG:-all+none}"
mkdir -p "$KEYRACK_STATE_DIR" "$CARGO_TARGET_DIR" "$GMP_MPFR_SYS_CACHE"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# free_port [SPAN]: a loopback port P such that P..P+SPAN-1 are all free.
free_port() {
  local span="${1:-1}" p i ok
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    ok=1
    for ((i = 0; i < span; i++)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((p + i))") 2>/dev/null; then ok=0; break; fi
    done
    if [[ $ok == 1 ]]; then echo "$p"; return 0; fi
  done
  die "no free loopback port found"
}

# wait_port PORT SECONDS: until something listens on 127.0.0.1:PORT.
wait_port() {
  local port="$1" secs="${2:-10}"
  for _ in $(seq 1 $((secs * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# keyrack dev in the background of the calling script, as demo.sh and tui-check.sh run it.
# dev_start KEYRACK DIR OUT [ARGS…] starts `KEYRACK dev --dir DIR ARGS…` with its output on
# stdout and in OUT, and returns once it says the cluster is ready (DEV_READY_SECS, default
# 120), or dies saying where to look. dev_stop stops it (its nodes, then nats-server): call it
# from an EXIT trap. DEV_PID is its pid while it runs.
DEV_PID=
dev_start() {
  local keyrack="$1" dir="$2" out="$3" secs="${DEV_READY_SECS:-120}"
  shift 3
  mkdir -p "$(dirname "$out")"
  : > "$out"
  "$keyrack" dev --dir "$dir" "$@" > >(tee -i "$out") 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 $((secs * 10))); do
    grep -q "is ready" "$out" && return 0
    kill -0 "$DEV_PID" 2>/dev/null || die "keyrack dev stopped (its output is above and in $out)"
    sleep 0.1
  done
  die "the cluster was not ready within $secs s (see $out and $dir/logs)"
}
dev_stop() {
  if [[ -n $DEV_PID ]] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill -TERM "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
  fi
  DEV_PID=
}
