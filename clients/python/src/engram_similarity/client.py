"""The blocking client: one channel, one method per RPC (see _methods).

Requests travel as bytes the client serialised itself (`requests`), through
multi-callables whose request serializer is the identity; responses come
back as bytes for `responses` to decode. Every method takes the per-call
keywords `timeout` (seconds; None for no deadline; the client's default
when not given), `metadata`
and `cancellation` (a Cancellation another thread may trigger).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional, Union

import grpc

from engram_similarity._methods import (
    DEFAULT_MAX_MESSAGE_BYTES,
    HEALTH_CHECK,
    SERVICE,
    Methods,
    TlsConfig,
    channel_options,
    health_request,
    identity,
    parse_health,
    tls_config,
)
from engram_similarity.errors import Cancelled, EngramError, from_rpc_error

CALL_KEYWORDS = frozenset({"timeout", "metadata", "cancellation"})


class Cancellation:
    """Cancels the calls it is passed to, from any thread: they raise
    Cancelled. A call started after cancel() is cancelled at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[grpc.Future] = []
        self._cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            calls, self._calls = self._calls, []
        for call in calls:
            call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _attach(self, call: grpc.Future) -> None:
        with self._lock:
            if not self._cancelled:
                self._calls.append(call)
                return
        call.cancel()


def check_call_keywords(call: Mapping[str, Any]) -> None:
    unknown = set(call) - CALL_KEYWORDS
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")


class Client(Methods):
    """A blocking client of engram.similarity.v1.Similarity.

    `target` is a gRPC target ("host:port", "dns:///name:port", ...); `tls`
    True for TLS with default roots or a TlsConfig; `timeout` the default
    deadline of each call in seconds (None: none); `service_config` a gRPC
    service config (dict or JSON text, e.g. deploy/grpc-service-config.json)
    for load balancing and retries. Thread-safe: share one per process.
    """

    def __init__(
        self,
        target: str,
        *,
        tls: Union[bool, TlsConfig] = False,
        timeout: Optional[float] = 30.0,
        service_config: Optional[Union[str, Mapping[str, Any]]] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        config = tls_config(tls)
        opts = channel_options(config, service_config, max_message_bytes, options)
        if config is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, config.credentials(), options=opts)
        self._timeout = timeout
        self._callables: dict[str, Any] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """The standard health service's answer: SERVING, NOT_SERVING, ..."""
        return self._unary(
            HEALTH_CHECK,
            health_request(service),
            parse_health,
            {} if timeout is None else {"timeout": timeout},
        )

    def _callable(self, path: str, stream: bool) -> Any:
        key = ("s" if stream else "u") + path
        found = self._callables.get(key)
        if found is None:
            make = self._channel.stream_unary if stream else self._channel.unary_unary
            found = make(path, request_serializer=identity, response_deserializer=identity)
            self._callables[key] = found
        return found

    def _run(self, path: str, request: Any, stream: bool, decode: Callable, call: dict) -> Any:
        check_call_keywords(call)
        # An explicit timeout=None means no deadline for this call.
        timeout = call["timeout"] if "timeout" in call else self._timeout
        metadata = call.get("metadata")
        cancellation: Optional[Cancellation] = call.get("cancellation")
        method = self._callable(path if path.startswith("/") else SERVICE + path, stream)
        try:
            if cancellation is None:
                data = method(request, timeout=timeout, metadata=metadata)
            else:
                future = method.future(request, timeout=timeout, metadata=metadata)
                cancellation._attach(future)
                data = future.result()
        except grpc.FutureCancelledError:
            raise Cancelled("cancelled by the caller", code=grpc.StatusCode.CANCELLED) from None
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return decode(data)

    def _unary(self, method: str, request: bytes, decode: Callable, call: dict) -> Any:
        return self._run(method, request, False, decode, call)

    def _stream(self, method: str, messages: Iterator[bytes], decode: Callable, call: dict) -> Any:
        return self._run(method, messages, True, decode, call)


__all__ = ["Cancellation", "Client", "EngramError", "TlsConfig"]
