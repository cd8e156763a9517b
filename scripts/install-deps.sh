#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, only those
# missing (so a second run costs nothing). Must run as root on Debian 12.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates python3
  python3-venv openssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  grpc-proto libabsl-dev prometheus-cpp-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libhwy-dev libopenblas-dev libssl-dev nlohmann-json3-dev
  clang-format curl
  prometheus
  etcd-server golang-etcd-server-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
