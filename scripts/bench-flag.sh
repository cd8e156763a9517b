#!/usr/bin/env bash
# What one engram-server flag buys on the request path: the same binary
# with the flag at two values, loaded in turns (A, B, A, B, ...) by
# `engram-cli bench` with the same request, so both see the same machine.
# Prints requests/s and p50 per run and the A/B ratio of the medians.
# By default the flag is the per-call protobuf arena (--request_arena, A
# true, B false) on many small top-k lists, the arena's best case.
#
# Usage: scripts/bench-flag.sh [REPS] [DURATION]   (default 3, 5s)
# Environment: BUILD_DIR (build); FLAG (request_arena), A (true), B (false);
# SHAPE (256,64,16) and TOP_K (10; 0: all scores); CONCURRENCY (8).
# For example, glibc keeping freed memory against its defaults on 3 MiB
# requests:
#   FLAG=malloc_trim_threshold A=67108864 B=0 SHAPE=1,1024,768 TOP_K=0 \
#     CONCURRENCY=1 scripts/bench-flag.sh 3 4s
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ready.sh
build_dir=${BUILD_DIR:-build}
reps=${1:-3}
duration=${2:-5s}
flag=${FLAG:-request_arena}
value_a=${A:-true}
value_b=${B:-false}
shape=${SHAPE:-256,64,16}
top_k=${TOP_K:-10}
concurrency=${CONCURRENCY:-8}
server=$build_dir/server/engram-server
cli=$build_dir/client/engram-cli
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() {  # $1: the flag's value; prints "requests/s p50_ms"
  "$server" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --ready_file="$work/ready" --log_level=warning "--$flag=$1" &
  local pid=$!
  wait_ready "$work/ready" "$pid" || { echo "server did not start" >&2; exit 1; }
  local port
  port=$(ready_port "$work/ready" grpc_port)
  "$cli" bench --server="127.0.0.1:$port" --random="$shape" --top_k="$top_k" \
    --concurrency="$concurrency" --duration="$duration" --format=json \
    > "$work/out.json"
  kill -TERM "$pid"; wait "$pid" || true; rm -f "$work/ready"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests_per_second"], r["latency_ms"]["p50"])' "$work/out.json"
}

echo "--$flag=$value_a (A) against --$flag=$value_b (B); shape $shape top_k $top_k concurrency $concurrency, $reps x $duration each, $(nproc) cores"
runs_a=(); runs_b=()
for i in $(seq "$reps"); do
  read -r a ap <<< "$(run "$value_a")"; runs_a+=("$a"); echo "A  $a req/s  p50 $ap ms"
  read -r b bp <<< "$(run "$value_b")"; runs_b+=("$b"); echo "B  $b req/s  p50 $bp ms"
done
python3 - "${runs_a[*]}" "${runs_b[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
m_a, m_b = statistics.median(a), statistics.median(b)
print(f"median req/s: A {m_a:.0f}, B {m_b:.0f}, A/B {m_a / m_b:.3f}")
PY
