"""The service's 16 RPCs, written once for Client and AsyncClient.

Each method builds its request bytes (`requests`), names the RPC and the
decoder (`responses`), and hands them to `_unary` / `_stream`, which the sync
client implements with grpc and the async one with grpc.aio: there the same
methods return awaitables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import grpc
import numpy as np

from engram_similarity import requests, responses, wire
from engram_similarity._proto import similarity_pb2 as pb
from engram_similarity.filters import LabelsLike, row_filter
from engram_similarity.types import (
    CollectionInfo,
    CosineResult,
    DeleteRowsResult,
    GraphInfo,
    SearchResult,
    SpreadResult,
    Stats,
    UpdateGraphResult,
    UploadResult,
    UpsertResult,
)

SERVICE = "/engram.similarity.v1.Similarity/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
# The server's default --max_message_bytes, as the C++ client sets it.
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings: PEM bytes or paths. Without root_certificates gRPC uses
    its default roots; certificate_chain + private_key present a client
    certificate (for a server with --tls_client_ca_file); server_name
    overrides the name checked against the server's certificate."""

    root_certificates: Optional[Union[bytes, str]] = None
    certificate_chain: Optional[Union[bytes, str]] = None
    private_key: Optional[Union[bytes, str]] = None
    server_name: Optional[str] = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(value: Optional[Union[bytes, str]]) -> Optional[bytes]:
            if value is None or isinstance(value, bytes):
                return value
            with open(value, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.root_certificates),
            private_key=read(self.private_key),
            certificate_chain=read(self.certificate_chain),
        )


def channel_options(
    tls: Optional[TlsConfig],
    service_config: Optional[Union[str, Mapping[str, Any]]],
    max_message_bytes: int,
    options: Sequence[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    result: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # A retry policy retries only calls whose request fits the retry
        # buffer; every request this client may send must (as in C++).
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
    ]
    if service_config is not None:
        text = service_config if isinstance(service_config, str) else json.dumps(service_config)
        result.append(("grpc.service_config", text))
    if tls is not None and tls.server_name:
        result.append(("grpc.ssl_target_name_override", tls.server_name))
    result.extend(options)
    return result


def tls_config(tls: Union[bool, TlsConfig, None]) -> Optional[TlsConfig]:
    if tls is True:
        return TlsConfig()
    if tls is False or tls is None:
        return None
    return tls


def identity(data: bytes) -> bytes:
    return data


def health_request(service: str) -> bytes:
    """HealthCheckRequest by hand (service = 1, a string)."""
    name = service.encode()
    return wire.len_prefix(1, len(name)) + name if name else b""


def parse_health(data: bytes) -> str:
    """HealthCheckResponse by hand (status = 1, a varint): no extra package."""
    status = 0
    if len(data) >= 2 and data[0] == 0x08:
        status = data[1]
    return HEALTH_NAMES.get(status, str(status))


class Methods:
    """One method per RPC; subclasses provide _unary and _stream.

    The return annotations are Client's; AsyncClient's methods return
    awaitables of the same, as aio.pyi (made from this class by
    check_stubs.py) declares for type checkers.
    """

    def _unary(
        self, method: str, request: bytes, decode: Callable[[bytes], Any], call: dict
    ) -> Any:
        raise NotImplementedError

    def _stream(
        self, method: str, messages: Iterator[bytes], decode: Callable[[bytes], Any], call: dict
    ) -> Any:
        raise NotImplementedError

    # --- Stateless computation ---

    def batch_cosine(
        self,
        queries: requests.ArrayLike,
        targets: requests.ArrayLike,
        *,
        top_k: int = 0,
        min_score: Optional[float] = None,
        placement: Union[str, int] = "auto",
        **call: Any,
    ) -> CosineResult:
        """Cosine of each query row against each target row (float32 arrays,
        Q x d and N x d; a 1-D array is one row). CosineResult: `scores`
        (Q x N) when top_k == 0, else `top` per query."""
        request = requests.batch_cosine(
            queries, targets, top_k=top_k, min_score=min_score, placement_=placement
        )
        num_queries = 1 if np.ndim(queries) == 1 else len(queries)
        return self._unary(
            "BatchCosine", request, lambda d: responses.batch_cosine(d, num_queries), call
        )

    def spread(
        self,
        seeds: Union[Mapping[int, float], Sequence[tuple[int, float]]],
        *,
        graph_name: str = "",
        graph: Optional[tuple[int, Any, Any, Any]] = None,
        top_k: int = 0,
        max_hops: Optional[int] = None,
        decay: Optional[tuple[str, float]] = None,
        threshold: Optional[float] = None,
        hop_thresholds: Optional[Sequence[float]] = None,
        max_activation: Optional[float] = None,
        placement: Union[str, int] = "auto",
        min_version: int = 0,
        seed_nodes: Optional[Any] = None,
        result_nodes: Optional[Any] = None,
        **call: Any,
    ) -> SpreadResult:
        """Spreading activation from `seeds` ({node: activation}) over the
        resident graph `graph_name`, or an inline `graph` given as
        (num_nodes, row_offsets, targets, weights). `decay` is e.g.
        ("exponential_rate", 0.7). SpreadResult."""
        request = requests.spread(
            seeds,
            graph=graph,
            graph_name=graph_name,
            top_k=top_k,
            max_hops=max_hops,
            decay=decay,
            threshold=threshold,
            hop_thresholds=hop_thresholds,
            max_activation=max_activation,
            placement_=placement,
            min_version=min_version,
            seed_nodes=seed_nodes,
            result_nodes=result_nodes,
        )
        return self._unary("Spread", request, responses.spread, call)

    def get_stats(self, **call: Any) -> Stats:
        """Stats: version, uptime, readiness and per-method counts; `raw` the
        whole GetStatsResponse."""
        return self._unary("GetStats", b"", responses.stats, call)

    # --- Resident collections ---

    def create_collection(
        self,
        name: str,
        dimension: int,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        **call: Any,
    ) -> CollectionInfo:
        request = pb.CreateCollectionRequest(
            name=name, dimension=dimension, metadata=dict(metadata or {})
        ).SerializeToString()
        return self._unary("CreateCollection", request, responses.collection_info, call)

    def upload_collection(
        self,
        name: str,
        vectors: requests.ArraySource,
        *,
        create: bool = True,
        ids: Optional[Any] = None,
        labels: Optional[Sequence[LabelsLike]] = None,
        metadata: Optional[Mapping[str, str]] = None,
        idempotency_key: str = "",
        chunk_rows: int = 0,
        chunk_bytes: int = requests.DEFAULT_CHUNK_BYTES,
        progress: Optional[requests.Progress] = None,
        **call: Any,
    ) -> UploadResult:
        """Streams rows (an array, or a .npy path memory-mapped) in chunks.
        create=True makes the collection, False appends to it. `progress`
        is called with (rows sent, total rows) after each chunk."""
        _, messages = requests.upload_collection(
            name,
            vectors,
            create=create,
            ids=ids,
            labels=labels,
            metadata=metadata,
            idempotency_key=idempotency_key,
            chunk_rows=chunk_rows,
            chunk_bytes=chunk_bytes,
            progress=progress,
        )
        return self._stream("UploadCollection", messages, responses.upload, call)

    def delete_collection(self, name: str, **call: Any) -> None:
        request = pb.DeleteCollectionRequest(name=name).SerializeToString()
        return self._unary("DeleteCollection", request, responses.empty, call)

    def list_collections(self, **call: Any) -> list[CollectionInfo]:
        return self._unary("ListCollections", b"", responses.collection_list, call)

    def describe_collection(
        self, name: str, *, min_version: int = 0, **call: Any
    ) -> CollectionInfo:
        request = pb.DescribeCollectionRequest(name=name, min_version=min_version)
        return self._unary(
            "DescribeCollection", request.SerializeToString(), responses.collection_info, call
        )

    def search_collection(
        self,
        collection: str,
        queries: requests.ArrayLike,
        *,
        top_k: int = 10,
        min_score: Optional[float] = None,
        placement: Union[str, int] = "auto",
        min_version: int = 0,
        allow_ids: Optional[Any] = None,
        deny_ids: Optional[Any] = None,
        where: Optional[pb.Predicate] = None,
        **call: Any,
    ) -> SearchResult:
        """Queries against a resident collection; `allow_ids`, `deny_ids` and
        `where` (see engram_similarity.filters) restrict the rows scored."""
        request = requests.search_collection(
            collection,
            queries,
            top_k=top_k,
            min_score=min_score,
            placement_=placement,
            min_version=min_version,
            filter=row_filter(allow_ids, deny_ids, where),
        )
        num_queries = 1 if np.ndim(queries) == 1 else len(queries)
        return self._unary(
            "SearchCollection",
            request,
            lambda d: responses.search_collection(d, num_queries),
            call,
        )

    def upsert_rows(
        self,
        collection: str,
        vectors: requests.ArrayLike,
        ids: Any,
        *,
        labels: Optional[Sequence[LabelsLike]] = None,
        idempotency_key: str = "",
        expected_version: int = 0,
        **call: Any,
    ) -> UpsertResult:
        request = requests.upsert_rows(
            collection,
            vectors,
            ids,
            labels=labels,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        return self._unary("UpsertRows", request, responses.upsert, call)

    def delete_rows(
        self,
        collection: str,
        ids: Any,
        *,
        idempotency_key: str = "",
        expected_version: int = 0,
        **call: Any,
    ) -> DeleteRowsResult:
        request = requests.delete_rows(
            collection, ids, idempotency_key=idempotency_key, expected_version=expected_version
        )
        return self._unary("DeleteRows", request, responses.delete_rows, call)

    # --- Resident graphs ---

    def put_graph(
        self,
        name: str,
        num_nodes: int,
        row_offsets: requests.ArraySource,
        targets: requests.ArraySource,
        weights: requests.ArraySource,
        *,
        chunk_entries: int = requests.DEFAULT_CHUNK_ENTRIES,
        progress: Optional[requests.Progress] = None,
        **call: Any,
    ) -> GraphInfo:
        """Streams a CSR graph (arrays or .npy paths). GraphInfo."""
        messages = requests.put_graph(
            name,
            num_nodes,
            row_offsets,
            targets,
            weights,
            chunk_entries=chunk_entries,
            progress=progress,
        )
        return self._stream("PutGraph", messages, responses.graph_info, call)

    def delete_graph(self, name: str, **call: Any) -> None:
        request = pb.DeleteGraphRequest(name=name).SerializeToString()
        return self._unary("DeleteGraph", request, responses.empty, call)

    def list_graphs(self, **call: Any) -> list[GraphInfo]:
        return self._unary("ListGraphs", b"", responses.graph_list, call)

    def describe_graph(self, name: str, *, min_version: int = 0, **call: Any) -> GraphInfo:
        request = pb.DescribeGraphRequest(name=name, min_version=min_version)
        return self._unary("DescribeGraph", request.SerializeToString(), responses.graph_info, call)

    def update_graph(
        self,
        name: str,
        *,
        add_nodes: int = 0,
        remove_edges: Any = (),
        set_weights: Any = (),
        add_edges: Any = (),
        idempotency_key: str = "",
        expected_version: int = 0,
        **call: Any,
    ) -> UpdateGraphResult:
        """Edges as (source, target) for remove_edges and (source, target,
        weight) for the others. UpdateGraphResult."""
        request = requests.update_graph(
            name,
            add_nodes=add_nodes,
            remove_edges=remove_edges,
            set_weights=set_weights,
            add_edges=add_edges,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        return self._unary("UpdateGraph", request, responses.update_graph, call)
