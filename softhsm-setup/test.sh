#!/usr/bin/env bash
# Runs the whole keyrack test suite on this machine, as root on Debian 12:
#   installs missing system packages, re-creates the test SoftHSM tokens, starts swtpm and
#   nats-server on free loopback ports, checks formatting and lints, runs every test with
#   cargo-nextest, drives the operator console against a dev cluster (tui-check.sh), and stops
#   the services again. Extra arguments go to `cargo nextest run`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYRACK_REPO"
# The suite's own state, apart from the demo's.
export KEYRACK_STATE_DIR="$KEYRACK_REPO/.state/test"
export SOFTHSM2_CONF="$KEYRACK_STATE_DIR/softhsm2.conf"
mkdir -p "$KEYRACK_STATE_DIR"

bash softhsm-setup/install-deps.sh
bash softhsm-setup/softhsm-init.sh --fresh keyrack-test keyrack-badpin keyrack-node0 keyrack-node1 keyrack-node2 keyrack-node3
bash softhsm-setup/services.sh start
trap 'bash softhsm-setup/services.sh stop' EXIT
source "$KEYRACK_STATE_DIR/services.env"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo nextest run --workspace"
profile=default
[[ -n ${CI:-} ]] && profile=ci
cargo nextest run --workspace --locked --profile "$profile" "$@"
say "doc tests"
cargo test --workspace --locked --doc
say "console check: keyrack tui in tmux against a live keyrack dev cluster (softhsm-setup/tui-check.sh)"
# A full run has just built keyrack with its tests; after a subset, tui-check.sh builds it.
if (($# == 0)); then export KEYRACK_BIN="$CARGO_TARGET_DIR/debug/keyrack"; fi
bash softhsm-setup/tui-check.sh
