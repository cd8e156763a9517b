"""gRPC failures as exceptions named after their status code.

Callers catch what they can act on (NotFound, Aborted, Unavailable, ...) and
let the rest surface as EngramError; each carries the code, the server's
message (which names the offending field, docs/api.md) and the trailing
metadata, where the server puts grpc-retry-pushback-ms.
"""

from __future__ import annotations

from typing import Optional

import grpc


class EngramError(Exception):
    """A call failed. `code` is a grpc.StatusCode; `message` the server's text.

    `details` is the serialised google.rpc.Status of the grpc-status-details-bin
    trailer when the server sent one (it does not today), else None;
    `trailing_metadata` holds every trailer as (key, value) pairs.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        details: Optional[bytes] = None,
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details
        self.trailing_metadata = trailing_metadata

    @property
    def retry_pushback_ms(self) -> Optional[int]:
        """The server's grpc-retry-pushback-ms: when to retry (or elsewhere)."""
        for key, value in self.trailing_metadata:
            if key == "grpc-retry-pushback-ms":
                try:
                    return int(value)
                except (TypeError, ValueError):
                    return None
        return None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(EngramError):
    code = grpc.StatusCode.CANCELLED


class Unknown(EngramError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(EngramError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(EngramError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(EngramError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(EngramError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(EngramError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(EngramError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(EngramError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(EngramError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(EngramError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(EngramError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(EngramError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(EngramError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(EngramError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(EngramError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[EngramError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(code: grpc.StatusCode, message: str, trailing_metadata=None) -> EngramError:
    """The exception for a status: its class by code, EngramError for others."""
    trailers = tuple(trailing_metadata or ())
    details = None
    for key, value in trailers:
        if key == "grpc-status-details-bin":
            details = value if isinstance(value, bytes) else str(value).encode()
    cls = _BY_CODE.get(code, EngramError)
    return cls(message, code=code, details=details, trailing_metadata=trailers)


def from_rpc_error(error: grpc.RpcError) -> EngramError:
    """Converts a failed call (sync or grpc.aio) into our exception."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else ()
    return error_for(code or grpc.StatusCode.UNKNOWN, message or "", trailers)
