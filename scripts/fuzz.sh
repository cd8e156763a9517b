#!/usr/bin/env bash
# Time-boxed fuzzing: builds the fuzz targets (tests/fuzz) with clang,
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, and runs each
# for FUZZ_SECONDS (default 45) starting from its committed corpus. A crash
# fails the job; the crashing input is left in $build_dir/crashes to be added
# to tests/fuzz/corpus/<target>/ as a regression input.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-45}
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}

if ! command -v clang++ > /dev/null ||
   ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "ok installed"; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi

CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGRAM_CUDA=OFF \
  -DENGRAM_SANITIZE=address -DENGRAM_FUZZ=ON -DENGRAM_BUILD_BENCHMARKS=OFF \
  > /dev/null
targets=(batch_cosine spread graph_validator upload_collection put_graph
         search_collection)
cmake --build "$build_dir" -j "${JOBS:-2}" \
  --target "${targets[@]/%/_fuzzer}"

mkdir -p "$build_dir/crashes"
status=0
for t in "${targets[@]}"; do
  echo "== fuzz: $t for ${seconds}s"
  work=$build_dir/corpus-$t
  mkdir -p "$work"
  # New inputs go to a scratch corpus; the committed one is only read.
  if ! "$build_dir/tests/fuzz/${t}_fuzzer" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build_dir/crashes/$t-" -print_final_stats=1 \
      2> "$build_dir/fuzz-$t.log"; then
    echo "fuzz: $t FAILED; see $build_dir/fuzz-$t.log and $build_dir/crashes/"
    tail -40 "$build_dir/fuzz-$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build_dir/fuzz-$t.log" | tail -2
  fi
done
exit $status
