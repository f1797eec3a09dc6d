#!/usr/bin/env bash
# The demo behind `make demo`: npm server-everything on 127.0.0.1:3001, and Envoy with the MCP
# gateway filter (envoy/demo.yaml) on 127.0.0.1:10000, admin on 127.0.0.1:9901. Runs until Ctrl-C or
# SIGTERM, then stops what it started. Expects `make build deps` to have run (make demo does that).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=target/demo
EVERYTHING_JS=integration/node_modules/@modelcontextprotocol/server-everything/dist/index.js
WASM=target/wasm32-wasip1/release/mcp_gateway.wasm
ENVOY=.venv/bin/envoy
EVERYTHING_PORT=3001 ENVOY_PORT=10000 ADMIN_PORT=9901   # fixed by envoy/demo.yaml

for f in "$EVERYTHING_JS" "$WASM" "$ENVOY"; do
  [[ -e $f ]] || { echo "demo: $f is missing; run 'make build deps' (or 'make demo')" >&2; exit 1; }
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $EVERYTHING_PORT $ENVOY_PORT $ADMIN_PORT; do
  if port_busy "$p"; then echo "demo: 127.0.0.1:$p is already in use; stop whatever holds it" >&2; exit 1; fi
done

mkdir -p "$OUT"
: > "$OUT/access.log"
pids=()
cleanup() {
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

url_ok() { .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; }
# Poll until $2 answers (a TCP port or a URL), at most $3 seconds; fail if pid $1 died.
wait_ready() {
  local pid=$1 what=$2 deadline=$((SECONDS + $3))
  until if [[ $what == http* ]]; then url_ok "$what"; else port_busy "$what"; fi; do
    kill -0 "$pid" 2>/dev/null || { echo "demo: process $pid exited; see $OUT/*.log" >&2; return 1; }
    (( SECONDS < deadline )) || { echo "demo: timed out waiting for $what" >&2; return 1; }
    sleep 0.1
  done
}

# server-everything binds all interfaces: the preload forces 127.0.0.1. Its get-env tool returns
# the whole environment, so it gets a minimal one. setsid: a terminal Ctrl-C reaches only this
# script, whose trap stops the children by PID.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" PORT=$EVERYTHING_PORT \
  setsid node --require "$REPO/scripts/loopback-only.cjs" "$EVERYTHING_JS" streamableHttp \
  </dev/null >"$OUT/everything.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-1]}" $EVERYTHING_PORT 20

setsid "$ENVOY" -c envoy/demo.yaml --concurrency 1 --disable-hot-restart --file-flush-interval-msec 200 \
  </dev/null >"$OUT/envoy.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-1]}" "http://127.0.0.1:$ADMIN_PORT/ready" 60

cat <<EOF

MCP gateway demo is running (Ctrl-C to stop).
  MCP endpoint:  http://127.0.0.1:$ENVOY_PORT/mcp   (server-everything behind Envoy + mcp_gateway.wasm)
  Envoy admin:   http://127.0.0.1:$ADMIN_PORT      (metrics: curl -s 127.0.0.1:$ADMIN_PORT/stats/prometheus | grep ^mcp_)
  Logs:          $OUT/access.log (JSON, one line per request), $OUT/envoy.log, $OUT/everything.log

Try it:
  .venv/bin/python scripts/mcp_client_example.py http://127.0.0.1:$ENVOY_PORT/mcp
  curl -si http://127.0.0.1:$ENVOY_PORT/mcp -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}'

EOF

# Wake when either child exits (or a signal arrives); the EXIT trap stops the other.
wait -n "${pids[@]}" || true
echo "demo: a process exited unexpectedly; see $OUT/*.log" >&2
exit 1
