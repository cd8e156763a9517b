"""What the client returns: small dataclasses with numpy arrays.

The generated messages stay reachable (`raw` on the larger results) for the
fields these do not spell out; the dataclasses carry what callers use:
arrays, versions, the execution report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from engram_similarity._proto import similarity_pb2 as pb

BACKEND_NAMES = {
    pb.BACKEND_UNSPECIFIED: "unspecified",
    pb.BACKEND_CPU: "cpu",
    pb.BACKEND_GPU: "gpu",
    pb.BACKEND_MIXED: "mixed",
}


@dataclass(frozen=True)
class ExecutionReport:
    """Where the server computed a result and why (ExecutionReport)."""

    backend: str  # cpu, gpu, mixed or unspecified
    decided_by: str
    fallback_reason: str
    chunks: int
    compute_seconds: float

    @staticmethod
    def from_pb(message: pb.ExecutionReport) -> "ExecutionReport":
        return ExecutionReport(
            backend=BACKEND_NAMES.get(message.backend, str(message.backend)),
            decided_by=message.decided_by,
            fallback_reason=message.fallback_reason,
            chunks=message.chunks,
            compute_seconds=message.compute_seconds,
        )


@dataclass(frozen=True)
class TopK:
    """The best targets of one query: indices into the targets and scores."""

    indices: np.ndarray  # uint32
    scores: np.ndarray  # float32


@dataclass(frozen=True)
class CosineResult:
    """BatchCosine: `scores` (Q x N float32) when top_k == 0, else `top`."""

    scores: Optional[np.ndarray]
    top: list[TopK]
    report: ExecutionReport


@dataclass(frozen=True)
class SpreadResult:
    activation: np.ndarray  # num_nodes float32 when top_k == 0, else empty
    top_nodes: np.ndarray  # uint32, by activation descending
    top_activation: np.ndarray  # float32
    hops: int
    edges_traversed: int
    graph_version: int  # 0 for an inline graph
    seeds_ignored: int
    report: ExecutionReport


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dimension: int
    count: int
    bytes: int
    metadata: dict[str, str]
    residency: str
    load_state: str
    version: int
    segments: int
    has_ids: bool
    source: str
    error: str
    tombstones: int

    @staticmethod
    def from_pb(message: pb.CollectionInfo) -> "CollectionInfo":
        return CollectionInfo(
            name=message.name,
            dimension=message.dimension,
            count=message.count,
            bytes=message.bytes,
            metadata=dict(message.metadata),
            residency=message.residency,
            load_state=message.load_state,
            version=message.version,
            segments=message.segments,
            has_ids=message.has_ids,
            source=message.source,
            error=message.error,
            tombstones=message.tombstones,
        )


@dataclass(frozen=True)
class UploadResult:
    collection: CollectionInfo
    rows_uploaded: int
    replayed: bool  # the idempotency key was already committed


@dataclass(frozen=True)
class Hits:
    """One query's results in a collection search."""

    ids: np.ndarray  # uint64, the stored ids
    scores: np.ndarray  # float32
    rows: np.ndarray  # uint32, rows of the version searched


@dataclass(frozen=True)
class SearchResult:
    """SearchCollection: `hits` per query when top_k > 0; else `scores`
    (Q x M float32) with `ids` naming the M rows searched."""

    hits: list[Hits]
    scores: Optional[np.ndarray]
    ids: Optional[np.ndarray]
    report: ExecutionReport
    batch_queries: int
    batch_requests: int
    queue_seconds: float
    collection_version: int
    rows_searched: int


@dataclass(frozen=True)
class UpsertResult:
    collection: CollectionInfo
    inserted: int
    replaced: int
    replayed: bool


@dataclass(frozen=True)
class DeleteRowsResult:
    collection: CollectionInfo
    deleted: int
    not_found: int
    not_found_ids: np.ndarray  # uint64, the first 1,024
    replayed: bool


@dataclass(frozen=True)
class GraphInfo:
    name: str
    num_nodes: int
    num_edges: int
    bytes: int
    residency: str
    load_state: str
    source: str
    version: int
    pending_changes: int

    @staticmethod
    def from_pb(message: pb.GraphInfo) -> "GraphInfo":
        return GraphInfo(
            name=message.name,
            num_nodes=message.num_nodes,
            num_edges=message.num_edges,
            bytes=message.bytes,
            residency=message.residency,
            load_state=message.load_state,
            source=message.source,
            version=message.version,
            pending_changes=message.pending_changes,
        )


@dataclass(frozen=True)
class UpdateGraphResult:
    graph: GraphInfo
    edges_removed: int
    edges_reweighted: int
    edges_added: int
    not_found: int
    not_found_edges: np.ndarray  # (n, 2) uint32 source, target; the first 1,024
    replayed: bool


@dataclass(frozen=True)
class Stats:
    """GetStats: the headline figures; `raw` is the full GetStatsResponse."""

    version: str
    uptime_seconds: float
    gpu_available: bool
    serving: bool
    phase: str
    inflight_requests: int
    requests: dict[tuple[str, str], int]  # (method, code name) -> count
    raw: pb.GetStatsResponse = field(repr=False)
