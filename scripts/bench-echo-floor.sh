#!/usr/bin/env bash
# The request path against the transport floor: engram-server's BatchCosine
# and bench/echo_server (the same request decoded and a response of the same
# size sent back, no arithmetic) loaded in turns (echo, engram, echo, ...)
# by `engram-cli bench`, so that both see the same machine. One JSON line a
# run is appended to OUT: the client's report with "server" (echo or engram)
# and "shape" ("Q,N,d=...", in place of the report's own) added, the lines
# scripts/bench.sh summarises.
# Bash and coreutils only, so that it also runs from the GPU bundle on a
# machine without our toolchain (docs/gpu.md).
#
# Usage: scripts/bench-echo-floor.sh OUT
# Environment: BIN_DIR (a folder holding engram-server, engram-cli and
# echo_server, e.g. .gpu-bundle/bin; default: BUILD_DIR's (build-bench)
# server/, client/ and bench/), SHAPES ("1,64,768 1,1024,768"),
# CONCURRENCIES ("1 8 32"), REPS (3), DURATION (5s).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ready.sh
out=${1:?usage: scripts/bench-echo-floor.sh OUT}
if [[ -n ${BIN_DIR:-} ]]; then
  server=$BIN_DIR/engram-server cli=$BIN_DIR/engram-cli
  echo_server=$BIN_DIR/echo_server
else
  build_dir=${BUILD_DIR:-build-bench}
  server=$build_dir/server/engram-server cli=$build_dir/client/engram-cli
  echo_server=$build_dir/bench/echo_server
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$work"' EXIT

# Whether something listens at HOST:PORT (bash's /dev/tcp: no python).
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
# The echo has no ready file: a loopback port nothing listens on yet.
echo_address=
while [[ -z $echo_address ]] || listening "$echo_address"; do
  echo_address=127.0.0.1:$((20000 + RANDOM % 40000))
done
"$echo_server" --address="$echo_address" 2>/dev/null &
"$server" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --ready_file="$work/ready" --log_level=warning &
server_pid=$!
started=0
if wait_ready "$work/ready" "$server_pid"; then
  for _ in $(seq 50); do
    listening "$echo_address" && { started=1; break; }
    sleep 0.1
  done
fi
if ((!started)); then
  echo "bench-echo-floor: a server did not start" >&2
  exit 1
fi
port=$(ready_port "$work/ready" grpc_port)

for shape in ${SHAPES:-1,64,768 1,1024,768}; do
  for concurrency in ${CONCURRENCIES:-1 8 32}; do
    for _ in $(seq "${REPS:-3}"); do
      for which in echo engram; do
        if [[ $which == echo ]]; then
          target=(--server="$echo_address"
            --method=/engram.bench.v1.Echo/BatchCosine)
        else
          target=(--server="127.0.0.1:$port")
        fi
        report=$("$cli" bench "${target[@]}" --random="$shape" \
          --concurrency="$concurrency" --duration="${DURATION:-5s}" \
          --warmup=1s --format=json | tr -d '\n')
        echo "${report%\}},\"server\":\"$which\",\"shape\":\"Q,N,d=$shape\"}"
      done
    done
  done
done >>"$out"
