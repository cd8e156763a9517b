#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine, on a development
# machine (Debian 12 with CUDA 13; no GPU needed), into .gpu-bundle/
# (git-ignored):
#   bin/         the GPU tests, the CPU/GPU parity test, the GPU benchmarks,
#                engram-calibrate, engram-server and engram-cli, and
#                make_bench_data for scripts/bench-resident.sh
#                (BIN_DIR=.gpu-bundle/bin; not cosine_benchmark, whose
#                OpenBLAS alone is 35 MiB) and the echo floor
#                (bench/echo_server, docs/performance.md): a Release build
#                for sm_90 in its own build directory, stripped
#   lib/         every shared library they load (found with ldd), except the C
#                library's own (the GPU machine has a newer one) and the NVIDIA
#                driver's (the GPU machine's must be used)
#   lib-compat/  libstdc++ and libgcc_s, used only when the GPU machine's are
#                older than the build's
#   MANIFEST     what was built, from which commit, and the sizes
# The bundle must stay small enough to travel with the working tree (64 MiB
# in all, docs/gpu.md): the script fails when the bundle alone exceeds
# GPU_BUNDLE_LIMIT_MIB (default 64) or bundle and tree together exceed 64 MiB.
# cuBLAS is not bundled (it is ~600 MB): the backend loads it at run time and
# scripts/gpu-check.sh finds the GPU machine's.
#
# Usage: scripts/gpu-bundle.sh
# Environment: GPU_BUNDLE_BUILD_DIR (default build-gpu-bundle), JOBS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${GPU_BUNDLE_BUILD_DIR:-build-gpu-bundle}
bundle=.gpu-bundle
limit_mib=${GPU_BUNDLE_LIMIT_MIB:-64}
travel_limit_mib=64
jobs=${JOBS:-2}

# Test binaries, benchmarks and programs, as "target:path in the build".
targets=(
  kernels_cuda_check_test:tests/kernels/cuda/kernels_cuda_check_test
  kernels_gpu_context_test:tests/kernels/cuda/kernels_gpu_context_test
  core_cuda_backend_test:tests/core/cuda/core_cuda_backend_test
  core_cuda_parity_test:tests/core/cuda/core_cuda_parity_test
  gpu_cosine_benchmark:bench/gpu_cosine_benchmark
  gpu_spread_benchmark:bench/gpu_spread_benchmark
  engram-calibrate:core/dispatch/engram-calibrate
  engram-server:server/engram-server
  engram-cli:client/engram-cli
  make_bench_data:bench/make_bench_data
  echo_server:bench/echo_server
)

fail() {
  echo "gpu-bundle: $*" >&2
  exit 1
}

echo "== configure $build_dir (Release, CUDA sm_90)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DENGRAM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
  -DENGRAM_BUILD_TESTS=ON -DENGRAM_BUILD_BENCHMARKS=ON >/dev/null
echo "== build (-j$jobs)"
cmake --build "$build_dir" -j "$jobs" --target "${targets[@]%%:*}"

echo "== gather into $bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/lib-compat"
binaries=()
for entry in "${targets[@]}"; do
  path=$build_dir/${entry#*:}
  [[ -x $path ]] || fail "missing $path"
  cp "$path" "$bundle/bin/"
  strip --strip-unneeded "$bundle/bin/$(basename "$path")"
  binaries+=("$bundle/bin/$(basename "$path")")
done

# The C library's own objects come from the GPU machine; so do the NVIDIA
# driver's (libcuda is loaded by the static CUDA runtime at run time and is
# not in ldd's list anyway).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libcuda\.so|libnvidia-)'
declare -A libraries=()
for binary in "${binaries[@]}"; do
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    [[ $name =~ $skip ]] && continue
    [[ $path == not ]] && fail "$binary needs $name, which is not found"
    libraries[$name]=$path
  done < <(ldd "$binary")
done
for name in "${!libraries[@]}"; do
  case $name in
    libstdc++.so.* | libgcc_s.so.*) dir=lib-compat ;;
    *) dir=lib ;;
  esac
  cp -L "${libraries[$name]}" "$bundle/$dir/$name"
  chmod u+w "$bundle/$dir/$name"
  strip --strip-unneeded "$bundle/$dir/$name" 2>/dev/null || true
done

bundle_bytes=$(du -sb "$bundle" | cut -f1)
# What travels beside it: tracked and untracked files git does not ignore.
# (A file deleted but still in the index has no size: not counted.)
tree_bytes=$( (git ls-files -z --cached --others --exclude-standard |
  xargs -0 -r stat -c %s 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    "($(git status --porcelain 2>/dev/null | wc -l) changed files)"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)," \
    "Release, CMAKE_CUDA_ARCHITECTURES=90-real"
  echo "nvcc: $(/usr/local/cuda/bin/nvcc --version | tail -n 1)"
  echo "binaries: ${targets[*]%%:*}"
  echo "libraries: ${#libraries[@]}"
  echo "bundle: $((bundle_bytes / 1024)) KiB; working tree: $((tree_bytes / 1024)) KiB"
} >"$bundle/MANIFEST"
cat "$bundle/MANIFEST"
du -sh "$bundle"/bin "$bundle"/lib "$bundle"/lib-compat

if ((bundle_bytes > limit_mib * 1024 * 1024)); then
  fail "the bundle is $((bundle_bytes >> 20)) MiB, over $limit_mib MiB"
fi
if ((bundle_bytes + tree_bytes > travel_limit_mib * 1024 * 1024)); then
  fail "bundle and working tree are $(((bundle_bytes + tree_bytes) >> 20))" \
    "MiB together, over the $travel_limit_mib MiB that can travel"
fi
echo "gpu-bundle: ok ($((bundle_bytes >> 20)) MiB); run scripts/gpu-check.sh" \
  "on the GPU machine (docs/gpu.md)"
