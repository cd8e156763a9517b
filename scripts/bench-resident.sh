#!/usr/bin/env bash
# The resident-collection goals, measured on this machine in one
# run and written into docs/performance.md between the generated-section
# markers of this script:
#
#   1. SearchCollection Q=1 top-10 against a resident 1 Mi x 768 float32
#      collection (3 GiB, made by bench/make_bench_data and loaded at
#      start-up through --resident_config): the pass time the server reports
#      (report.compute_seconds) as read bandwidth, against the STREAM-like
#      read roofline of bench/read_bandwidth (cosine_benchmark's
#      BM_ReadBandwidth, all threads) measured right before it, in three
#      rounds of a roofline and five single calls (the server idle between
#      calls), the median of the three ratios being the figure: this
#      machine's bandwidth drifts by tens of percent over minutes, so only
#      adjacent measurements are compared; and the end-to-end latency at
#      concurrency 1 minus the pass,
#      both on the large collection and on a 128-row one uploaded through
#      `collection upload` (where the pass is microseconds, so the
#      difference is the service's fixed cost per call, free of the large
#      pass's run-to-run noise).
#   2. Concurrency 32, Q=1 top-10 each: queries/s with dynamic batching on
#      and off (--batching), the same data and binary, one after the other;
#      and batching on without its pass-slot limit (--batch_max_passes=1024)
#      and without the linger after a pass (--batch_pass_linger=0), to show
#      what each is worth; for each batching run, the mean queries per pass
#      from the server's engram_search_batch_queries histogram.
#
# Usage: scripts/bench-resident.sh [--rows=N] [--duration=DURATION] [--no-docs]
#        scripts/bench-resident.sh --report=DIR [--no-docs]
#   --rows        collection rows (default 1048576)
#   --duration    measured time of each load run (default 20s)
#   --no-docs     print the section instead of splicing it into the docs
#   --report=DIR  measure nothing: make the section from the results another
#                 run left in DIR (its OUT_DIR)
# Environment: BUILD_DIR (build-bench), DATA_DIR (/tmp/engram-bench),
# OUT_DIR ($BUILD_DIR/bench-results), JOBS (2); BIN_DIR: a folder holding
# prebuilt engram-server, engram-cli and make_bench_data, and optionally
# cosine_benchmark (the GPU bundle's bin/ has not it: without it there is no
# roofline and the pass is reported in GB/s alone), used as they are,
# nothing built. The measuring part needs bash and coreutils only, so that
# it runs on a machine without our toolchain or python3 (the GPU machine,
# docs/gpu.md); without python3 it leaves the results in OUT_DIR for
# --report. Needs about 2x the collection's size in free memory (the
# generator, then the server).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ready.sh

rows=1048576
duration=20s
docs=1
report_dir=
for arg in "$@"; do
  case "$arg" in
    --rows=*) rows=${arg#--rows=} ;;
    --duration=*) duration=${arg#--duration=} ;;
    --no-docs) docs=0 ;;
    --report=*) report_dir=${arg#--report=} ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "bench-resident.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
dim=768
build_dir=${BUILD_DIR:-build-bench}
data_dir=${DATA_DIR:-/tmp/engram-bench}
out_dir=${OUT_DIR:-$build_dir/bench-results}

# The figures of a finished run in $out_dir, as a markdown section on stdout
# (needs python3), spliced into docs/performance.md unless --no-docs.
report() {
  local section
  section=$(python3 - "$out_dir" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
rows, dim, duration = open(f"{out}/resident_run.txt").read().split()
rows, dim = int(rows), int(dim)
machine = dict(line.split(": ", 1) for line in
               open(f"{out}/resident_machine.txt").read().splitlines())
def median_bw(name):
    bw = json.load(open(f"{out}/{name}"))
    return [b["bytes_per_second"] for b in bw["benchmarks"]
            if b.get("aggregate_name") == "median"][0]
coll_bytes = rows * dim * 4
rounds = []  # (roofline bytes/s or None, median pass seconds) per round
for r in (1, 2, 3):
    calls = f"{out}/resident_single_calls_{r}.jsonl"
    if not os.path.exists(calls):
        continue
    bw = f"resident_read_bandwidth_{r}.json"
    rounds.append((median_bw(bw) if os.path.exists(f"{out}/{bw}") else None,
                   statistics.median(json.loads(l)["report"]["compute_seconds"]
                                     for l in open(calls))))
passes = [json.loads(l)["report"]["compute_seconds"]
          for r in (1, 2, 3) if os.path.exists(f"{out}/resident_single_calls_{r}.jsonl")
          for l in open(f"{out}/resident_single_calls_{r}.jsonl")]
pass_s = statistics.median(passes)
pass_bw = coll_bytes / pass_s
has_roofline = all(bw is not None for bw, _ in rounds)
c1 = json.load(open(f"{out}/resident_c1.json"))
small = json.load(open(f"{out}/resident_small_c1.json"))
small_pass = statistics.median(
    json.loads(l)["report"]["compute_seconds"]
    for l in open(f"{out}/resident_small_single_calls.jsonl"))
load = machine.get("load", "unknown")
on = json.load(open(f"{out}/resident_c32_on.json"))
off = json.load(open(f"{out}/resident_c32_off.json"))
unbounded = json.load(open(f"{out}/resident_c32_unbounded.json"))
nolinger = json.load(open(f"{out}/resident_c32_nolinger.json"))
def per_pass(name):  # over the load run and its warm-up
    a = json.load(open(f"{out}/resident_c32_{name}_batches_before.json"))
    b = json.load(open(f"{out}/resident_c32_{name}_batches.json"))
    passes = b.get("count", 0) - a.get("count", 0)
    return (b["sum"] - a.get("sum", 0)) / passes if passes else float("nan")
cpu = machine.get("machine") or "unknown"
cores = machine.get("threads", "?")
p50 = c1["latency_ms"]["p50"]
ratio = on["requests_per_second"] / max(off["requests_per_second"], 1e-9)
def ms(x): return f"{x:.2f}"
def each(values): return " / ".join(values)
if has_roofline:
    ratios = [coll_bytes / p / bw for bw, p in rounds]
    roofline_rows = f"""| read roofline per round (BM_ReadBandwidth, all threads, median of 3; the server idle) | {each(f'{bw / 1e9:.2f}' for bw, _ in rounds)} GB/s |
| search pass, Q=1 top-10, per round (server-reported, median of 5 single calls right after the roofline) | {each(ms(p * 1e3) for _, p in rounds)} ms |
| pass read bandwidth against its round's roofline | {each(f'{100 * x:.0f}%' for x in ratios)}: median **{100 * statistics.median(ratios):.0f}%** (goal >= 80%) |"""
else:
    roofline_rows = f"""| read roofline | not measured (no cosine_benchmark) |
| search pass, Q=1 top-10 (server-reported, median of {len(passes)} single calls) | {ms(pass_s * 1e3)} ms |
| pass read bandwidth (collection bytes / pass) | {pass_bw / 1e9:.2f} GB/s |"""
print(f"""Machine: {cpu}, {cores} hardware threads (load average {load} at the end
of the run). Collection: {rows} x {dim} float32 ({coll_bytes / 2**30:.2f} GiB),
loaded from .npy at start-up. Each load run: {duration} measured after a 3 s
warm-up, Q=1, top_k=10.

| figure | value |
|---|---|
{roofline_rows}
| end-to-end latency, concurrency 1: p50 / p99 | {ms(p50)} / {ms(c1['latency_ms']['p99'])} ms |
| end-to-end p50 minus the pass (median of all {len(passes)} single calls; two medians of separate calls: noise of the large pass) | {ms(p50 - pass_s * 1e3)} ms |
| 128-row collection: pass / end-to-end p50 / p99, concurrency 1 | {small_pass * 1e3:.3f} / {ms(small['latency_ms']['p50'])} / {ms(small['latency_ms']['p99'])} ms |
| fixed cost per call (128 rows: p50 minus pass) | **{ms(small['latency_ms']['p50'] - small_pass * 1e3)} ms** (goal < 1 ms) |
| concurrency 32, batching on | {on['requests_per_second']:.1f} queries/s (p50 {ms(on['latency_ms']['p50'])} ms, errors {on['errors'] or 'none'}; {per_pass('on'):.1f} queries per pass) |
| concurrency 32, batching off | {off['requests_per_second']:.1f} queries/s (p50 {ms(off['latency_ms']['p50'])} ms, errors {off['errors'] or 'none'}) |
| batching speedup at concurrency 32 | **{ratio:.1f}x** (goal >= 8x) |
| concurrency 32, batching on with `--batch_max_passes=1024` (a pass per due batch, no slot limit) | {unbounded['requests_per_second']:.1f} queries/s (p50 {ms(unbounded['latency_ms']['p50'])} ms, errors {unbounded['errors'] or 'none'}; {per_pass('unbounded'):.1f} queries per pass) |
| concurrency 32, batching on with `--batch_pass_linger=0` (the next batch leaves as soon as a pass ends) | {nolinger['requests_per_second']:.1f} queries/s (p50 {ms(nolinger['latency_ms']['p50'])} ms, errors {nolinger['errors'] or 'none'}; {per_pass('nolinger'):.1f} queries per pass) |
""")
PY
  )
  echo "$section"
  if [[ $docs == 1 ]]; then
    python3 - docs/performance.md "$section" <<'PY'
import sys
path, section = sys.argv[1], sys.argv[2]
begin = "<!-- scripts/bench-resident.sh: begin generated section -->"
end = "<!-- scripts/bench-resident.sh: end generated section -->"
text = open(path).read()
if begin not in text:
    sys.exit(f"{path} has no '{begin}' marker")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + section.rstrip() + "\n" + end + tail)
PY
    echo "== docs/performance.md updated"
  fi
}

if [[ -n $report_dir ]]; then
  out_dir=$report_dir
  report
  exit 0
fi
mkdir -p "$data_dir" "$out_dir"

if [[ -n ${BIN_DIR:-} ]]; then
  server=$BIN_DIR/engram-server
  cli=$BIN_DIR/engram-cli
  make_bench_data=$BIN_DIR/make_bench_data
  cosine_benchmark=$BIN_DIR/cosine_benchmark
else
  echo "== build ($build_dir)"
  if [[ ! -f $build_dir/build.ninja ]]; then
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DENGRAM_CUDA=OFF >/dev/null
  fi
  ninja -C "$build_dir" -j "${JOBS:-2}" engram_server_bin engram_cli \
    make_bench_data cosine_benchmark >/dev/null
  server=$build_dir/server/engram-server
  cli=$build_dir/client/engram-cli
  make_bench_data=$build_dir/bench/make_bench_data
  cosine_benchmark=$build_dir/bench/cosine_benchmark
fi
printf '%s\n' "$rows" "$dim" "$duration" >"$out_dir/resident_run.txt"

npy=$data_dir/resident_${rows}x${dim}.npy
small_npy=$data_dir/resident_small_128x${dim}.npy
if [[ ! -f $npy || ! -f $small_npy ]]; then
  echo "== data: $rows x $dim float32 -> $npy"
  tmp=$(mktemp -d "$data_dir/gen.XXXXXX")
  "$make_bench_data" --out_dir="$tmp" --dims=$dim \
    --max_targets="$rows" --scales=
  mv "$tmp/targets_d$dim.npy" "$npy"
  mv "$tmp/queries_d$dim.npy" "$small_npy"
  rm -rf "$tmp"
fi

read_bandwidth() {  # read_bandwidth OUT
  if [[ ! -x $cosine_benchmark ]]; then
    echo "== read bandwidth: no $cosine_benchmark, no roofline"
    rm -f "$out_dir/$1"
    return 0
  fi
  echo "== read bandwidth (BM_ReadBandwidth, all threads) -> $1"
  "$cosine_benchmark" \
    --benchmark_filter='^BM_ReadBandwidth/threads:0' \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_format=json >"$out_dir/$1"
}
rm -f "$out_dir"/resident_read_bandwidth*.json \
  "$out_dir"/resident_single_calls*.jsonl

config=$out_dir/resident.conf
printf '[collection bench]\npath = %s\n' "$(realpath "$npy")" >"$config"
budget=$(( rows * (dim + 1) * 4 + (256 << 20) ))

pid=
stop_server() {
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap stop_server EXIT

# start_server NAME FLAGS...: starts the server on a free port with the
# collection declared, waits until it serves.
start_server() {
  local name=$1; shift
  rm -f "$out_dir/ready"
  "$server" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --resident_config="$config" --resident_memory_bytes=$budget \
    --ready_file="$out_dir/ready" --log_level=warning "$@" \
    2>"$out_dir/resident_server_$name.log" &
  pid=$!
  # Loading the collection takes a while.
  wait_ready "$out_dir/ready" "$pid" 120 ||
    { echo "server exited or did not start" >&2; exit 1; }
  target=127.0.0.1:$(ready_port "$out_dir/ready" grpc_port)
  "$cli" collection describe --server="$target" --name=bench \
    >"$out_dir/resident_describe.json"
}

# The server's engram_search_batch_queries histogram (sum and count) -> OUT,
# as JSON; bash's /dev/tcp, so that neither curl nor python3 is needed.
batch_stats() {  # batch_stats OUT
  local metrics_port
  metrics_port=$(ready_port "$out_dir/ready" metrics_port)
  exec 3<>"/dev/tcp/127.0.0.1/$metrics_port"
  printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  awk '$1 == "engram_search_batch_queries_sum" { sum = $2 }
       $1 == "engram_search_batch_queries_count" { count = $2 }
       END { printf "{\"sum\": %s, \"count\": %s}\n", sum + 0, count + 0 }' \
    <&3 >"$out_dir/$1"
  exec 3<&-
}

bench() {  # bench OUT CONCURRENCY [COLLECTION]
  "$cli" bench --server="$target" --rpc=SearchCollection \
    --collection="${3:-bench}" \
    --random=1,$dim --top_k=10 --concurrency="$2" --duration="$duration" \
    --warmup=3s --timeout=120s --format=json >"$out_dir/$1"
}

echo "== batching on: single-call pass times, latency, concurrency 32"
start_server on
for round in 1 2 3; do
  read_bandwidth "resident_read_bandwidth_$round.json"
  for i in $(seq 1 5); do
    "$cli" collection search --server="$target" --name=bench \
      --random=1,$dim --top_k=10 --seed=$((round * 10 + i))
  done >"$out_dir/resident_single_calls_$round.jsonl"
done
bench resident_c1.json 1
batch_stats resident_c32_on_batches_before.json
bench resident_c32_on.json 32
batch_stats resident_c32_on_batches.json
"$cli" collection upload --server="$target" --name=small --file="$small_npy" \
  >/dev/null
for i in $(seq 1 50); do
  "$cli" collection search --server="$target" --name=small \
    --random=1,$dim --top_k=10 --seed=$i
done >"$out_dir/resident_small_single_calls.jsonl"
bench resident_small_c1.json 1 small
stop_server

echo "== batching off: concurrency 32"
start_server off --batching=false
bench resident_c32_off.json 32
stop_server

echo "== batching on, pass slots unbounded: concurrency 32"
start_server unbounded --batch_max_passes=1024
batch_stats resident_c32_unbounded_batches_before.json
bench resident_c32_unbounded.json 32
batch_stats resident_c32_unbounded_batches.json
stop_server

echo "== batching on, no linger after a pass: concurrency 32"
start_server nolinger --batch_pass_linger=0
batch_stats resident_c32_nolinger_batches_before.json
bench resident_c32_nolinger.json 32
batch_stats resident_c32_nolinger_batches.json
stop_server

{
  echo "machine: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "threads: $(nproc)"
  echo "load: $(cut -d' ' -f1 /proc/loadavg)"
} >"$out_dir/resident_machine.txt"
if command -v python3 >/dev/null; then
  report
else
  echo "== no python3: results in $out_dir; make the section elsewhere with"
  echo "   scripts/bench-resident.sh --report=<that folder>"
fi
