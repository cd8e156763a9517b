#!/usr/bin/python3
"""Turns the outputs of one scripts/bench.sh run into the markdown section
of docs/performance.md: every table states the machine, the command and
medians, and every comparison is a ratio against a baseline from the same
run.

  report.py --results DIR > section.md
  report.py --results DIR --splice docs/performance.md

DIR holds machine.json, cosine.json and spread.json (Google Benchmark JSON,
aggregates), peers.json (bench/peers.py) and service.json (engram-cli bench
runs). --splice replaces the text between the BEGIN/END markers below in the
given file, or appends it with the markers when they are absent.
"""

import argparse
import json
import os
import re
import statistics
import sys

BEGIN = "<!-- scripts/bench.sh: begin generated section -->"
END = "<!-- scripts/bench.sh: end generated section -->"


def load(path):
    with open(path) as f:
        return json.load(f)


def medians(bench_json):
    """{run name: median entry} from Google Benchmark aggregate output."""
    out = {}
    for b in bench_json.get("benchmarks", []):
        if b.get("aggregate_name", "median") != "median":
            continue
        name = b.get("run_name", b["name"])
        out[name] = b
    return out


def seconds(entry):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry["time_unit"]]
    return entry["real_time"] * scale


def ms(s):
    return f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def kib(n):
    return f"{n // 1024}Ki" if n >= 1024 else str(n)


def machine_section(m):
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores / {m['threads']} hardware "
        f"threads, L3 {m['l3']}, {m['memory']} RAM, {m['kernel']}; "
        f"SIMD target {m['simd_target']}; OpenBLAS core {m['openblas_core']} "
        f"(numpy's: {m['numpy_openblas_core']}"
        + (f", OPENBLAS_CORETYPE={m['openblas_coretype']}"
           if m.get("openblas_coretype") else "")
        + f"). Load average {m['load_before']} before the run and "
        f"{m['load_after']} after{m.get('note', '')}.",
    ]
    return "\n".join(lines)


def roofline_section(cos):
    rows = []
    for threads, label in (("1", "1"), ("0", "all")):
        bw = cos.get(f"BM_ReadBandwidth/threads:{threads}/real_time")
        if bw is None:
            continue
        read = bw["bytes_per_second"]
        cells = [label, f"{read / 1e9:.1f}"]
        for d in (384, 768):
            c = cos.get(f"BM_CosineRoofline/d:{d}/threads:{threads}/real_time")
            if c is None:
                cells += ["-", "-"]
                continue
            cells += [f"{c['bytes_per_second'] / 1e9:.1f}",
                      f"{100 * c['bytes_per_second'] / read:.0f}%"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([
        "| threads | read roofline GB/s | cosine d=384 GB/s | of roofline | "
        "cosine d=768 GB/s | of roofline |",
        "|---|---|---|---|---|---|", *rows])


def compute_roofline_section(cos):
    """The panel kernel's GFLOP/s against the FMA peak, where it is
    compute-bound: Q = 128 (BM_KernelCrossover, N = 16Ki, d = 768)."""
    rows = []
    for threads, label in (("1", "1"), ("0", "all")):
        peak = cos.get(f"BM_FmaPeak/threads:{threads}/real_time")
        pan = cos.get(f"BM_KernelCrossover/Q:128/kernel:2/threads:{threads}/real_time")
        if peak is None or pan is None:
            continue
        rows.append(f"| {label} | {peak['gflops']:.0f} | {pan['gflops']:.0f} | "
                    f"{100 * pan['gflops'] / peak['gflops']:.0f}% |")
    return "\n".join([
        "| threads | FMA peak GFLOP/s | panel kernel, Q = 128, GFLOP/s | "
        "of peak |",
        "|---|---|---|---|", *rows])


def crossover_section(cos):
    rows = []
    qs = sorted({int(re.search(r"Q:(\d+)", k).group(1)) for k in cos
                 if k.startswith("BM_KernelCrossover")})
    for threads, label in (("1", "1"), ("0", "all")):
        for q in qs:
            row = cos.get(f"BM_KernelCrossover/Q:{q}/kernel:1/threads:{threads}/real_time")
            pan = cos.get(f"BM_KernelCrossover/Q:{q}/kernel:2/threads:{threads}/real_time")
            if row is None or pan is None:
                continue
            rows.append(f"| {label} | {q} | {ms(seconds(row))} | "
                        f"{ms(seconds(pan))} | {ratio(seconds(row), seconds(pan))} |")
    return "\n".join([
        "| threads | Q | row kernel ms | panel kernel ms | row / panel |",
        "|---|---|---|---|---|", *rows])


def peers_section(cos, peers):
    rows = []
    worst_dense = worst_numpy_topk = worst_faiss = None
    for p in peers["cosine"]:
        q, n, d, k = p["Q"], p["N"], p["d"], p["k"]
        dense = cos.get(f"BM_Cosine/Q:{q}/N:{n}/d:{d}/k:0/threads:0/real_time")
        top = cos.get(f"BM_Cosine/Q:{q}/N:{n}/d:{d}/k:{k}/threads:0/real_time")
        if dense is None or top is None:
            continue
        ours_dense, ours_top = seconds(dense), seconds(top)
        r_dense = p["numpy_dense_s"] / ours_dense
        r_np = p["numpy_topk_s"] / ours_top
        r_faiss = p["faiss_topk_s"] / ours_top
        worst_dense = min(worst_dense or r_dense, r_dense)
        worst_numpy_topk = min(worst_numpy_topk or r_np, r_np)
        worst_faiss = min(worst_faiss or r_faiss, r_faiss)
        rows.append(
            f"| {q} | {kib(n)} | {d} | {dense.get('label', '')} | "
            f"{ms(ours_dense)} | {ms(p['numpy_dense_s'])} | {r_dense:.2f} | "
            f"{ms(ours_top)} | {ms(p['numpy_topk_s'])} | {r_np:.2f} | "
            f"{ms(p['faiss_topk_s'])} | {r_faiss:.2f} |")
    table = "\n".join([
        "| Q | N | d | kernel | ours, all scores ms | numpy ms | numpy / ours | "
        "ours, top-10 ms | numpy top-10 ms | numpy / ours | FAISS top-10 ms | "
        "FAISS / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows])
    summary = ""
    if rows:
        summary = (f"\n\nSmallest speed-ups over the grid: {worst_dense:.2f}x "
                   f"over numpy (all scores), {worst_numpy_topk:.2f}x over "
                   f"numpy (top-10), {worst_faiss:.2f}x over FAISS (top-10); "
                   "a value below 1 is a shape where the peer is faster.")
    return table + summary


def openblas_section(cos):
    rows = []
    for key, entry in sorted(cos.items()):
        m = re.match(r"BM_OpenBlasCosine/Q:(\d+)/N:(\d+)/d:(\d+)/threads:0", key)
        if not m:
            continue
        q, n, d = m.groups()
        ours = cos.get(f"BM_Cosine/Q:{q}/N:{n}/d:{d}/k:0/threads:0/real_time")
        if ours is None:
            continue
        rows.append(f"| {q} | {kib(int(n))} | {d} | {ms(seconds(ours))} | "
                    f"{ms(seconds(entry))} | "
                    f"{ratio(seconds(entry), seconds(ours))} |")
    return "\n".join([
        "| Q | N | d | ours ms | OpenBLAS SGEMM + norms ms | OpenBLAS / ours |",
        "|---|---|---|---|---|---|", *rows])


def spread_section(spr, peers):
    scipy = {p["scale"]: p for p in peers.get("spread", [])}
    rows = []
    modes = {"0": "auto", "1": "sparse push", "2": "dense push", "3": "pull"}
    for scale in sorted(scipy):
        sp = scipy[scale]
        for threads, label in (("1", "1"), ("0", "all")):
            for mode, mode_name in modes.items():
                one = spr.get(f"BM_SpreadDense/scale:{scale}/mode:{mode}/threads:{threads}/hops:1/real_time")
                five = spr.get(f"BM_SpreadDense/scale:{scale}/mode:{mode}/threads:{threads}/hops:5/real_time")
                if one is None or five is None:
                    continue
                hop_s = (seconds(five) - seconds(one)) / 4
                hop_edges = (five["edges"] - one["edges"]) / 4
                whole = five["edges"] / seconds(five)
                if hop_s > 0 and mode != "0":
                    per_hop = hop_edges / hop_s
                    per_hop_cells = (f"{per_hop / 1e6:.0f}",
                                     f"{per_hop / sp['scipy_edges_per_s']:.2f}")
                else:  # auto (hop kinds may differ between runs), or noise
                    per_hop_cells = ("-", "-")
                rows.append(
                    f"| 2^{scale} | {label} | {mode_name} | "
                    f"{per_hop_cells[0]} | {whole / 1e6:.0f} | "
                    f"{sp['scipy_edges_per_s'] / 1e6:.0f} | "
                    f"{per_hop_cells[1]} |")
    dense = "\n".join([
        "| nodes | threads | hops | ours per hop, M edges/s | ours whole call "
        "(5 hops), M edges/s | scipy CSR matvec, M edges/s | ours per hop / "
        "scipy |", "|---|---|---|---|---|---|---|", *rows])
    few = []
    for key, e in sorted(spr.items()):
        m = re.match(r"BM_SpreadFewSeeds/scale:(\d+)/mode:0/threads:(\d+)/weights:(\d)", key)
        if not m:
            continue
        scale, threads, weights = int(m.group(1)), m.group(2), m.group(3)
        if scale not in scipy:
            continue
        hops = max(int(e["hops"]), 1)
        matvecs = hops * scipy[scale]["scipy_matvec_s"]
        few.append(
            f"| 2^{scale} | {'all' if threads == '0' else threads} | "
            f"{'fan-normalised' if weights == '1' else 'uniform'} | "
            f"{int(e['hops'])} | {int(e['edges'])} | {ms(seconds(e))} | "
            f"{ms(matvecs)} | {matvecs / seconds(e):.1f} |")
    few_table = "\n".join([
        "| nodes | threads | weights | hops | edges traversed | ours ms | "
        "scipy, same number of matvecs ms | speed-up |",
        "|---|---|---|---|---|---|---|---|", *few])
    return dense, few_table


def service_section(svc):
    groups = {}
    for run in svc["runs"]:
        key = (run["shape"], run["concurrency"], run["server"])
        groups.setdefault(key, []).append(run)
    rows = []
    shapes = sorted({(k[0], k[1]) for k in groups}, key=lambda x: (x[0], x[1]))
    for shape, conc in shapes:
        echo = groups.get((shape, conc, "echo"), [])
        real = groups.get((shape, conc, "engram"), [])
        if not echo or not real:
            continue
        e_rps = statistics.median(r["requests_per_second"] for r in echo)
        s_rps = statistics.median(r["requests_per_second"] for r in real)
        e_p50 = statistics.median(r["latency_ms"]["p50"] for r in echo)
        s_p50 = statistics.median(r["latency_ms"]["p50"] for r in real)
        s_p99 = statistics.median(r["latency_ms"]["p99"] for r in real)
        e_p99 = statistics.median(r["latency_ms"]["p99"] for r in echo)
        errors = sum(sum(r["errors"].values()) for r in echo + real)
        rows.append(
            f"| {shape} | {real[0]['request_bytes'] / 2**20:.2f} MiB | {conc} | "
            f"{e_rps:.0f} | {s_rps:.0f} | {100 * s_rps / e_rps:.0f}% | "
            f"{e_p50:.3f} | {s_p50:.3f} | {s_p50 / e_p50:.2f} | "
            f"{e_p99:.3f} | {s_p99:.3f} | {errors} |")
    return "\n".join([
        "| request | size | concurrency | echo req/s | engram-server req/s | "
        "server / echo | echo p50 ms | server p50 ms | p50 server / echo | "
        "echo p99 ms | server p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows])


def build(results):
    m = load(os.path.join(results, "machine.json"))
    cos = medians(load(os.path.join(results, "cosine.json")))
    spr = medians(load(os.path.join(results, "spread.json")))
    peers = load(os.path.join(results, "peers.json"))
    svc_path = os.path.join(results, "service.json")
    svc = load(svc_path) if os.path.exists(svc_path) else None
    dense, few = spread_section(spr, peers)
    reps = m["repetitions"]
    parts = [
        "## CPU kernels and request path",
        "",
        "Generated by `scripts/bench.sh` "
        + ("(`--quick`: the documented subset) " if m.get("quick") else "")
        + f"on {m['date']}; every number is the median of {reps} "
        "repetitions from that one run, and every ratio is against a "
        "baseline measured in the same run on the same machine.",
        "",
        machine_section(m),
        "",
        "### Memory roofline",
        "",
        "The read roofline is `BM_ReadBandwidth` (bench/read_bandwidth.cc: "
        "SIMD sums, aligned, eight accumulators) over the same 400 MiB buffer "
        "(12x the LLC) that `BM_CosineRoofline` scores as one query against "
        "N x d targets; GB/s is target bytes per second.",
        "",
        "```sh",
        m["cosine_command"],
        "```",
        "",
        roofline_section(cos),
        "",
        "### Arithmetic roofline",
        "",
        "With many queries a pass is compute-bound: `BM_FmaPeak` "
        "(bench/fma_peak.cc: twelve independent fp32 multiply-add chains in "
        "registers, nothing loaded) is what the cores can do, and the panel "
        "kernel at Q = 128 (from the crossover runs below) is read against it.",
        "",
        compute_roofline_section(cos),
        "",
        "### Row kernel or panel kernel",
        "",
        "Both kernels forced (`BM_KernelCrossover`, N = 16Ki, d = 768, all "
        "scores); `kPanelMinQueries` in kernels/cpu/cosine.cc is where the "
        "panel kernel starts to win.",
        "",
        crossover_section(cos),
        "",
        "### Cosine against numpy and FAISS",
        "",
        "All hardware threads for everyone (numpy and FAISS on OpenBLAS "
        f"{peers['openblas_core']}, FAISS with {peers['faiss_threads']} "
        "OpenMP threads). The peers' times include normalising the raw "
        "vectors (numpy: `T / norm(T)`, `Q / norm(Q)` then `Qn @ Tn.T`, and "
        "`argpartition` for top-10; FAISS: `normalize_L2` on copies, "
        "`IndexFlatIP.add`, `search`); ours is the service's kernel on the "
        "raw vectors. FAISS has no all-scores call and is compared on top-k "
        f"only. Peers: numpy {peers['numpy']}, FAISS {peers['faiss']} "
        "(Debian), run by",
        "",
        "```sh",
        m["peers_command"],
        "```",
        "",
        peers_section(cos, peers),
        "",
        "### A BLAS instead of the panel kernel?",
        "",
        "The same scores through OpenBLAS (`BM_OpenBlasCosine`: one SGEMM of "
        "the raw vectors, then norms and scaling), to decide whether linking "
        "a BLAS would pay. The service does not link OpenBLAS.",
        "",
        openblas_section(cos),
        "",
        "### Spreading activation",
        "",
        "R-MAT graphs (a = 0.57, b = c = 0.19, average out-degree 16, ids "
        "scrambled; bench/bench_data.h). Dense: every node seeded, threshold "
        "0, constant decay 0.5, so every hop's frontier is every node with an "
        "in-edge; the per-hop rate is the difference between 5-hop and "
        "1-hop runs. scipy: `csr_matrix @ x`, float32, single-threaded (as "
        f"scipy {peers['scipy']} is).",
        "",
        "```sh",
        m["spread_command"],
        "```",
        "",
        dense,
        "",
        "From a handful of seeds (five, activation 1) with the API's defaults "
        "(exponential 0.7, threshold 0.01, cap 1, 4 hops), against scipy "
        "doing as many full matvecs as the hops we ran:",
        "",
        few,
    ]
    if svc is not None:
        parts += [
            "",
            "### Request path: engram-server against the echo floor",
            "",
            "`bench/echo_server` takes the same request messages through the "
            "same gRPC build, callback API and allocator settings "
            "(server/malloc_tuning.h) and answers a count inline; "
            "`engram-server` runs with its defaults. Both on loopback, loaded "
            "in alternation by `engram-cli bench` (closed loop, "
            f"{svc['duration']} per run after {svc['warmup']} warm-up, "
            f"medians of {svc['repetitions']} runs each); client and server "
            "share the machine's cores.",
            "",
            "```sh",
            svc["command"],
            "```",
            "",
            service_section(svc),
        ]
    return "\n".join(parts) + "\n"


def kernels_only_section(results, title, machine):
    """The kernel benchmarks of a run without peers (another machine)."""
    cos = medians(load(os.path.join(results, "cosine.json")))
    spr = medians(load(os.path.join(results, "spread.json")))
    grid = []
    def shape(kv):
        return tuple(int(x) for x in re.findall(r":(\d+)", kv[0]))

    for key, e in sorted(cos.items(), key=shape):
        m = re.match(r"BM_Cosine/Q:(\d+)/N:(\d+)/d:(\d+)/k:0/threads:0", key)
        if not m:
            continue
        q, n, d = m.groups()
        top = cos.get(key.replace("/k:0/", "/k:10/"))
        grid.append(f"| {q} | {kib(int(n))} | {d} | {e.get('label', '')} | "
                    f"{ms(seconds(e))} | {e['gflops']:.0f} | "
                    f"{ms(seconds(top)) if top else '-'} |")
    spread = []
    modes = {"0": "auto", "1": "sparse push", "2": "dense push", "3": "pull"}
    for scale in (16, 20):
        for threads, label in (("1", "1"), ("0", "all")):
            for mode, name in modes.items():
                one = spr.get(f"BM_SpreadDense/scale:{scale}/mode:{mode}/threads:{threads}/hops:1/real_time")
                five = spr.get(f"BM_SpreadDense/scale:{scale}/mode:{mode}/threads:{threads}/hops:5/real_time")
                if one is None or five is None:
                    continue
                hop_s = (seconds(five) - seconds(one)) / 4
                # auto may run other hop kinds in the two runs: no marginal.
                per_hop = ("-" if hop_s <= 0 or mode == "0" else
                           f"{(five['edges'] - one['edges']) / 4 / hop_s / 1e6:.0f}")
                spread.append(
                    f"| 2^{scale} | {label} | {name} | "
                    f"{per_hop} | {five['edges'] / seconds(five) / 1e6:.0f} |")
    return "\n".join([
        f"### {title}", "", machine, "",
        roofline_section(cos), "",
        compute_roofline_section(cos), "",
        crossover_section(cos), "",
        "| Q | N | d | kernel | all scores ms | GFLOP/s | top-10 ms |",
        "|---|---|---|---|---|---|---|", *grid, "",
        openblas_section(cos), "",
        "| nodes | threads | hops | per hop, M edges/s | whole call (5 hops), "
        "M edges/s |", "|---|---|---|---|---|", *spread, ""])


def splice(path, section):
    with open(path) as f:
        text = f.read()
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--splice")
    parser.add_argument("--kernels_only", action="store_true",
                        help="DIR has only cosine.json and spread.json")
    parser.add_argument("--title", default="Kernels on another machine")
    parser.add_argument("--machine", default="")
    args = parser.parse_args()
    if args.kernels_only:
        sys.stdout.write(kernels_only_section(args.results, args.title,
                                              args.machine))
        return
    section = build(args.results)
    if args.splice:
        splice(args.splice, section)
    else:
        sys.stdout.write(section)


if __name__ == "__main__":
    main()
