#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the server in
# the foreground with defaults (gRPC 0.0.0.0:50051, metrics :9464), keeping
# what clients write in ${ENGRAM_DATA_DIR:-data/} so that it survives a
# restart. Extra arguments are passed to engram-server (see engram-server
# --help); a --data_dir given there wins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

scripts/build.sh -DENGRAM_BUILD_TESTS=OFF -DENGRAM_BUILD_BENCHMARKS=OFF
exec "${BUILD_DIR:-build}/server/engram-server" \
  --data_dir="${ENGRAM_DATA_DIR:-$PWD/data}" "$@"
