#!/usr/bin/env bash
# Shared mode's replication lag (bench/replication_benchmark.cc): starts a
# one-member etcd on a free loopback port in a temporary folder, runs the
# benchmark against it, and stops etcd. Arguments go to the benchmark
# (e.g. --benchmark_filter=BM_SmallAppendLag); ENGRAM_BENCH_ROWS sets the
# large collection's rows (2^19 rows x 768 is 1.5 GiB) and ENGRAM_BENCH_DIR
# the folder holding the data directory.
#
# Usage: [ENGRAM_BENCH_ROWS=N] scripts/bench-replication.sh [benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
bench=$build_dir/bench/replication_benchmark
etcd=$(command -v etcd || true)
[[ -x $bench ]] || { echo "bench-replication: build $bench first" >&2; exit 1; }
[[ -n $etcd ]] || { echo "bench-replication: install etcd-server" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
work=$(mktemp -d)
client=$(free_port)
peer=$(free_port)
"$etcd" --name=bench --data-dir="$work/etcd" \
  --listen-client-urls="http://127.0.0.1:$client" \
  --advertise-client-urls="http://127.0.0.1:$client" \
  --listen-peer-urls="http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls="http://127.0.0.1:$peer" \
  --initial-cluster="bench=http://127.0.0.1:$peer" \
  --log-level=warn >"$work/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  if curl -sf "http://127.0.0.1:$client/health" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
echo "== etcd $("$etcd" --version | head -1) on 127.0.0.1:$client"
ENGRAM_BENCH_ETCD=127.0.0.1:$client "$bench" "$@"
