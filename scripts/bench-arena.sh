#!/usr/bin/env bash
# What the per-call protobuf arena (--request_arena) buys on the request
# path: the same engram-server binary with the arena on and off, loaded in
# turns (on, off, on, off, ...) by `engram-cli bench` with the same request,
# so both see the same machine. Prints requests/s and p50 per run and the
# on/off ratio of the medians.
#
# Usage: scripts/bench-arena.sh [REPS] [DURATION]   (default 3, 5s)
# Environment: BUILD_DIR (build); SHAPE (256,64,16: many small top-k lists,
# the arena's best case) and TOP_K (10); CONCURRENCY (8).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
reps=${1:-3}
duration=${2:-5s}
shape=${SHAPE:-256,64,16}
top_k=${TOP_K:-10}
concurrency=${CONCURRENCY:-8}
server=$build_dir/server/engram-server
cli=$build_dir/client/engram-cli
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() {  # $1: true|false; prints "requests/s p50_ms"
  "$server" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --ready_file="$work/ready" --log_level=warning --request_arena="$1" &
  local pid=$!
  for _ in $(seq 100); do [[ -s $work/ready ]] && break; sleep 0.1; done
  local port
  port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$work/ready")
  "$cli" bench --server="127.0.0.1:$port" --random="$shape" --top_k="$top_k" \
    --concurrency="$concurrency" --duration="$duration" --format=json \
    > "$work/out.json"
  kill -TERM "$pid"; wait "$pid" || true; rm -f "$work/ready"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests_per_second"], r["latency_ms"]["p50"])' "$work/out.json"
}

echo "shape $shape top_k $top_k concurrency $concurrency, $reps x $duration each, $(nproc) cores"
on=(); off=()
for i in $(seq "$reps"); do
  read -r a ap <<< "$(run true)";  on+=("$a");  echo "arena on   $a req/s  p50 $ap ms"
  read -r b bp <<< "$(run false)"; off+=("$b"); echo "arena off  $b req/s  p50 $bp ms"
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
m_on, m_off = statistics.median(on), statistics.median(off)
print(f"median req/s: arena on {m_on:.0f}, off {m_off:.0f}, on/off {m_on / m_off:.3f}")
PY
