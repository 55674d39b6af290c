#!/usr/bin/env bash
# Starts or stops the services tests need, on free loopback ports:
#   swtpm        (TPM 2.0 simulator; state in $KEYRACK_STATE_DIR/swtpm)
#   nats-server  (with JetStream; state in $KEYRACK_STATE_DIR/nats)
# `start` writes $KEYRACK_STATE_DIR/services.env with KEYRACK_TPM_TCTI and KEYRACK_NATS_URL;
# `stop` ends both; `status` says what runs. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENV_FILE="$KEYRACK_STATE_DIR/services.env"
RUN="$KEYRACK_STATE_DIR/run"
mkdir -p "$RUN"

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_swtpm() {
  if running "$RUN/swtpm.pid"; then return; fi
  local port; port=$(free_port 2)
  mkdir -p "$KEYRACK_STATE_DIR/swtpm"
  swtpm socket --tpm2 --tpmstate "dir=$KEYRACK_STATE_DIR/swtpm" \
    --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear --daemon --pid "file=$RUN/swtpm.pid" \
    --log "file=$KEYRACK_STATE_DIR/swtpm.log,level=1"
  wait_port "$port" 10 || die "swtpm did not start (see $KEYRACK_STATE_DIR/swtpm.log)"
  echo "swtpm:host=127.0.0.1,port=$port" > "$RUN/swtpm.tcti"
  say "swtpm on 127.0.0.1:$port"
}

start_nats() {
  if running "$RUN/nats.pid"; then return; fi
  local port; port=$(free_port 1)
  mkdir -p "$KEYRACK_STATE_DIR/nats"
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$KEYRACK_STATE_DIR/nats" \
    -P "$RUN/nats.pid" -l "$KEYRACK_STATE_DIR/nats.log" &
  disown
  wait_port "$port" 10 || die "nats-server did not start (see $KEYRACK_STATE_DIR/nats.log)"
  echo "nats://127.0.0.1:$port" > "$RUN/nats.url"
  say "nats-server on 127.0.0.1:$port"
}

write_env() {
  {
    echo "export KEYRACK_STATE_DIR='$KEYRACK_STATE_DIR'"
    echo "export SOFTHSM2_CONF='$SOFTHSM2_CONF'"
    echo "export KEYRACK_PKCS11_MODULE='$KEYRACK_PKCS11_MODULE'"
    echo "export TSS2_LOG='$TSS2_LOG'"
    echo "export KEYRACK_TPM_TCTI='$(cat "$RUN/swtpm.tcti")'"
    echo "export KEYRACK_NATS_URL='$(cat "$RUN/nats.url")'"
  } > "$ENV_FILE"
}

stop_one() {
  local pidfile="$RUN/$1.pid"
  if running "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start_swtpm; start_nats; write_env ;;
  stop) stop_one swtpm; stop_one nats; rm -f "$ENV_FILE" ;;
  status)
    for s in swtpm nats; do
      if running "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; fi
    done ;;
  *) die "usage: services.sh start|stop|status" ;;
esac
