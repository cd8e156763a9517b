#!/usr/bin/env bash
# The performance run of the CPU kernels and the request path, all in one go on this machine: the kernel
# benchmarks (bench/cosine_benchmark, bench/spread_benchmark), their peers on
# the same data (numpy, FAISS, scipy: bench/peers.py), and the request path
# (engram-server against bench/echo_server, loaded by `engram-cli bench`).
# Writes the raw results under $OUT_DIR and the tables into
# docs/performance.md between the generated-section markers
# (bench/report.py).
#
# Usage: scripts/bench.sh [--quick] [--no-docs] [--no-service]
#   --quick       the documented subset for slow machines: N up to 16Ki,
#                 3 repetitions, shorter service runs
#   --no-docs     leave docs/performance.md alone (print the section)
#   --no-service  skip the request-path runs
# Environment: BUILD_DIR (build-bench), DATA_DIR (/tmp/engram-bench),
# OUT_DIR ($BUILD_DIR/bench-results), JOBS (2).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
docs=1
service=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-docs) docs=0 ;;
    --no-service) service=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

build_dir=${BUILD_DIR:-build-bench}
data_dir=${DATA_DIR:-/tmp/engram-bench}
out_dir=${OUT_DIR:-$build_dir/bench-results}
python=/usr/bin/python3  # Debian's, where python3-numpy & co. live
mkdir -p "$data_dir" "$out_dir"

if [[ $quick == 1 ]]; then
  reps=3; targets="1024,16384"; target_filter="(1024|16384)"
  svc_reps=2; svc_duration=2s; max_targets=16384
else
  reps=5; targets="1024,16384,262144"; target_filter="[0-9]+"
  svc_reps=3; svc_duration=5s; max_targets=262144
fi

echo "== dependencies"
scripts/install-deps.sh
missing=()
for p in python3-numpy python3-scipy python3-faiss; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DENGRAM_CUDA=OFF -DENGRAM_BUILD_TESTS=OFF -DENGRAM_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build_dir" -j "${JOBS:-2}" --target cosine_benchmark \
  spread_benchmark make_bench_data echo_server engram_server_bin engram_cli

# OpenBLAS 0.3.21 does not know every recent CPU and then runs its generic
# (SSE3) kernels; the peers get the right ones by name, from CPUID flags.
numpy_core() {
  "$python" - <<'PY'
import ctypes, numpy
for line in open("/proc/self/maps"):
    if "blas" in line and ".so" in line:
        try:
            lib = ctypes.CDLL(line.split()[-1])
            lib.openblas_get_corename.restype = ctypes.c_char_p
            print(lib.openblas_get_corename().decode()); break
        except (OSError, AttributeError):
            pass
PY
}
core=$(numpy_core)
case "$core" in
  Prescott|Core2|Penryn|Dunnington|Nehalem|Atom|Katmai|Coppermine|Northwood|Banias|Yonah|"")
    if grep -qw avx512f /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=Haswell
    fi
    echo "OpenBLAS chose '$core'; peers run with OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
    core=$(numpy_core) ;;
esac

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== data ($data_dir)"
"$build_dir/bench/make_bench_data" --out_dir="$data_dir" --dims=384,768 \
  --max_targets="$max_targets" --scales=16,20

echo "== cosine kernels"
cosine_filter="BM_ReadBandwidth|BM_FmaPeak|BM_CosineRoofline|BM_KernelCrossover|BM_Cosine/Q:[0-9]+/N:${target_filter}/|BM_OpenBlasCosine/Q:[0-9]+/N:${target_filter}/"
cosine_cmd="$build_dir/bench/cosine_benchmark --benchmark_filter='$cosine_filter' --benchmark_repetitions=$reps --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 --benchmark_format=json"
eval "$cosine_cmd" >"$out_dir/cosine.json"

echo "== spreading kernels"
spread_cmd="$build_dir/bench/spread_benchmark --benchmark_repetitions=$reps --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 --benchmark_format=json"
eval "$spread_cmd" >"$out_dir/spread.json"

echo "== peers (numpy, FAISS, scipy)"
peers_cmd="$python bench/peers.py --data_dir=$data_dir --targets=$targets --reps=$reps"
eval "$peers_cmd" >"$out_dir/peers.json"

if [[ $service == 1 ]]; then
  echo "== request path"
  runs="$out_dir/service-runs.jsonl"
  : >"$runs"
  BUILD_DIR=$build_dir REPS=$svc_reps DURATION=$svc_duration \
    SHAPES="1,64,768 1,1024,768" CONCURRENCIES="1 8 32" \
    scripts/bench-echo-floor.sh "$runs"
  "$python" - "$runs" "$svc_reps" "$svc_duration" >"$out_dir/service.json" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(json.dumps({"runs": runs, "repetitions": int(sys.argv[2]),
                  "duration": sys.argv[3], "warmup": "1s",
                  "command": "engram-cli bench --server=ADDR [--method=/engram.bench.v1.Echo/BatchCosine] "
                             "--random=Q,N,D --concurrency=C --duration=" + sys.argv[3] +
                             " --warmup=1s --format=json"}))
PY
else
  rm -f "$out_dir/service.json"
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" - "$out_dir/machine.json" <<PY
import json, os, re, subprocess, sys, datetime
lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda name: (re.search(rf"^{name}:\s*(.+)$", lscpu, re.M) or [None, "?"])[1].strip()
cores = int(field("Core\\(s\\) per socket")) * int(field("Socket\\(s\\)"))
mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
cosine = json.load(open("$out_dir/cosine.json"))["context"]
json.dump({
    "cpu": field("Model name") + f" (family {field('CPU family')}, model {field('Model')})",
    "cores": cores, "threads": os.cpu_count(), "l3": field("L3 cache"),
    "memory": f"{mem:.0f} GiB", "kernel": os.uname().release,
    "simd_target": cosine.get("simd_target", "?"),
    "openblas_core": cosine.get("openblas_core", "?"),
    "numpy_openblas_core": "$core",
    "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
    "load_before": "$load_before", "load_after": "$load_after",
    "repetitions": $reps, "quick": bool($quick),
    "date": datetime.date.today().isoformat(),
    "cosine_command": """$cosine_cmd""".replace("$build_dir", "build-bench"),
    "spread_command": """$spread_cmd""".replace("$build_dir", "build-bench"),
    "peers_command": """$peers_cmd""",
}, open(sys.argv[1], "w"), indent=1)
PY

if [[ $docs == 1 ]]; then
  "$python" bench/report.py --results="$out_dir" --splice=docs/performance.md
  echo "== docs/performance.md updated"
else
  "$python" bench/report.py --results="$out_dir"
fi
