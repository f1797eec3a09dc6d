#!/usr/bin/env bash
# The demo behind `make demo`: two MCP servers, npm server-everything on 127.0.0.1:3001 and the
# project's Python SDK server (integration/servers/py_server.py) on 127.0.0.1:3002, federated by
# Envoy with the MCP gateway filter (envoy/demo.yaml) on 127.0.0.1:10000, admin on 127.0.0.1:9901.
# A fresh federation session key is generated at every start (envoy/demo.yaml holds only a
# placeholder) into target/demo/envoy.yaml. Runs until Ctrl-C or SIGTERM, then stops what it
# started. Expects `make build deps` to have run (make demo does that).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=target/demo
EVERYTHING_JS=integration/node_modules/@modelcontextprotocol/server-everything/dist/index.js
WASM=target/wasm32-wasip1/release/mcp_gateway.wasm
ENVOY=.venv/bin/envoy
PYTHON=.venv/bin/python
EVERYTHING_PORT=3001 PY_PORT=3002 ENVOY_PORT=10000 ADMIN_PORT=9901   # fixed by envoy/demo.yaml

for f in "$EVERYTHING_JS" "$WASM" "$ENVOY" "$PYTHON"; do
  [[ -e $f ]] || { echo "demo: $f is missing; run 'make build deps' (or 'make demo')" >&2; exit 1; }
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $EVERYTHING_PORT $PY_PORT $ENVOY_PORT $ADMIN_PORT; do
  if port_busy "$p"; then echo "demo: 127.0.0.1:$p is already in use; stop whatever holds it" >&2; exit 1; fi
done

mkdir -p "$OUT"
: > "$OUT/access.log"
# The bootstrap with a fresh session key (base64 of 32 random bytes), readable only by us. Sessions
# of an earlier run are not valid in this one: clients initialize again.
# Also a fresh signing key standing in for an identity provider: it mints one token per role of
# policies/demo.rego into $OUT/tokens/ and is then forgotten (scripts/demo_setup.py).
"$PYTHON" scripts/demo_setup.py "$OUT"
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

url_ok() { "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; }
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

env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  setsid "$PYTHON" integration/servers/py_server.py --port $PY_PORT \
  </dev/null >"$OUT/py.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-2]}" $EVERYTHING_PORT 20
wait_ready "${pids[-1]}" $PY_PORT 20

setsid "$ENVOY" -c "$OUT/envoy.yaml" --concurrency 1 --disable-hot-restart --file-flush-interval-msec 200 \
  </dev/null >"$OUT/envoy.log" 2>&1 &
pids+=($!)
wait_ready "${pids[-1]}" "http://127.0.0.1:$ADMIN_PORT/ready" 60

cat <<EOF

MCP gateway demo is running (Ctrl-C to stop).
  MCP endpoint:  http://127.0.0.1:$ENVOY_PORT/mcp   (one MCP server in front of two, through Envoy + mcp_gateway.wasm)
                 server-everything (127.0.0.1:$EVERYTHING_PORT): tools everything__*
                 Python SDK server (127.0.0.1:$PY_PORT): tools py__*
  Envoy admin:   http://127.0.0.1:$ADMIN_PORT      (metrics: curl -s 127.0.0.1:$ADMIN_PORT/stats/prometheus | grep ^mcp_)
  Logs:          $OUT/access.log (JSON, one line per request), $OUT/envoy.log, $OUT/everything.log, $OUT/py.log

Authentication and policy are on (policies/demo.rego): every request needs a bearer token.
  Tokens (valid 24 h, minted now with a key made at start): $OUT/tokens/admin.jwt (every tool),
  $OUT/tokens/reader.jwt (read-only tools only). The metadata clients discover:
  curl -s http://127.0.0.1:$ENVOY_PORT/.well-known/oauth-protected-resource/mcp

Try it:
  $PYTHON scripts/mcp_client_example.py http://127.0.0.1:$ENVOY_PORT/mcp --token-file $OUT/tokens/admin.jwt
  $PYTHON scripts/mcp_client_example.py http://127.0.0.1:$ENVOY_PORT/mcp --token-file $OUT/tokens/reader.jwt

  # or by hand: initialize (the gateway's Mcp-Session-Id comes back in a header), then call a tool
  H=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer \$(cat $OUT/tokens/admin.jwt)")
  SID=\$(curl -si http://127.0.0.1:$ENVOY_PORT/mcp "\${H[@]}" \\
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}' \\
    | tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
  H+=(-H "Mcp-Session-Id: \$SID" -H 'MCP-Protocol-Version: 2025-11-25')
  curl -s http://127.0.0.1:$ENVOY_PORT/mcp "\${H[@]}" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  curl -s http://127.0.0.1:$ENVOY_PORT/mcp "\${H[@]}" -d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
  curl -s http://127.0.0.1:$ENVOY_PORT/mcp "\${H[@]}" \\
    -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"py__add","arguments":{"a":2,"b":40}}}'

EOF

# Wake when any child exits (or a signal arrives); the EXIT trap stops the others.
wait -n "${pids[@]}" || true
echo "demo: a process exited unexpectedly; see $OUT/*.log" >&2
exit 1
