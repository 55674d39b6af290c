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

has_token() { softhsm2-util --show-slots 2>/dev/null | grep -qE "^\s+Label:\s+$1\s*$"; }

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
  say "SoftHSM token '$label' created (PIN in $pin_file)"
done
