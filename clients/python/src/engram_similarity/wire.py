"""Protobuf wire format by hand, for the fields that carry arrays.

Building a `repeated float` from a Python list costs one Python object per
value; the wire form of a packed repeated float is only

    tag (field << 3 | 2), varint byte length, the values as little-endian
    IEEE 754 float32, back to back

which is exactly the bytes of a C-contiguous little-endian float32 array.
So requests are serialised here around `array.data` (no per-element work),
and the other, small fields go through the generated protobuf code; the two
are concatenated, which protobuf defines as merging the two messages
(fields may come in any order). Responses are the mirror: `split_packed`
slices the packed arrays out of the bytes for `np.frombuffer` and leaves the
rest to protobuf.

Only packed encodings of fixed-width element types are handled here; the
table `MATRIX_VALUE_FIELDS` maps an element dtype to the Matrix field that
carries it, so a packed dtype added to the proto later is one entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Union

import numpy as np

Buffer = Union[bytes, bytearray, memoryview]

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

# Matrix element dtype -> the Matrix field holding the values (packed).
FLOAT32 = np.dtype("<f4")
MATRIX_VALUE_FIELDS: dict[np.dtype, int] = {FLOAT32: 3}
MATRIX_ROWS_FIELD = 1
MATRIX_COLS_FIELD = 2


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative integer."""
    if value < 0:
        raise ValueError(f"varint of a negative number {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def len_prefix(field: int, length: int) -> bytes:
    """The start of a length-delimited field whose payload is `length` bytes."""
    return tag(field, WIRE_LEN) + varint(length)


def packed_parts(field: int, array: np.ndarray) -> list[Buffer]:
    """A packed repeated field of fixed-width elements: prefix + the raw bytes.

    `array` must already be C-contiguous in its little-endian wire dtype; the
    bytes are referenced, not copied. An empty array encodes as nothing, as
    protobuf does.
    """
    if array.size == 0:
        return []
    data = array.data.cast("B")
    return [len_prefix(field, data.nbytes), data]


def parts_size(parts: Iterable[Buffer]) -> int:
    return sum(memoryview(p).nbytes for p in parts)


def as_matrix(array: object, name: str, dtype: np.dtype = FLOAT32) -> np.ndarray:
    """`array` as a C-contiguous 2-D array of `dtype`; a 1-D array is one row.

    Copies only when the input is not already in that layout (another dtype,
    byte order or strides), which numpy does in C.
    """
    matrix = np.asarray(array)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 1-D or 2-D array, got {matrix.ndim} dimensions")
    return np.ascontiguousarray(matrix, dtype=dtype)


def matrix_parts(field: int, matrix: np.ndarray) -> list[Buffer]:
    """Field `field` of the enclosing message holding `matrix` as a Matrix."""
    value_field = MATRIX_VALUE_FIELDS.get(matrix.dtype)
    if value_field is None:
        raise TypeError(f"no Matrix encoding for dtype {matrix.dtype}")
    rows, cols = matrix.shape
    if rows > 0xFFFFFFFF or cols > 0xFFFFFFFF:
        raise ValueError(f"matrix of {rows} x {cols} exceeds uint32 dimensions")
    body: list[Buffer] = []
    if rows:
        body.append(tag(MATRIX_ROWS_FIELD, WIRE_VARINT) + varint(rows))
    if cols:
        body.append(tag(MATRIX_COLS_FIELD, WIRE_VARINT) + varint(cols))
    body += packed_parts(value_field, matrix)
    return [len_prefix(field, parts_size(body)), *body]


def join(parts: Sequence[Buffer]) -> bytes:
    """One bytes object: the single copy of the array data a request makes."""
    return b"".join(parts)


def read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


class UnexpectedEncoding(Exception):
    """A fast field was not in the single packed run `split_packed` expects."""


def split_packed(data: Buffer, fields: dict[int, np.dtype]) -> tuple[dict[int, np.ndarray], bytes]:
    """Slices packed fixed-width fields out of a serialised message.

    Returns the arrays of `fields` (field number -> dtype; views of `data`,
    read-only when `data` is bytes) and the message's other fields as bytes
    for protobuf to parse. Several runs of one packed field are concatenated
    as the protobuf spec demands. Raises UnexpectedEncoding when a field of
    `fields` arrives unpacked (legal, but not what our server sends): the
    caller then parses the whole message with protobuf.
    """
    view = memoryview(data).cast("B")
    runs: dict[int, list[memoryview]] = {}
    rest: list[memoryview] = []
    pos = 0
    end = len(view)
    while pos < end:
        start = pos
        key, pos = read_varint(view, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == WIRE_VARINT:
            _, pos = read_varint(view, pos)
        elif wire_type == WIRE_I64:
            pos += 8
        elif wire_type == WIRE_I32:
            pos += 4
        elif wire_type == WIRE_LEN:
            length, pos = read_varint(view, pos)
            if field in fields:
                runs.setdefault(field, []).append(view[pos : pos + length])
                pos += length
                continue
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated message")
        if field in fields:
            raise UnexpectedEncoding(f"field {field} is not packed")
        rest.append(view[start:pos])
    arrays: dict[int, np.ndarray] = {}
    for field, dtype in fields.items():
        chunks = runs.get(field, [])
        if len(chunks) == 1:
            arrays[field] = np.frombuffer(chunks[0], dtype=dtype)
        elif chunks:
            arrays[field] = np.frombuffer(b"".join(chunks), dtype=dtype)
        else:
            arrays[field] = np.empty(0, dtype=dtype)
    return arrays, b"".join(rest)
