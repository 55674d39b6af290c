#!/usr/bin/env bash
# The keyrack demo, as root on Debian 12: installs what is missing, builds keyrack, starts a
# local three-node cluster with `keyrack dev` (nats-server, and each node's secrets sealed by
# its own SoftHSM token), creates a wallet holding an ECDSA (secp256k1) and an Ed25519 key
# shared by the nodes (2 of 3 sign), signs with each key and with an HD-derived ECDSA child
# key, and prints the signatures the client verified.
#
# The cluster then keeps running until Ctrl-C. KEYRACK_DEMO_EXIT=1 stops it right away
# instead (for automated runs). Its state stays in .state/dev: a second run brings back the
# same cluster and the same wallet; `keyrack dev --fresh` starts over.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYRACK_REPO"
DIR="$KEYRACK_REPO/.state/dev"
DEV_OUT="$KEYRACK_REPO/.state/dev.out"
MESSAGE="hello from keyrack"

bash softhsm-setup/install-deps.sh
say "building keyrack"
cargo build --locked -p keyrack-node
KEYRACK="$CARGO_TARGET_DIR/debug/keyrack"
CLIENT=("$KEYRACK" client --config "$DIR/client.toml")

# keyrack dev runs in the background of this script (lib.sh's dev_start); whatever way the
# script ends, it is stopped.
trap dev_stop EXIT
trap 'exit 130' INT TERM

say "keyrack dev: nats-server and three nodes, each sealed by its own SoftHSM token"
# A dev cluster made before nodes enforced a signed policy has no policy bundle: start over.
FRESH=()
if [[ -d $DIR/nodes && ! -f $DIR/policy-v1.bundle.toml ]]; then
  say "$DIR was made by an older keyrack (no policy bundle): starting the dev cluster over"
  FRESH=(--fresh)
fi
dev_start "$KEYRACK" "$DIR" "$DEV_OUT" --nodes 3 --threshold 2 "${FRESH[@]}"

say "keygen: wallet-1 with an ECDSA (secp256k1) and an Ed25519 key; every node must report the same keys"
echo "    (the first ECDSA key of a committee needs its setup first: tens of seconds; the nodes report progress below)"
"${CLIENT[@]}" keygen wallet-1 --scheme ecdsa --scheme eddsa --threshold 2 --timeout 600 ||
  die "keygen of wallet-1 failed (the error is above; node logs in $DIR/logs)"

say "sign \"$MESSAGE\" with the Ed25519 key (2 of the 3 nodes take part)"
"${CLIENT[@]}" sign wallet-1 --scheme eddsa --message "$MESSAGE" ||
  die "Ed25519 signing failed (the error is above; node logs in $DIR/logs)"

say "sign \"$MESSAGE\" with the ECDSA key (the nodes sign its SHA-256 digest)"
"${CLIENT[@]}" sign wallet-1 --scheme ecdsa --message "$MESSAGE" --timeout 300 ||
  die "ECDSA signing failed (the error is above; node logs in $DIR/logs)"

say "sign with the ECDSA child key m/0/1 (HD derivation: each node derives its own share)"
"${CLIENT[@]}" sign wallet-1 --scheme ecdsa --message "$MESSAGE" --path m/0/1 --timeout 300 ||
  die "HD-derived ECDSA signing failed (the error is above; node logs in $DIR/logs)"

say "demo done: every signature above was verified by the client under the wallet's public key"
cat <<EOF
    The cluster runs on, with its state in $DIR. Use it from another terminal:
      ${CLIENT[*]} keygen wallet-2 --scheme eddsa
      ${CLIENT[*]} sign wallet-1 --scheme ecdsa --message 'pay 1 BTC' --path m/44/0/7
      ${CLIENT[*]} status --key wallet-1
    Node logs: $DIR/logs/. Next time, without the demo (same cluster, same wallets):
      $KEYRACK dev --dir $DIR
    The operator console (node0's view; q quits):
      $KEYRACK tui --node $DIR/nodes/node0 --approver-config $DIR/client.toml
EOF

if [[ ${KEYRACK_DEMO_EXIT:-} == 1 ]]; then
  say "KEYRACK_DEMO_EXIT=1: stopping the cluster"
  dev_stop
  exit 0
fi
say "the cluster keeps running; press Ctrl-C to stop it"
trap 'dev_stop; exit 0' INT TERM
wait "$DEV_PID" || die "keyrack dev stopped on its own (see above and $DIR/logs)"
