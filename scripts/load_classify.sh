#!/usr/bin/env bash
# Bounded loopback load test of POST /classify: one request at a time on an
# idle server (wrk, one connection kept alive, 10 s: the server's latency
# without a process start per request), 100 sequential curl requests (each a
# new process and connection, as a shell user sees it), then wrk with 32
# connections for 15 s. Loopback only. First
# `tuneserve bench --text` times the same text without the server (one bare
# forward pass, and a batch of 32), the yardsticks the server is compared to.
#
#   scripts/load_classify.sh MODEL_DIR [PORT]
#
# PRECISION=int8|bf16 serves in that arithmetic (`serve --infer-precision`;
# fp32 by default); the `bench` yardstick is fp32's, so it runs only then.
# Needs a release build and wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/load_classify.sh MODEL_DIR [PORT]}
PORT=${2:-8090}
DATA=$(mktemp -d)
trap 'kill $SP 2>/dev/null; rm -rf "$DATA" "$LUA"' EXIT
LUA=$(mktemp --suffix .lua)
cat > "$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs": "what a great game tonight, loving every minute of it"}'
LUA
TEXT="what a great game tonight, loving every minute of it"
PRECISION=${PRECISION:-fp32}
if [ "$PRECISION" = fp32 ]; then
    target/release/tuneserve bench --model "$MODEL" --text "$TEXT" --iters 10 | grep 'text of'
fi
target/release/tuneserve serve --port "$PORT" --data-dir "$DATA" --model "$MODEL" \
    --infer-precision "$PRECISION" > "$DATA/serve.log" 2>&1 &
SP=$!
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
echo "idle, one connection kept alive (wrk -t1 -c1):"
wrk -t1 -c1 -d10s --latency -s "$LUA" "http://127.0.0.1:$PORT/classify" | grep -E '^ +(50|99)%'
for _ in $(seq 1 100); do
  curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$PORT/classify" -H 'content-type: application/json' \
    -d '{"inputs": "what a great game tonight, loving every minute of it"}'
done | sort -n | awk '{a[NR]=$1} END {printf "idle, sequential curl: p50 %.1f ms, p99 %.1f ms\n", a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000}'
wrk -t2 -c32 -d15s --latency -s "$LUA" "http://127.0.0.1:$PORT/classify"
