"""Request messages serialised to bytes, shared by Client and AsyncClient.

Array fields are written by `wire` around the arrays' own buffers; the
remaining fields of each message are a generated message serialised by
protobuf and appended (concatenated messages merge, so the order of fields
does not matter). Every function returns what goes on the wire: bytes for a
unary call, an iterator of bytes for a client stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union, cast

import numpy as np

from engram_similarity import wire
from engram_similarity._proto import similarity_pb2 as pb
from engram_similarity.filters import LabelsLike, as_labels

ArrayLike = Union[np.ndarray, Sequence[Sequence[float]], Sequence[float]]
ArraySource = Union[ArrayLike, str, "os.PathLike[str]"]
# progress(sent, total): rows (UploadCollection) or entries (PutGraph) handed
# to gRPC so far, after each chunk.
Progress = Callable[[int, int], None]

FLOAT32 = np.dtype("<f4")
PLACEMENTS = {
    "auto": pb.PLACEMENT_AUTO,
    "cpu": pb.PLACEMENT_CPU_ONLY,
    "cpu_only": pb.PLACEMENT_CPU_ONLY,
    "gpu": pb.PLACEMENT_GPU_ONLY,
    "gpu_only": pb.PLACEMENT_GPU_ONLY,
}
DEFAULT_CHUNK_BYTES = 4 << 20  # as the C++ client: well under any message limit
DEFAULT_CHUNK_ENTRIES = 1 << 20


def placement(value: Union[str, int]) -> pb.Placement:
    """A Placement from its name ("auto", "cpu", "gpu", ...) or number."""
    if isinstance(value, int):
        return cast(pb.Placement, value)
    try:
        return cast(pb.Placement, PLACEMENTS[value.lower()])
    except KeyError:
        raise ValueError(f"placement must be one of {sorted(PLACEMENTS)}, got {value!r}") from None


def load_array(source: ArraySource) -> np.ndarray:
    """An array, or a .npy file memory-mapped (read lazily, chunk by chunk)."""
    if isinstance(source, (str, os.PathLike)):
        return np.load(source, mmap_mode="r")
    return np.asarray(source)


def _uint_list(values: object, name: str) -> list[int]:
    array = np.asarray(values)
    if array.size and (array.dtype.kind not in "iu" or array.min() < 0):
        raise ValueError(f"{name} must hold non-negative integers")
    return array.ravel().tolist()


def batch_cosine(
    queries: ArrayLike,
    targets: ArrayLike,
    *,
    top_k: int = 0,
    min_score: Optional[float] = None,
    placement_: Union[str, int] = "auto",
) -> bytes:
    rest = pb.BatchCosineRequest(top_k=top_k, placement=placement(placement_))
    if min_score is not None:
        rest.min_score = min_score
    return wire.join(
        wire.matrix_parts(1, wire.as_matrix(queries, "queries"))
        + wire.matrix_parts(2, wire.as_matrix(targets, "targets"))
        + [rest.SerializeToString()]
    )


def graph_parts(
    field: int, num_nodes: int, row_offsets: object, targets: object, weights: object
) -> list[wire.Buffer]:
    """An inline Graph as field `field`: offsets and targets are varints (via
    protobuf), weights packed float32 straight from the array."""
    head = pb.Graph(
        num_nodes=num_nodes,
        row_offsets=_uint_list(row_offsets, "row_offsets"),
        targets=_uint_list(targets, "targets"),
    ).SerializeToString()
    weight_array = np.ascontiguousarray(np.asarray(weights).ravel(), dtype=FLOAT32)
    body = [head, *wire.packed_parts(4, weight_array)]
    return [wire.len_prefix(field, wire.parts_size(body)), *body]


def spread(
    seeds: Union[Mapping[int, float], Sequence[tuple[int, float]]],
    *,
    graph: Optional[tuple[int, object, object, object]] = None,
    graph_name: str = "",
    top_k: int = 0,
    max_hops: Optional[int] = None,
    decay: Optional[tuple[str, float]] = None,
    threshold: Optional[float] = None,
    hop_thresholds: Optional[Sequence[float]] = None,
    max_activation: Optional[float] = None,
    placement_: Union[str, int] = "auto",
    min_version: int = 0,
    seed_nodes: Optional[object] = None,
    result_nodes: Optional[object] = None,
) -> bytes:
    items = seeds.items() if isinstance(seeds, Mapping) else seeds
    request = pb.SpreadRequest(
        seeds=[pb.Seed(node=int(n), activation=float(a)) for n, a in items],
        top_k=top_k,
        placement=placement(placement_),
        graph_name=graph_name,
        min_version=min_version,
    )
    params = request.params
    if max_hops is not None:
        params.max_hops = max_hops
    if decay is not None:
        kind, value = decay
        allowed = ("exponential_rate", "power_law_exponent", "linear_slope", "constant_factor")
        if kind not in allowed:
            raise ValueError(f"decay must be one of {allowed}, got {kind!r}")
        setattr(params, kind, value)
    if threshold is not None:
        params.threshold = threshold
    if hop_thresholds is not None:
        params.hop_thresholds.extend(float(t) for t in hop_thresholds)
    if max_activation is not None:
        params.max_activation = max_activation
    if not params.ListFields():
        request.ClearField("params")
    if seed_nodes is not None:
        request.seed_nodes.nodes.extend(_uint_list(seed_nodes, "seed_nodes"))
    if result_nodes is not None:
        request.result_nodes.nodes.extend(_uint_list(result_nodes, "result_nodes"))
    parts: list[wire.Buffer] = []
    if graph is not None:
        parts = graph_parts(1, *graph)
    parts.append(request.SerializeToString())
    return wire.join(parts)


def search_collection(
    collection: str,
    queries: ArrayLike,
    *,
    top_k: int = 10,
    min_score: Optional[float] = None,
    placement_: Union[str, int] = "auto",
    min_version: int = 0,
    filter: Optional[pb.RowFilter] = None,
) -> bytes:
    rest = pb.SearchCollectionRequest(
        collection=collection,
        top_k=top_k,
        placement=placement(placement_),
        min_version=min_version,
    )
    if min_score is not None:
        rest.min_score = min_score
    if filter is not None:
        rest.filter.CopyFrom(filter)
    return wire.join(
        wire.matrix_parts(2, wire.as_matrix(queries, "queries")) + [rest.SerializeToString()]
    )


def upsert_rows(
    collection: str,
    vectors: ArrayLike,
    ids: object,
    *,
    labels: Optional[Sequence[LabelsLike]] = None,
    idempotency_key: str = "",
    expected_version: int = 0,
) -> bytes:
    rest = pb.UpsertRowsRequest(
        collection=collection,
        ids=_uint_list(ids, "ids"),
        idempotency_key=idempotency_key,
        expected_version=expected_version,
    )
    if labels is not None:
        rest.labels.extend(as_labels(item) for item in labels)
    return wire.join(
        wire.matrix_parts(2, wire.as_matrix(vectors, "vectors")) + [rest.SerializeToString()]
    )


def delete_rows(
    collection: str, ids: object, *, idempotency_key: str = "", expected_version: int = 0
) -> bytes:
    return pb.DeleteRowsRequest(
        collection=collection,
        ids=_uint_list(ids, "ids"),
        idempotency_key=idempotency_key,
        expected_version=expected_version,
    ).SerializeToString()


def _edges(edges: Iterable[Any], weighted: bool) -> list[Any]:
    """Edges from an (n, 2|3) array or a sequence of tuples."""
    if weighted:
        return [pb.WeightedEdge(source=int(s), target=int(t), weight=float(w)) for s, t, w in edges]
    return [pb.EdgeRef(source=int(s), target=int(t)) for s, t in edges]


def update_graph(
    name: str,
    *,
    add_nodes: int = 0,
    remove_edges: Iterable[Any] = (),
    set_weights: Iterable[Any] = (),
    add_edges: Iterable[Any] = (),
    idempotency_key: str = "",
    expected_version: int = 0,
) -> bytes:
    return pb.UpdateGraphRequest(
        name=name,
        add_nodes=add_nodes,
        remove_edges=_edges(remove_edges, False),
        set_weights=_edges(set_weights, True),
        add_edges=_edges(add_edges, True),
        idempotency_key=idempotency_key,
        expected_version=expected_version,
    ).SerializeToString()


def upload_collection(
    name: str,
    vectors: ArraySource,
    *,
    create: bool,
    ids: Optional[Any] = None,
    labels: Optional[Sequence[LabelsLike]] = None,
    metadata: Optional[Mapping[str, str]] = None,
    idempotency_key: str = "",
    chunk_rows: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Optional[Progress] = None,
) -> tuple[int, Iterator[bytes]]:
    """(total rows, the stream's messages): a header, then chunks of rows.

    Like the C++ client (client/similarity_client.cc), a chunk holds
    `chunk_rows` rows, or as many as fit in `chunk_bytes` (at least one).
    A memory-mapped .npy is read one chunk at a time as the stream goes.
    """
    matrix = load_array(vectors)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"vectors must be a non-empty 2-D array, got shape {matrix.shape}")
    rows, cols = matrix.shape
    id_array = None
    if ids is not None:
        id_array = np.asarray(load_array(ids)).ravel()
        if id_array.shape[0] != rows:
            raise ValueError(f"ids has {id_array.shape[0]} entries, expected one per row ({rows})")
    label_list = None
    if labels is not None:
        label_list = [as_labels(item) for item in labels]
        if len(label_list) != rows:
            raise ValueError(f"labels has {len(label_list)} entries, expected one per row ({rows})")
    header = pb.UploadHeader(
        name=name,
        create=create,
        dimension=cols,
        total_rows=rows,
        with_ids=id_array is not None,
        metadata=dict(metadata or {}),
        idempotency_key=idempotency_key,
    )
    if chunk_rows <= 0:
        row_bytes = cols * 4 + (8 if id_array is not None else 0)
        if label_list:
            row_bytes += max(1, sum(m.ByteSize() + 3 for m in label_list) // rows)
        chunk_rows = max(1, chunk_bytes // row_bytes)

    def messages() -> Iterator[bytes]:
        yield pb.UploadCollectionRequest(header=header).SerializeToString()
        for first in range(0, rows, chunk_rows):
            end = min(rows, first + chunk_rows)
            block = np.ascontiguousarray(matrix[first:end], dtype=FLOAT32)
            rest = pb.UploadChunk()
            if id_array is not None:
                rest.ids.extend(_uint_list(id_array[first:end], "ids"))
            if label_list is not None:
                rest.labels.extend(label_list[first:end])
            body = wire.packed_parts(1, block) + [rest.SerializeToString()]
            yield wire.join([wire.len_prefix(2, wire.parts_size(body)), *body])
            if progress is not None:
                progress(end, rows)

    return rows, messages()


def put_graph(
    name: str,
    num_nodes: int,
    row_offsets: ArraySource,
    targets: ArraySource,
    weights: ArraySource,
    *,
    chunk_entries: int = DEFAULT_CHUNK_ENTRIES,
    progress: Optional[Progress] = None,
) -> Iterator[bytes]:
    """The PutGraph stream: a header, then row offsets and edges in chunks of
    at most `chunk_entries` entries each, as the C++ client sends them."""
    if chunk_entries < 1:
        raise ValueError("chunk_entries must be >= 1")
    offsets = np.asarray(load_array(row_offsets)).ravel()
    edge_targets = np.asarray(load_array(targets)).ravel()
    edge_weights = np.asarray(load_array(weights)).ravel()
    if edge_targets.shape != edge_weights.shape:
        raise ValueError(f"targets has {edge_targets.size} entries and weights {edge_weights.size}")
    edges = edge_targets.size
    total = offsets.size + edges

    def messages() -> Iterator[bytes]:
        header = pb.PutGraphHeader(name=name, num_nodes=num_nodes, num_edges=edges)
        yield pb.PutGraphRequest(header=header).SerializeToString()
        sent = 0
        for first in range(0, offsets.size, chunk_entries):
            chunk = offsets[first : first + chunk_entries]
            yield pb.PutGraphRequest(
                chunk=pb.PutGraphChunk(row_offsets=_uint_list(chunk, "row_offsets"))
            ).SerializeToString()
            sent += chunk.size
            if progress is not None:
                progress(sent, total)
        for first in range(0, edges, chunk_entries):
            end = min(edges, first + chunk_entries)
            head = pb.PutGraphChunk(
                targets=_uint_list(edge_targets[first:end], "targets")
            ).SerializeToString()
            block = np.ascontiguousarray(edge_weights[first:end], dtype=FLOAT32)
            body = [head, *wire.packed_parts(3, block)]
            yield wire.join([wire.len_prefix(2, wire.parts_size(body)), *body])
            sent += end - first
            if progress is not None:
                progress(sent, total)

    return messages()
