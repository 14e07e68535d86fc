"""The named weights (graph initializers) of an ONNX model file, read as data: no ONNX runtime, no graph.

An ONNX file is a protocol-buffers message (`ModelProto`); its weights are `TensorProto` messages in
the graph's `initializer` list, with a name, a shape, an element type and the values as little-endian
bytes. This reader walks only those fields of the wire format (and skips every other one by its
length), so nothing in the file is executed or interpreted beyond the tensors, and it needs neither the
`onnx` package nor protobuf. Field numbers are those of onnx.proto (ModelProto.graph = 7,
GraphProto.initializer = 5; TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8,
raw_data = 9, data_location = 14).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..errors import FatalError

_GRAPH, _INITIALIZER = 7, 5
_DIMS, _DATA_TYPE, _FLOAT_DATA, _NAME, _RAW_DATA, _DATA_LOCATION = 1, 2, 4, 8, 9, 14
# TensorProto.DataType -> torch dtype, for the element types weights come in
_DTYPES = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16, 6: torch.int32,
           7: torch.int64}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Damaged(Exception):
    """The bytes do not parse as the protocol-buffers messages expected."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Damaged("a number runs past the end of the data")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) of each field of one message: an int for numbers, a memoryview
    for length-delimited fields, the raw bytes for fixed-width ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = buf[pos:pos + width], pos + width
        elif wire == _BYTES:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:  # the deprecated groups (3, 4) and undefined types: not in any ONNX message
            raise _Damaged(f"field {number} has the unknown wire type {wire}")
        if pos > len(buf):
            raise _Damaged(f"field {number} runs past the end of its message")
        yield number, wire, value


def _tensor(buf: memoryview) -> tuple[str, torch.Tensor]:
    name, dims, dtype_code, raw, floats, external = "", [], 0, None, [], False
    for number, wire, value in _fields(buf):
        if number == _DIMS:  # repeated int64: packed (one length-delimited run) or one field per value
            if wire == _BYTES:
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    dims.append(dim)
            else:
                dims.append(value)
        elif number == _DATA_TYPE:
            dtype_code = value
        elif number == _NAME:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _RAW_DATA:
            raw = bytes(value)
        elif number == _FLOAT_DATA:  # packed float32 values, or one fixed-width field per value
            floats.append(bytes(value))
        elif number == _DATA_LOCATION:
            external = value == 1
    if external:
        raise _Damaged(f"the tensor '{name}' is kept in a separate file (ONNX external data), not in this one")
    if dtype_code not in _DTYPES:
        raise _Damaged(f"the tensor '{name}' has the element type {dtype_code}, not a weight type this reader takes")
    dtype = _DTYPES[dtype_code]
    count = 1
    for dim in dims:
        count *= dim
    if raw is None and dtype != torch.float32 and count:
        raise _Damaged(f"the tensor '{name}' keeps its values in a typed field this reader does not take")
    data = raw if raw is not None else b"".join(floats)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != count * itemsize:
        raise _Damaged(f"the tensor '{name}' of shape {tuple(dims)} holds {len(data)} bytes, "
                       f"not {count * itemsize}")
    if count == 0:
        return name, torch.empty(dims, dtype=dtype)
    # ONNX stores values little-endian; torch.frombuffer reads native order, so big-endian hosts swap
    values = torch.frombuffer(bytearray(data), dtype=dtype)
    if sys.byteorder == "big":
        values = values.view(torch.uint8).view(-1, itemsize).flip(1).reshape(-1).view(dtype)
    return name, values.reshape(dims).clone()


def read_initializers(path: str | Path) -> dict[str, torch.Tensor]:
    """The named weights of the ONNX model file at `path` (its graph's initializers), as CPU tensors; a
    FatalError that says why when the file is missing, damaged or not an ONNX model."""
    path = Path(path)
    try:
        buf = memoryview(path.read_bytes())
    except FileNotFoundError:
        raise FatalError(f"the ONNX model {path} does not exist") from None
    except OSError as exc:
        raise FatalError(f"cannot read the ONNX model {path}: {exc.strerror or exc}") from None
    try:
        graphs = [value for number, wire, value in _fields(buf) if number == _GRAPH and wire == _BYTES]
        if len(graphs) != 1:
            raise _Damaged("it holds no model graph" if not graphs else "it holds more than one model graph")
        state: dict[str, torch.Tensor] = {}
        for number, wire, value in _fields(graphs[0]):
            if number == _INITIALIZER and wire == _BYTES:
                name, tensor = _tensor(value)
                if name in state:
                    raise _Damaged(f"it names the tensor '{name}' twice")
                state[name] = tensor
    except _Damaged as exc:
        raise FatalError(f"cannot read the ONNX model {path}: it is damaged or not an ONNX model ({exc})") from None
    if not state:
        raise FatalError(f"the ONNX model {path} holds no named weights (graph initializers)")
    return state
