"""Python client of the Engram Similarity Service (engram.similarity.v1).

    from engram_similarity import Client
    with Client("localhost:50051") as client:
        result = client.batch_cosine(queries, targets, top_k=10)

numpy float32 arrays go on the wire without a per-element copy (see
engram_similarity.wire); results are the dataclasses of
engram_similarity.types; failures raise the exceptions of
engram_similarity.errors, named after their gRPC status code.
"""

from engram_similarity import filters
from engram_similarity._methods import TlsConfig
from engram_similarity._proto import similarity_pb2 as pb
from engram_similarity.aio import AsyncClient
from engram_similarity.client import Cancellation, Client
from engram_similarity.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    EngramError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
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

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "Cancellation",
    "Cancelled",
    "Client",
    "CollectionInfo",
    "CosineResult",
    "DataLoss",
    "DeadlineExceeded",
    "DeleteRowsResult",
    "EngramError",
    "ExecutionReport",
    "FailedPrecondition",
    "GraphInfo",
    "Hits",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "SearchResult",
    "SpreadResult",
    "Stats",
    "TlsConfig",
    "TopK",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UpdateGraphResult",
    "UploadResult",
    "UpsertResult",
    "filters",
    "pb",
]
