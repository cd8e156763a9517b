"""Response bytes to the dataclasses of `types`, shared by both clients.

Large packed float fields (BatchCosine and SearchCollection scores, Spread's
dense activation) are sliced out of the bytes and viewed with np.frombuffer,
so a 64 Mi-score response costs no per-element work; protobuf parses the
remaining small fields. The smaller repeated fields go through protobuf and
np.array.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

from engram_similarity import wire
from engram_similarity._proto import similarity_pb2 as pb
from engram_similarity.types import (
    CollectionInfo,
    CosineResult,
    DeleteRowsResult,
    ExecutionReport,
    GraphInfo,
    Hits,
    SearchResult,
    SpreadResult,
    Stats,
    TopK,
    UpdateGraphResult,
    UploadResult,
    UpsertResult,
)

M = TypeVar("M")
FLOAT32 = np.dtype("<f4")


def _split(data: bytes, message: type[M], fields: dict[int, np.dtype]) -> tuple[M, dict]:
    """The message without `fields`, and those fields as arrays."""
    try:
        arrays, rest = wire.split_packed(data, fields)
        return message.FromString(rest), arrays  # type: ignore[attr-defined]
    except wire.UnexpectedEncoding:
        parsed = message.FromString(data)  # type: ignore[attr-defined]
        descriptor = parsed.DESCRIPTOR
        arrays = {}
        for number, dtype in fields.items():
            name = descriptor.fields_by_number[number].name
            arrays[number] = np.array(getattr(parsed, name), dtype=dtype)
            parsed.ClearField(name)
        return parsed, arrays


def _u32(values: object) -> np.ndarray:
    return np.array(values, dtype=np.uint32)


def _u64(values: object) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def _f32(values: object) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def batch_cosine(data: bytes, num_queries: int) -> CosineResult:
    message, arrays = _split(data, pb.BatchCosineResponse, {1: FLOAT32})
    scores = arrays[1]
    top = [TopK(indices=_u32(t.indices), scores=_f32(t.scores)) for t in message.top]
    return CosineResult(
        scores=scores.reshape(num_queries, -1) if scores.size else None,
        top=top,
        report=ExecutionReport.from_pb(message.report),
    )


def spread(data: bytes) -> SpreadResult:
    message, arrays = _split(data, pb.SpreadResponse, {1: FLOAT32})
    return SpreadResult(
        activation=arrays[1],
        top_nodes=_u32(message.top_nodes),
        top_activation=_f32(message.top_activation),
        hops=message.hops,
        edges_traversed=message.edges_traversed,
        graph_version=message.graph_version,
        seeds_ignored=message.seeds_ignored,
        report=ExecutionReport.from_pb(message.report),
    )


def search_collection(data: bytes, num_queries: int) -> SearchResult:
    message, arrays = _split(data, pb.SearchCollectionResponse, {2: FLOAT32})
    scores = arrays[2]
    hits = [
        Hits(ids=_u64(h.ids), scores=_f32(h.scores), rows=_u32(h.rows)) for h in message.results
    ]
    return SearchResult(
        hits=hits,
        scores=scores.reshape(num_queries, -1) if not hits else None,
        ids=_u64(message.ids) if not hits else None,
        report=ExecutionReport.from_pb(message.report),
        batch_queries=message.batch_queries,
        batch_requests=message.batch_requests,
        queue_seconds=message.queue_seconds,
        collection_version=message.collection_version,
        rows_searched=message.rows_searched,
    )


def stats(data: bytes) -> Stats:
    message = pb.GetStatsResponse.FromString(data)
    return Stats(
        version=message.version,
        uptime_seconds=message.uptime_seconds,
        gpu_available=message.gpu_available,
        serving=message.readiness.serving,
        phase=message.readiness.phase,
        inflight_requests=message.inflight_requests,
        requests={(m.method, m.code): m.count for m in message.methods},
        raw=message,
    )


def collection_info(data: bytes) -> CollectionInfo:
    return CollectionInfo.from_pb(pb.CollectionInfo.FromString(data))


def collection_list(data: bytes) -> list[CollectionInfo]:
    message = pb.ListCollectionsResponse.FromString(data)
    return [CollectionInfo.from_pb(c) for c in message.collections]


def upload(data: bytes) -> UploadResult:
    message = pb.UploadCollectionResponse.FromString(data)
    return UploadResult(
        collection=CollectionInfo.from_pb(message.collection),
        rows_uploaded=message.rows_uploaded,
        replayed=message.replayed,
    )


def upsert(data: bytes) -> UpsertResult:
    message = pb.UpsertRowsResponse.FromString(data)
    return UpsertResult(
        collection=CollectionInfo.from_pb(message.collection),
        inserted=message.inserted,
        replaced=message.replaced,
        replayed=message.replayed,
    )


def delete_rows(data: bytes) -> DeleteRowsResult:
    message = pb.DeleteRowsResponse.FromString(data)
    return DeleteRowsResult(
        collection=CollectionInfo.from_pb(message.collection),
        deleted=message.deleted,
        not_found=message.not_found,
        not_found_ids=_u64(message.not_found_ids),
        replayed=message.replayed,
    )


def graph_info(data: bytes) -> GraphInfo:
    return GraphInfo.from_pb(pb.GraphInfo.FromString(data))


def graph_list(data: bytes) -> list[GraphInfo]:
    return [GraphInfo.from_pb(g) for g in pb.ListGraphsResponse.FromString(data).graphs]


def update_graph(data: bytes) -> UpdateGraphResult:
    message = pb.UpdateGraphResponse.FromString(data)
    edges = np.array([(e.source, e.target) for e in message.not_found_edges], dtype=np.uint32)
    return UpdateGraphResult(
        graph=GraphInfo.from_pb(message.graph),
        edges_removed=message.edges_removed,
        edges_reweighted=message.edges_reweighted,
        edges_added=message.edges_added,
        not_found=message.not_found,
        not_found_edges=edges.reshape(-1, 2),
        replayed=message.replayed,
    )


def empty(data: bytes) -> None:
    """Delete* responses carry nothing."""
    return None


Decoder = Callable[[bytes], object]
