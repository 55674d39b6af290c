#!/usr/bin/env bash
# Drives the operator console (`keyrack tui`) in tmux against a live dev cluster and checks
# what an operator sees: starts a fresh `keyrack dev` cluster of its own (.state/tui-check,
# its own free NATS and API ports, so it never meets a running demo or the tests), makes a
# wallet with an ECDSA and an Ed25519 key plus one more key and signs once, then opens the
# console on node0 in a detached 120x40 tmux session and, key by key, waits for each screen:
# Cluster (node0-2 live), Keys (both schemes; / search), ? help, Audit (v verifies), a resize
# and q. A failed check prints the screen and the node logs' tails and exits 1.
#
# Uses the keyrack binary in the shared target directory: KEYRACK_BIN=path names a built one
# (test.sh passes the one its tests just built); without it, this builds keyrack-node first.
# KEYRACK_TUI_CAPTURE=path also writes the Cluster screen's text there (the README's picture).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYRACK_REPO"
DIR="$KEYRACK_REPO/.state/tui-check"
DEV_OUT="$KEYRACK_REPO/.state/tui-check.out"
WIDTH=120
HEIGHT=40

command -v tmux >/dev/null || die "tmux not found: run softhsm-setup/install-deps.sh (as root)"
if [[ -n ${KEYRACK_BIN:-} ]]; then
  KEYRACK="$KEYRACK_BIN"
else
  say "building keyrack"
  cargo build --locked -p keyrack-node --bins
  KEYRACK="$CARGO_TARGET_DIR/debug/keyrack"
fi
[[ -x $KEYRACK ]] || die "no keyrack binary at $KEYRACK (cargo build -p keyrack-node --bins)"
CLIENT=("$KEYRACK" client --config "$DIR/client.toml")

# The console runs in a tmux server of its own (its socket in the state directory), never the
# user's. remain-on-exit keeps the pane after the console ends: its last screen stays readable
# (its exit status goes to a file: tmux may mark the pane dead before it has one).
TMUX_SOCKET="$DIR/tmux.sock"
SESSION=console
tm() { tmux -u -S "$TMUX_SOCKET" "$@"; }
cleanup() {
  tm kill-server 2>/dev/null || true
  dev_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The pane's text as it is now (trailing blanks dropped by tmux).
SCREEN=
capture() { SCREEN=$(tm capture-pane -p -t "$SESSION" 2>/dev/null || true); }

# fail WHAT: prints the last screen, the node logs' tails and keyrack dev's output, and exits 1.
fail() {
  local log
  {
    printf '\n--- the console screen (%sx%s) ---\n%s\n--- end of screen ---\n' \
      "$(tm display-message -p -t "$SESSION" '#{window_width}' 2>/dev/null || echo '?')" \
      "$(tm display-message -p -t "$SESSION" '#{window_height}' 2>/dev/null || echo '?')" "$SCREEN"
    for log in "$DIR"/logs/node*.log; do
      [[ -f $log ]] || continue
      printf '\n--- tail of %s ---\n' "$log"
      tail -n 15 "$log"
    done
    printf '\n--- tail of %s ---\n' "$DEV_OUT"
    tail -n 10 "$DEV_OUT" 2>/dev/null || true
  } >&2
  die "tui-check: $1"
}

# expect WHAT SECS PATTERN…: polls the screen until every extended regex PATTERN matches a
# line of it (a PATTERN starting with ! must match none), for at most SECS seconds; then
# fails naming WHAT and the patterns that did not hold.
expect() {
  local what="$1" secs="$2" deadline p missing
  shift 2
  deadline=$((SECONDS + secs))
  while :; do
    capture
    missing=()
    for p in "$@"; do
      if [[ $p == !* ]]; then
        ! grep -Eq -- "${p#!}" <<<"$SCREEN" || missing+=("no line matching '${p#!}'")
      else
        grep -Eq -- "$p" <<<"$SCREEN" || missing+=("'$p'")
      fi
    done
    ((${#missing[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      fail "$what: after ${secs} s the screen still lacks $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
    fi
    sleep 0.2
  done
}

# keys KEY…: presses keys in the console (tmux key names: Enter, Escape, 2, ?).
keys() { tm send-keys -t "$SESSION" "$@"; }

say "tui-check: a fresh dev cluster in $DIR (its own NATS and API ports)"
NATS_PORT=$(free_port 1)
API_PORT=$(free_port 3)
while ((API_PORT <= NATS_PORT && NATS_PORT < API_PORT + 3)); do API_PORT=$(free_port 3); done
dev_start "$KEYRACK" "$DIR" "$DEV_OUT" --fresh --nodes 3 --threshold 2 \
  --nats-port "$NATS_PORT" --api-port "$API_PORT"
grep -q "tui --node $DIR/nodes/node0 --approver-config $DIR/client.toml" "$DEV_OUT" ||
  die "tui-check: keyrack dev no longer prints the console command this script runs (see $DEV_OUT)"

say "tui-check: keygen tui-wallet-1 (ECDSA and Ed25519, 2 of 3) and tui-other-1 (Ed25519); sign once"
"${CLIENT[@]}" keygen tui-wallet-1 --scheme ecdsa --scheme eddsa --threshold 2 --timeout 600 ||
  die "tui-check: keygen of tui-wallet-1 failed (the error is above; node logs in $DIR/logs)"
"${CLIENT[@]}" keygen tui-other-1 --scheme eddsa --threshold 2 ||
  die "tui-check: keygen of tui-other-1 failed (the error is above; node logs in $DIR/logs)"
"${CLIENT[@]}" sign tui-wallet-1 --scheme eddsa --message "tui-check" ||
  die "tui-check: signing with tui-wallet-1 failed (the error is above; node logs in $DIR/logs)"

say "tui-check: keyrack tui --node $DIR/nodes/node0 in tmux (${WIDTH}x${HEIGHT})"
printf 'set-option -g remain-on-exit on\n' > "$DIR/tmux.conf"
# The console's exit status goes to a file (tmux may mark the pane dead without one).
STATUS_FILE="$DIR/tui.status"
rm -f "$STATUS_FILE"
tm -f "$DIR/tmux.conf" new-session -d -s "$SESSION" -x "$WIDTH" -y "$HEIGHT" \
  "$(printf '%q ' "$KEYRACK" tui --node "$DIR/nodes/node0" --approver-config "$DIR/client.toml" --refresh-ms 300); echo \$? > $(printf '%q' "$STATUS_FILE")"

echo "    Cluster tab: node0, node1 and node2 live"
expect "the Cluster tab" 60 '1 Cluster' 'this node' 'node +node0 \(keyrack' 'peers: 3 of 3 live' \
  'node0 +● live +\(this node\)' 'node1 +● live' 'node2 +● live' '!STALE' '!no data'
if [[ -n ${KEYRACK_TUI_CAPTURE:-} ]]; then
  printf '%s\n' "$SCREEN" > "$KEYRACK_TUI_CAPTURE"
  echo "    (the Cluster screen is in $KEYRACK_TUI_CAPTURE)"
fi

echo "    2: Keys tab lists tui-wallet-1's ECDSA and Ed25519 keys"
keys 2
expect "the Keys tab (key 2)" 20 'keys: 3' \
  'tui-wallet-1 +ecdsa-secp256k1 +READY' 'tui-wallet-1 +ed25519 +READY' 'tui-other-1 +ed25519'

echo "    /: a search for tui-wallet leaves only tui-wallet-1"
keys /
tm send-keys -t "$SESSION" -l tui-wallet
expect "the key search (/ then typing)" 10 'search: tui-wallet'
keys Enter
expect "the key search (Enter)" 10 "keys: 2 of [0-9]+ match 'tui-wallet'" \
  'tui-wallet-1 +ecdsa-secp256k1' 'tui-wallet-1 +ed25519' '!tui-other-1'
keys Escape
expect "clearing the key search (Esc)" 10 'keys: 3' 'tui-other-1 +ed25519' '!search:'

echo "    ?: the help overlay"
keys '?'
expect "the help overlay (?)" 10 'keys · \? or Esc closes' 'have the node verify its whole audit log'
keys '?'
expect "closing the help overlay (? again)" 10 '!or Esc closes' 'keys: 3'

echo "    6: Audit tab has entries; v: the node verifies the log"
keys 6
expect "the Audit tab (key 6)" 20 'audit log: [1-9][0-9]* entries shown' 'press v to have the node check'
keys v
expect "audit verification (v)" 30 'audit log verified: [1-9][0-9]* entries'

echo "    resize: 90x24 redraws, 50x10 says too small, ${WIDTH}x${HEIGHT} again shows the Cluster tab"
keys 1
expect "back to the Cluster tab (key 1)" 10 'peers: 3 of 3 live'
tm resize-window -t "$SESSION" -x 90 -y 24
expect "the Cluster tab at 90x24" 10 'peers: 3 of 3 live' 'node0 +● live'
[[ $(wc -l <<<"$SCREEN") -le 24 ]] || fail "the screen has more than 24 lines after resizing to 90x24"
tm resize-window -t "$SESSION" -x 50 -y 10
expect "the console at 50x10" 10 'terminal too small: 50x10'
tm resize-window -t "$SESSION" -x "$WIDTH" -y "$HEIGHT"
expect "the Cluster tab back at ${WIDTH}x${HEIGHT}" 10 'peers: 3 of 3 live' '!terminal too small'

echo "    q: the console exits with status 0"
keys q
deadline=$((SECONDS + 10))
until [[ -s $STATUS_FILE ]]; do
  ((SECONDS < deadline)) || { capture; fail "q did not end the console within 10 s"; }
  sleep 0.1
done
status=$(<"$STATUS_FILE")
capture
[[ $status == 0 ]] || fail "the console exited with status $status after q (its output is on the screen above)"
say "tui-check: the console showed every screen checked and quit cleanly"
