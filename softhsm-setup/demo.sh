#!/usr/bin/env bash
# The keyrack demo, as root on Debian 12: installs what is missing, builds keyrack, creates
# three SoftHSM tokens (one per node, as three appliances would each have their own HSM),
# initialises three node identities sealed by them, and checks each one from a fresh process.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYRACK_REPO"
export KEYRACK_STATE_DIR="$KEYRACK_REPO/.state/demo"
export SOFTHSM2_CONF="$KEYRACK_STATE_DIR/softhsm2.conf"
mkdir -p "$KEYRACK_STATE_DIR"
NODES=(node0 node1 node2)

bash softhsm-setup/install-deps.sh
say "building keyrack"
cargo build --locked -p keyrack-node
KEYRACK="$CARGO_TARGET_DIR/debug/keyrack"

# A demo run starts from scratch: new tokens, new identities.
rm -rf "$KEYRACK_STATE_DIR/nodes"
bash softhsm-setup/softhsm-init.sh --fresh "${NODES[@]/#/keyrack-}"

for n in "${NODES[@]}"; do
  say "keyrack init $n (sealed by SoftHSM token keyrack-$n)"
  "$KEYRACK" init --dir "$KEYRACK_STATE_DIR/nodes/$n" --node-id "$n" --backend pkcs11 \
    --pkcs11-module "$KEYRACK_PKCS11_MODULE" --token-label "keyrack-$n" \
    --pin-file "$KEYRACK_STATE_DIR/pins/keyrack-$n.pin"
done

for n in "${NODES[@]}"; do
  say "keyrack hsm check $n"
  "$KEYRACK" hsm check --config "$KEYRACK_STATE_DIR/nodes/$n/keyrack.toml"
done

say "the sealing key of node0, as the token itself lists it (pkcs11-tool)"
pkcs11-tool --module "$KEYRACK_PKCS11_MODULE" --token-label keyrack-node0 --login \
  --pin "$(head -n1 "$KEYRACK_STATE_DIR/pins/keyrack-node0.pin")" --list-objects --type secrkey 2>/dev/null

say "what a peer receives: node0's public identity"
cat "$KEYRACK_STATE_DIR/nodes/node0/identity.pub.toml"
echo
say "demo done: three nodes with sealed identities in $KEYRACK_STATE_DIR/nodes"
echo "    SOFTHSM2_CONF=$SOFTHSM2_CONF $KEYRACK hsm check --config $KEYRACK_STATE_DIR/nodes/node0/keyrack.toml"
