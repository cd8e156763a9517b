"""The asyncio client on grpc.aio, with the encoding of the blocking one.

The same methods as Client (_methods), returning awaitables. Cancel a call
the asyncio way, by cancelling its task (asyncio.CancelledError); a deadline
is the `timeout` keyword. Streaming uploads read their chunks from a plain
iterator, so a memory-mapped file is read on the event loop's thread, one
chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional, Union

import grpc
import grpc.aio

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
from engram_similarity.errors import from_rpc_error

CALL_KEYWORDS = frozenset({"timeout", "metadata"})


class AsyncClient(Methods):
    """An asyncio client; arguments as Client's. Use `async with` or await
    close(); create it inside the event loop that uses it."""

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
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.aio.secure_channel(target, config.credentials(), options=opts)
        self._timeout = timeout
        self._callables: dict[str, Any] = {}

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        return await self._unary(
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

    async def _run(
        self, path: str, request: Any, stream: bool, decode: Callable, call: dict
    ) -> Any:
        unknown = set(call) - CALL_KEYWORDS
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        # An explicit timeout=None means no deadline for this call.
        timeout = call["timeout"] if "timeout" in call else self._timeout
        method = self._callable(path if path.startswith("/") else SERVICE + path, stream)
        try:
            data = await method(request, timeout=timeout, metadata=call.get("metadata"))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return decode(data)

    def _unary(self, method: str, request: bytes, decode: Callable, call: dict) -> Any:
        return self._run(method, request, False, decode, call)

    def _stream(self, method: str, messages: Iterator[bytes], decode: Callable, call: dict) -> Any:
        return self._run(method, messages, True, decode, call)
