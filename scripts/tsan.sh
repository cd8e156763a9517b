#!/usr/bin/env bash
# ThreadSanitizer job: builds Debian's own Abseil 20220623 source with
# -fsanitize=thread (the packaged library is not instrumented, so TSan cannot
# see absl::Mutex and reports every guarded access), then builds the kernels
# and core (no gRPC: gRPC links the uninstrumented Abseil) with TSan and runs
# their tests, the concurrency stress test included. Any report fails the job.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${TSAN_WORK_DIR:-$root/build-tsan-deps}
prefix=$work/absl-tsan
build_dir=${TSAN_BUILD_DIR:-$root/build-tsan}

if [[ ! -f $prefix/lib/cmake/absl/abslConfig.cmake ]]; then
  echo "== tsan: building Abseil from Debian's source with -fsanitize=thread"
  mkdir -p "$work/lists/partial"
  cat > "$work/sources.list" <<LIST
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
LIST
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list"
            -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$work/lists")
  apt-get "${apt_opts[@]}" update -qq
  rm -rf "$work/src" "$work"/abseil_*
  (cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq abseil)
  dpkg-source -x "$(ls "$work"/abseil_*.dsc | head -n1)" "$work/src" > /dev/null
  cmake -S "$work/src" -B "$work/absl-build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_STANDARD=17 \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DABSL_PROPAGATE_CXX_STD=ON \
    -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$prefix" > /dev/null
  cmake --build "$work/absl-build" -j "${JOBS:-2}" > /dev/null
  cmake --install "$work/absl-build" > /dev/null
fi

echo "== tsan: building kernels and core with -fsanitize=thread"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DENGRAM_SANITIZE=thread -DENGRAM_BUILD_SERVICE=OFF -DENGRAM_CUDA=OFF \
  -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$build_dir" -j "${JOBS:-2}"

echo "== tsan: running the tests"
export TSAN_OPTIONS="halt_on_error=1 abort_on_error=0 exitcode=66 suppressions=$root/tests/tsan.supp"
ctest --test-dir "$build_dir" --output-on-failure -j 2 --timeout 600 \
  -LE gpu
