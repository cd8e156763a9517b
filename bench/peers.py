#!/usr/bin/python3
"""The peers of bench/cosine_benchmark.cc and bench/spread_benchmark.cc, on
the same data (written by make_bench_data), timed the same way: medians of
repeated runs, normalisation included.

  cosine, all scores:  numpy  T / |T|, Q / |Q|, Qn @ Tn.T
  cosine, top-k:       numpy  the same, then argpartition + sort of k per row
                       FAISS  normalize_L2 of copies, IndexFlatIP.add, search
  spreading:           scipy  CSR matvec A @ x (float32), edges/s

Run by scripts/bench.sh with Debian's python3 (python3-numpy, python3-faiss,
python3-scipy); prints one JSON object. Peers run at their best: every
hardware thread, and OpenBLAS on the kernels for this CPU (bench.sh sets
OPENBLAS_CORETYPE when OpenBLAS would otherwise fall back to generic code;
the core it runs is reported).
"""

import argparse
import ctypes
import json
import os
import sys
import time

import numpy as np


def openblas_core():
    """The core OpenBLAS selected, from the library numpy loaded."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps
                 if "blas" in line and line.rstrip().endswith(".so.0")
                 or "libblas.so" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def median_seconds(fn, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def numpy_dense(q, t):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    return qn @ tn.T


def numpy_topk(q, t, k):
    scores = numpy_dense(q, t)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    best = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def faiss_topk(faiss, q, t, k):
    tn = t.copy()
    faiss.normalize_L2(tn)
    qn = q.copy()
    faiss.normalize_L2(qn)
    index = faiss.IndexFlatIP(t.shape[1])
    index.add(tn)
    return index.search(qn, k)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data_dir", default="/tmp/engram-bench")
    parser.add_argument("--queries", default="1,16,128")
    parser.add_argument("--targets", default="1024,16384,262144")
    parser.add_argument("--dims", default="384,768")
    parser.add_argument("--scales", default="16,20")
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    import faiss  # after numpy, so both share the OpenBLAS already loaded
    import scipy.sparse

    out = {
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", "?"),
        "scipy": scipy.__version__,
        "openblas_core": openblas_core(),
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
        "faiss_threads": faiss.omp_get_max_threads(),
        "cosine": [],
        "spread": [],
    }
    k = args.top_k
    for d in [int(x) for x in args.dims.split(",") if x]:
        queries = np.load(os.path.join(args.data_dir, f"queries_d{d}.npy"))
        targets = np.load(os.path.join(args.data_dir, f"targets_d{d}.npy"))
        for n in [int(x) for x in args.targets.split(",") if x]:
            t = targets[:n]
            for nq in [int(x) for x in args.queries.split(",") if x]:
                q = queries[:nq]
                # A larger shape gets fewer repetitions, to bound the run.
                reps = args.reps if nq * n * d < (1 << 33) else 3
                row = {"Q": nq, "N": n, "d": d, "k": k,
                       "numpy_dense_s": median_seconds(
                           lambda: numpy_dense(q, t), reps),
                       "numpy_topk_s": median_seconds(
                           lambda: numpy_topk(q, t, k), reps),
                       "faiss_topk_s": median_seconds(
                           lambda: faiss_topk(faiss, q, t, k), reps)}
                out["cosine"].append(row)
                print(json.dumps(row), file=sys.stderr)
        del targets
    for scale in [int(x) for x in args.scales.split(",") if x]:
        prefix = os.path.join(args.data_dir, f"rmat{scale}")
        offsets = np.load(prefix + "_offsets.npy").astype(np.int64)
        indices = np.load(prefix + "_targets.npy").astype(np.int32)
        weights = np.load(prefix + "_weights.npy")
        n = len(offsets) - 1
        a = scipy.sparse.csr_matrix((weights, indices, offsets), shape=(n, n))
        x = np.full(n, 1e-3, dtype=np.float32)
        seconds = median_seconds(lambda: a @ x, max(args.reps, 5))
        row = {"scale": scale, "nodes": n, "edges": int(a.nnz),
               "scipy_matvec_s": seconds,
               "scipy_edges_per_s": a.nnz / seconds}
        out["spread"].append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
