#!/usr/bin/env python3
"""What the Python client pays to build and send a BatchCosine request,
against the C++ client doing the same calls on the same server in the same
run (bench/client_request_benchmark.cc).

One call at a time, 1 query against 1365 x 768 targets by default (about
1 Mi float32 values, a 4 MiB request), top_k 10 so that the response is
small. Rounds alternate C++ and Python so both see the same machine; the
medians over rounds are compared:

  cpp_build_and_send  MakeMatrix + MakeCosineRequest + SimilarityClient::BatchCosine
  cpp_send            SimilarityClient::BatchCosine of a request built once
  py_client           Client.batch_cosine(queries, targets): the request
                      serialised from the arrays on every call, the
                      response decoded into a CosineResult
  py_prebuilt         the same bytes sent again through grpc (Python's
                      transport floor)

The ratio that matters is py_client / cpp_build_and_send (a caller of
either client holds its vectors in an array); py_client / cpp_send is the
stricter one against a C++ caller that never rebuilds its request.

  clients/python/bench/request_cost.py [--target HOST:PORT] [--rounds 5]

Without --target it starts build/server/engram-server on a loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def start_server(binary: Path) -> tuple[subprocess.Popen, str]:
    directory = tempfile.mkdtemp(prefix="engram-bench-")
    ready = Path(directory) / "ready"
    process = subprocess.Popen(
        [
            str(binary),
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--ready_file={ready}",
            "--log_level=warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{binary} exited with {process.returncode}")
        try:
            port = json.loads(ready.read_text())["grpc_port"]
            return process, f"127.0.0.1:{port}"
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    process.kill()
    sys.exit(f"{binary} did not get ready in 30 s")


def cpp_round(
    binary: Path, target: str, shape: str, top_k: int, seconds: float
) -> dict[str, float]:
    env = dict(
        os.environ,
        ENGRAM_BENCH_TARGET=target,
        ENGRAM_BENCH_SHAPE=shape,
        ENGRAM_BENCH_TOP_K=str(top_k),
    )
    out = subprocess.run(
        [str(binary), f"--benchmark_min_time={seconds}", "--benchmark_format=json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = {}
    for entry in json.loads(out)["benchmarks"]:
        if entry.get("error_occurred"):
            sys.exit(f"{entry['name']}: {entry.get('error_message')}")
        scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[entry["time_unit"]]
        name = entry["name"].split("/")[0]
        result[{"BM_BuildAndSend": "cpp_build_and_send", "BM_Send": "cpp_send"}[name]] = (
            entry["real_time"] * scale
        )
    return result


def time_loop(call, seconds: float) -> float:
    for _ in range(10):
        call()
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
    return (time.perf_counter() - start) / count


def py_round(client, queries, targets, top_k: int, seconds: float) -> dict[str, float]:
    from engram_similarity import requests

    prebuilt = requests.batch_cosine(queries, targets, top_k=top_k)
    send = client._callable("/engram.similarity.v1.Similarity/BatchCosine", False)
    return {
        "py_client": time_loop(lambda: client.batch_cosine(queries, targets, top_k=top_k), seconds),
        "py_prebuilt": time_loop(lambda: send(prebuilt, timeout=30), seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running server; default: start one")
    parser.add_argument("--server", type=Path, default=REPO / "build/server/engram-server")
    parser.add_argument(
        "--cpp-benchmark", type=Path, default=REPO / "build/bench/client_request_benchmark"
    )
    parser.add_argument("--shape", default="1,1365,768", help="Q,N,D")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    options = parser.parse_args()

    from engram_similarity import Client

    q, n, d = (int(x) for x in options.shape.split(","))
    rng = np.random.default_rng(1)
    queries = rng.uniform(-0.5, 0.5, (q, d)).astype(np.float32)
    targets = rng.uniform(-0.5, 0.5, (n, d)).astype(np.float32)
    process = None
    target = options.target
    if target is None:
        process, target = start_server(options.server)
    samples: dict[str, list[float]] = {}
    try:
        with Client(target, timeout=30) as client:
            for _ in range(options.rounds):
                for result in (
                    cpp_round(
                        options.cpp_benchmark, target, options.shape, options.top_k, options.seconds
                    ),
                    py_round(client, queries, targets, options.top_k, options.seconds),
                ):
                    for key, value in result.items():
                        samples.setdefault(key, []).append(value)
    finally:
        if process is not None:
            process.kill()
            process.wait()

    import grpc
    import google.protobuf

    median = {key: statistics.median(values) for key, values in samples.items()}
    print(
        f"BatchCosine Q={q} N={n} d={d} top_k={options.top_k}: {q * d + n * d} values, "
        f"{options.rounds} rounds of {options.seconds} s, one call at a time"
    )
    print(
        f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, "
        f"protobuf {google.protobuf.__version__}, numpy {np.__version__}"
    )
    for key in ("cpp_build_and_send", "cpp_send", "py_client", "py_prebuilt"):
        spread = ", ".join(f"{v * 1e3:.3f}" for v in samples[key])
        print(f"  {key:<20} median {median[key] * 1e3:7.3f} ms  (rounds: {spread})")
    ratio = median["py_client"] / median["cpp_build_and_send"]
    strict = median["py_client"] / median["cpp_send"]
    print(f"ratio py_client / cpp_build_and_send = {ratio:.3f}")
    print(f"ratio py_client / cpp_send           = {strict:.3f}")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
