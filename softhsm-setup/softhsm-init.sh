#!/usr/bin/env bash
# Creates SoftHSM2 tokens in the project-local state dir, each with a random user PIN in
# $KEYRACK_STATE_DIR/pins/LABEL.pin (mode 600). Idempotent: existing tokens are kept, unless
# --fresh is given, which deletes and re-creates the named tokens.
#   softhsm-init.sh [--fresh] LABEL...
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fresh=0
if [[ ${1:-} == --fresh ]]; then fresh=1; shift; fi
(($#)) || die "usage: softhsm-init.sh [--fresh] LABEL..."

mkdir -p "$KEYRACK_STATE_DIR/softhsm/tokens" "$KEYRACK_STATE_DIR/pins"
chmod 700 "$KEYRACK_STATE_DIR/pins"
cat > "$SOFTHSM2_CONF" <<CONF
directories.tokendir = $KEYRACK_STATE_DIR/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF

# The labels of the tokens, one per line. A failing softhsm2-util (another process writing a
# token at that moment) is retried, then fatal: guessing "absent" would create a duplicate.
token_labels() {
  local out tries=0
  until out=$(softhsm2-util --show-slots 2>&1); do
    ((++tries < 20)) || die "softhsm2-util --show-slots keeps failing: $out"
    sleep 0.25
  done
  printf '%s\n' "$out" | sed -nE 's/^[[:space:]]+Label:[[:space:]]+(.*[^[:space:]])[[:space:]]*$/\1/p'
}
token_count() { local labels; labels=$(token_labels) || exit 1; grep -cxF -- "$1" <<<"$labels" || true; }
has_token() { [[ $(token_count "$1") -gt 0 ]]; }

for label in "$@"; do
  if [[ $fresh == 1 ]] && has_token "$label"; then
    softhsm2-util --delete-token --token "$label" >/dev/null
  fi
  if has_token "$label"; then continue; fi
  pin_file="$KEYRACK_STATE_DIR/pins/$label.pin"
  so_file="$KEYRACK_STATE_DIR/pins/$label.so-pin"
  (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pin_file"; echo >> "$pin_file")
  (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$so_file"; echo >> "$so_file")
  softhsm2-util --init-token --free --label "$label" \
    --pin "$(head -n1 "$pin_file")" --so-pin "$(head -n1 "$so_file")" >/dev/null
  count=$(token_count "$label")
  [[ $count == 1 ]] || die "$count SoftHSM tokens are labelled '$label' (was another softhsm-init.sh running?): re-run with --fresh"
  say "SoftHSM token '$label' created (PIN in $pin_file)"
done
