#!/usr/bin/env bash
# Where a variant's proxy CPU goes, by binary: Envoy's own code (HTTP, the V8 runtime and the
# wasm host calls are all in the envoy binary), the kernel (loopback TCP), and the filter's wasm
# code as V8 compiled it (perf's "[JIT]"), in µs per request.
#
#   bench/profile.sh C-telemetry tools_call [seconds]
#
# Uses what the last `make bench` left in target/bench (configs, canned replies, wrk scripts with
# their tokens) and the current build of the filter. Same pinning as the bench: proxy on core 0,
# upstream and wrk on core 1. Needs perf (linux-perf). The pip Envoy binary is stripped, so
# Envoy's share cannot be split further by symbol.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?variant key, e.g. C-telemetry}
workload=${2:?workload, e.g. tools_call}
seconds=${3:-6}
out=target/bench/profile
mkdir -p "$out"
cfg=target/bench/configs/proxy-$variant.json
script=target/bench/wrk/$variant-$workload.lua
envoy_bin=$(.venv/bin/python -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")')
[[ -f $cfg && -f $script ]] || { echo "no $cfg or $script: run make bench first" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }

field() { python3 -c "import json,sys; c=json.load(open('$out/proxy.json')); print(eval(sys.argv[1]))" "$1"; }
sed "s#\"filename\": \"[^\"]*mcp_gateway.wasm\"#\"filename\": \"$PWD/target/wasm32-wasip1/release/mcp_gateway.wasm\"#" "$cfg" > "$out/proxy.json"
listen=$(field "c['static_resources']['listeners'][0]['address']['socket_address']['port_value']")
admin=$(field "c['admin']['address']['socket_address']['port_value']")
upstream=$(field "c['static_resources']['clusters'][0]['load_assignment']['endpoints'][0]['lb_endpoints'][0]['endpoint']['address']['socket_address']['port_value']")

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
replies=()
for w in tools_call:'"name":"get_weather"' tools_call_sse:'"name":"fetch_report"' \
         tools_list:'"method":"tools/list"' initialize:'"method":"initialize"'; do
    replies+=("${w#*:}=target/bench/replies/${w%%:*}.http")
done
taskset -c 1 target/bench/upstream-build/release/bench-upstream "127.0.0.1:$upstream" "${replies[@]}" \
    > "$out/upstream.log" 2>&1 &
pids+=($!)
taskset -c 0 "$envoy_bin" -c "$out/proxy.json" --concurrency 1 --disable-hot-restart -l warn \
    > "$out/envoy.log" 2>&1 &
envoy_pid=$!
pids+=("$envoy_pid")
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.5; done
taskset -c 1 wrk -t1 -c32 -d2s -s "$script" "http://127.0.0.1:$listen/mcp" >/dev/null
perf record -q -F 2000 -p "$envoy_pid" -o "$out/perf.data" -- sleep "$seconds" >/dev/null 2>&1 &
perf_pid=$!
rps=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" -s "$script" "http://127.0.0.1:$listen/mcp" \
      | awk '/Requests\/sec/ {print $2}')
wait "$perf_pid" || true
echo "$variant $workload: $rps req/s at 32 connections; proxy CPU by binary:"
perf report -i "$out/perf.data" --no-children --sort dso -g none --stdio -n 2>/dev/null \
    | awk -v rps="$rps" -v s="$seconds" '/^ +[0-9.]+%/ {
        name = $3; for (i = 4; i <= NF; i++) name = name " " $i
        printf "  %-24s %6.1f µs/req  (%s)\n", name, $2 / 2000 / (rps * s) * 1e6, $1 }'
