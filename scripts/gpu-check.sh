#!/usr/bin/env bash
# The GPU check: run on a machine with a GPU (one H100, CUDA 13 driver,
# compute-sanitizer; none of the Debian libraries, no network), from the
# repository root, with the bundle scripts/gpu-bundle.sh built (default
# .gpu-bundle). Each step has a time limit (seconds, in brackets; a step
# past it gets SIGTERM, then SIGKILL 5 s later), the limits add up to 430 s,
# and the whole check stops starting steps once GPU_CHECK_BUDGET_S (450 s,
# 7.5 minutes) is spent, so it fits one device call of 10 minutes with the
# machine's start-up:
#   device       [10] nvidia-smi: the GPU, its driver and memory
#   load         [15] every bundled binary starts (libraries resolve; cuBLAS
#                     found?)
#   gpu-tests    [60] the GPU tests of kernels/cuda (label gpu and the error
#                     checks)
#   memcheck    [100] the GPU tests again under compute-sanitizer --tool
#                     memcheck (the deliberate-fault test excluded: it faults
#                     on purpose)
#   parity       [40] the CPU/GPU parity tests of CudaBackend (tests/core/cuda)
#   calibrate    [25] engram-calibrate: the warmed CPU/GPU crossover sweep
#   bench-cosine [80] the GPU benchmarks, CPU figures beside them (JSON kept),
#                     with the resident-search rows
#   bench-spread [40]
#   e2e          [30] engram-server on the GPU: a BatchCosine and a Spread
#                     through engram-cli --placement=gpu whose reports say
#                     BACKEND_GPU
#   dispatch     [40] engram-server --calibrate, then AUTO requests: inline
#                     single queries stay on the CPU, many queries and a
#                     resident collection's search go to the GPU (the
#                     benchmarks' crossover); the calibration file is kept
# and ends with a summary, one line a step: PASS, FAIL, TIMEOUT or SKIP, the
# seconds it took against its limit and a note; then RESULT: PASS, FAIL (a
# step failed or timed out) or INCOMPLETE (none failed, but the budget ran out
# before a selected step could start). The full log, the summary, the
# benchmarks' JSON, the calibration table and the server's log go to $OUT
# when it is set (else build-gpu-check/).
# Exit status: 0 only for RESULT: PASS.
#
# Usage: scripts/gpu-check.sh [BUNDLE_DIR]
# Environment: GPU_CHECK_STEPS (the steps to run, space-separated, default
# all; e.g. "device load gpu-tests parity e2e" takes about a minute),
# GPU_CHECK_BUDGET_S (default 450), GPU_CHECK_MEMCHECK_FILTER (gtest filter
# for the memcheck run).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/lib/ready.sh
bundle=$(realpath -m "${1:-.gpu-bundle}")
out=$(realpath -m "${OUT:-build-gpu-check}")
mkdir -p "$out"
log=$out/gpu-check.log
summary=$out/gpu-check-summary.txt
: >"$log"
: >"$summary"
start_all=$SECONDS
budget=${GPU_CHECK_BUDGET_S:-450}
failures=0
incomplete=0

say() { echo "$*" | tee -a "$log"; }

# step NAME SECONDS FUNCTION [ARGS]: runs one of the functions below in a
# shell of its own with a time limit (cut to what is left of the budget),
# output to the log (and the terminal), and records the step's line. The
# function may write a one-line note to $note; it returns 0 (pass), 77 (skip)
# or anything else (fail).
note=$out/.note
steps=" ${GPU_CHECK_STEPS:-device load gpu-tests memcheck parity calibrate bench-cosine bench-spread e2e dispatch} "
line() {
  # line NAME VERDICT TOOK LIMIT NOTE
  printf '%-12s %-8s %4ss/%-4s %s\n' "$1" "$2" "$3" "$4s" "$5" >>"$summary"
}
step() {
  local name=$1 limit=$2
  shift 2
  if [[ $steps != *" $name "* ]]; then
    line "$name" SKIP 0 "$limit" "not in GPU_CHECK_STEPS"
    return 0
  fi
  local left=$((budget - (SECONDS - start_all)))
  if ((left < 5)); then
    incomplete=$((incomplete + 1))
    line "$name" SKIP 0 "$limit" "not started: the ${budget}s budget is spent"
    say "===== $name: not started, the ${budget}s budget is spent"
    return 0
  fi
  ((limit > left)) && limit=$left
  say ""
  say "===== $name (limit ${limit}s): $*"
  : >"$note"
  local begin=$SECONDS rc
  timeout --signal=TERM --kill-after=5 "$limit" bash -c '"$@"' step "$@" \
    2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - begin)) verdict
  case $rc in
    0) verdict=PASS ;;
    124 | 137) verdict=TIMEOUT ;;
    77) verdict=SKIP ;;
    *) verdict=FAIL ;;
  esac
  if [[ $verdict == FAIL || $verdict == TIMEOUT ]]; then
    failures=$((failures + 1))
  fi
  line "$name" "$verdict" "$took" "$limit" \
    "$(head -c 300 "$note" | tr '\n' ' ')"
  say "===== $name: $verdict in ${took}s (rc $rc)"
}

if [[ ! -d $bundle/bin ]]; then
  echo "gpu-check: no bundle at $bundle; build it with scripts/gpu-bundle.sh" >&2
  exit 2
fi
export PATH=$PATH:/usr/local/cuda/bin
libs=$bundle/lib
# cuBLAS is the GPU machine's own: the backend dlopen()s libcublas.so.13.
cublas_dir=""
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.13 '; then
  for dir in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/lib/x86_64-linux-gnu \
    $(find / -maxdepth 7 -type d -path '*nvidia/cublas/lib' 2>/dev/null); do
    if [[ -e $dir/libcublas.so.13 ]]; then
      cublas_dir=$dir
      break
    fi
  done
fi
[[ -n $cublas_dir ]] && libs=$libs:$cublas_dir
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$bundle/bin
# The GPU machine's own libstdc++ first; the bundled one only if that is too
# old for the binaries.
compat=""
if ! "$bin/kernels_cuda_check_test" --gtest_list_tests >/dev/null 2>&1; then
  compat=$bundle/lib-compat
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$compat
fi
export bin out note bundle cublas_dir compat
# The GPU tests fail, rather than skip, when they find no GPU.
export ENGRAM_REQUIRE_GPU=1
say "gpu-check: bundle $bundle ($(head -n 1 "$bundle/MANIFEST" 2>/dev/null))"
say "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

device() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max,clocks.max.memory \
    --format=csv || return 1
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader >"$note"
}

load() {
  local b missing=0
  for b in "$bin"/*; do
    if ldd "$b" | grep -q 'not found'; then
      echo "$b:"
      ldd "$b" | grep 'not found'
      missing=1
    fi
    case $(basename "$b") in
      *_test) "$b" --gtest_list_tests >/dev/null || missing=1 ;;
    esac
  done
  "$bin/engram-cli" --help >/dev/null || missing=1
  echo "cuBLAS: ${cublas_dir:-the dynamic loader cache, if any}${compat:+; bundled libstdc++}" |
    tee "$note"
  return $missing
}

gtest() {
  # gtest NAME [ARGS]: one test binary, brief output.
  local name=$1
  shift
  "$bin/$name" --gtest_brief=1 --gtest_color=no "$@"
}

gpu_tests() {
  local rc=0
  gtest kernels_cuda_check_test || rc=1
  gtest kernels_gpu_context_test || rc=1
  gtest core_cuda_backend_test || rc=1
  return $rc
}

memcheck() {
  local rc=0 filter=${GPU_CHECK_MEMCHECK_FILTER:-'-*DeathTest*'}
  local sanitizer
  sanitizer=$(command -v compute-sanitizer) || {
    echo "compute-sanitizer not found" | tee "$note"
    return 77
  }
  local b
  for b in kernels_gpu_context_test core_cuda_parity_test; do
    "$sanitizer" --tool memcheck --error-exitcode 86 --report-api-errors no \
      --print-limit 20 "$bin/$b" --gtest_brief=1 --gtest_color=no \
      --gtest_filter="$filter" || rc=1
  done
  return $rc
}

parity() {
  gtest core_cuda_parity_test
}

calibrate() {
  # The sweep the server's --calibrate runs, each size warmed up first; no
  # threshold on the speedups (from host memory the GPU may really lose).
  local table=$out/calibration.txt rc
  "$bin/engram-calibrate" --gpu_device=0 | tee "$table"
  rc=${PIPESTATUS[0]}
  grep -m1 '^crossover:' "$table" | cut -c 12- >"$note"
  ((rc == 0)) || return 1
  grep -q ' gpu=cuda' "$table" || {
    echo "the CUDA backend was not measured"
    return 1
  }
  if grep -q 'GPU calls that failed' "$table"; then return 1; fi
  return 0
}

bench() {
  # bench NAME: a benchmark binary, JSON into $out.
  local name=$1 rc
  "$bin/$name" --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
    --benchmark_out="$out/$name.json" --benchmark_out_format=json |
    tee "$out/.bench"
  rc=${PIPESTATUS[0]}
  # Without a GPU the benchmarks skip and exit 0; here that is a failure.
  if grep -q '^skipped:' "$out/.bench"; then rc=1; fi
  grep -c 'ERROR OCCURRED' "$out/.bench" | sed 's/$/ benchmarks failed/' >"$note"
  grep -q 'ERROR OCCURRED' "$out/.bench" && rc=1
  rm -f "$out/.bench"
  return $rc
}

# start_server LOG [FLAGS...]: engram-server on loopback with FLAGS, its
# log in LOG, its ready file in the caller's $work; sets the caller's pid
# and port once it serves, or says why not and returns 1.
start_server() {
  local log=$1 ready=$work/ready.json
  shift
  "$bin/engram-server" --grpc_address=127.0.0.1:0 \
    --metrics_address=127.0.0.1:0 --ready_file="$ready" --worker_threads=4 \
    "$@" >"$log" 2>&1 &
  pid=$!
  if ! wait_ready "$ready" "$pid"; then
    echo "the server did not start:"
    tail -n 20 "$log"
    kill "$pid" 2>/dev/null
    return 1
  fi
  port=$(ready_port "$ready" grpc_port)
}

e2e() {
  local work port pid rc=0
  work=$(mktemp -d)
  start_server "$out/engram-server.log" || return 1
  grep -m1 '"event":"serving"' "$out/engram-server.log"
  local server=--server=127.0.0.1:$port cosine spread
  # 50000 x 768 targets: under the default 64M-element and 256 MiB limits.
  cosine=$("$bin/engram-cli" cosine "$server" --random=16,50000,768 --seed=7 \
    --top_k=5 --placement=gpu) || rc=1
  # ${var: -N} is empty when var is shorter than N, so tail -c.
  echo "cosine: $(tail -c 200 <<<"$cosine")"
  [[ $cosine == *'"backend":"BACKEND_GPU"'* ]] || {
    echo "cosine did not run on the GPU"
    rc=1
  }
  # A ring with chords, 100000 nodes, 8 out-edges each.
  awk 'BEGIN { n = 100000; for (u = 0; u < n; u++) for (k = 1; k <= 8; k++)
         printf "%d\t%d\t%.3f\n", u, (u * 7 + k * 131) % n, 0.2 + (k % 5) / 10 }' \
    >"$work/edges.tsv"
  spread=$("$bin/engram-cli" spread "$server" --graph="$work/edges.tsv" \
    --seeds=0:1.0,500:0.8 --max_hops=6 --top_k=5 --placement=gpu) || rc=1
  echo "spread: $(tail -c 300 <<<"$spread")"
  [[ $spread == *'"backend":"BACKEND_GPU"'* ]] || {
    echo "spread did not run on the GPU"
    rc=1
  }
  "$bin/engram-cli" stats "$server" | head -c 2000
  echo
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$work"
  grep -o '"gpu":"[^"]*"' "$out/engram-server.log" | head -n 1 >"$note"
  return $rc
}

# make_npy FILE ROWS COLS: a .npy of float32 ROWS x COLS, every value the
# float whose four bytes are 0x3f (0.747), with no tool but the shell.
make_npy() {
  local file=$1 rows=$2 cols=$3 header len pad
  header="{'descr': '<f4', 'fortran_order': False, 'shape': ($rows, $cols), }"
  # Magic, version and length (10 bytes), the header and its newline: a
  # multiple of 64.
  pad=$(((64 - (10 + ${#header} + 1) % 64) % 64))
  header+=$(printf '%*s' "$pad" '')
  len=$((${#header} + 1))
  {
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
    printf '%s\n' "$header"
    head -c $((rows * cols * 4)) /dev/zero | tr '\0' '\077'
  } >"$file"
}

dispatch() {
  # AUTO as a user gets it on this device, after the server's own
  # calibration: how many of five requests of each kind ran on the GPU.
  local work port pid rc=0 server inline_one=0 inline_many=0 resident=0 i
  work=$(mktemp -d)
  start_server "$out/engram-server-dispatch.log" --calibrate \
    --data_dir="$work/data" || return 1
  server=--server=127.0.0.1:$port
  cp "$work"/data/calibration.* "$out/" 2>/dev/null
  make_npy "$work/rows.npy" 20000 256
  "$bin/engram-cli" collection upload "$server" --name=dispatch \
    --file="$work/rows.npy" || rc=1
  on_gpu() { "$@" | grep -c '"backend":"BACKEND_GPU"'; }
  for i in 1 2 3 4 5; do
    inline_one=$((inline_one + $(on_gpu "$bin/engram-cli" cosine "$server" \
      --random=1,20000,256 --seed=$i --top_k=5)))
    inline_many=$((inline_many + $(on_gpu "$bin/engram-cli" cosine "$server" \
      --random=256,20000,256 --seed=$i --top_k=5)))
    resident=$((resident + $(on_gpu "$bin/engram-cli" collection search \
      "$server" --name=dispatch --random=16,256 --seed=$i --top_k=5)))
  done
  echo "on the GPU: inline Q=1 $inline_one/5, inline Q=256 $inline_many/5," \
    "resident Q=16 $resident/5" | tee "$note"
  "$bin/engram-cli" stats "$server" | grep -o '"cost_models":\[[^]]*\]' |
    head -c 3000
  echo
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$work"
  ((inline_one <= 1 && inline_many >= 4 && resident >= 4)) || rc=1
  return $rc
}

export -f device load gtest gpu_tests memcheck parity calibrate bench \
  start_server e2e make_npy dispatch wait_ready ready_port

# The limits add up to 430 s; the header says why each is what it is.
step device 10 device
step load 15 load
step gpu-tests 60 gpu_tests
step memcheck 100 memcheck
step parity 40 parity
step calibrate 25 calibrate
step bench-cosine 80 bench gpu_cosine_benchmark
step bench-spread 40 bench gpu_spread_benchmark
step e2e 30 e2e
step dispatch 40 dispatch
rm -f "$note"

{
  echo ""
  echo "GPU check summary ($((SECONDS - start_all))s, $(date -u +%FT%TZ))"
  cat "$summary"
  if ((failures > 0)); then
    echo "RESULT: FAIL ($failures step(s) failed or timed out)"
  elif ((incomplete > 0)); then
    echo "RESULT: INCOMPLETE ($incomplete step(s) not started: budget spent)"
  else
    echo "RESULT: PASS"
  fi
} | tee -a "$log" >"$summary.tmp"
mv "$summary.tmp" "$summary"
cat "$summary"
((failures == 0 && incomplete == 0))
