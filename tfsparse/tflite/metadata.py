"""Our metadata inside a .tflite: a JSON document in a `Model.metadata` entry named "tfsparse".

An app (or `python -m tfsparse.inspect`) finds the labels, input normalisation, sparsity
figures and recipe name next to the weights, without a side file. TFLite's `metadata` is a
list of (name, buffer index) pairs; the runtime ignores names it does not know, so the file
loads and runs exactly as before.

    data = embed(open("m.tflite", "rb").read(), {"labels": [...], "input": {...}})
    read(data)  # -> the same dict

The file is rebuilt with the schema's object API (unpack, add, pack), which keeps
subgraphs, signatures and the converter's own metadata. Buffers are re-aligned to 16 bytes
as the converter writes them, so weights stay aligned for memory-mapped loading.
"""

from __future__ import annotations

import json

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfsparse.errors import UserError
from tfsparse.tflite.flatbuffer import parse

NAME = "tfsparse"
FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data vector is 16-byte aligned (the generated Pack aligns to 1)."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def embed(tflite: bytes, info: dict) -> bytes:
    """Returns `tflite` with `info` stored as JSON under metadata name "tfsparse" (replacing any)."""
    parse(tflite)  # a clear UserError for anything that is not a readable model
    try:
        payload = json.dumps(info, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise UserError(f"metadata is not JSON-serialisable: {e}") from None
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if any(b.offset > 1 for b in model.buffers or []):
        raise UserError("models with buffers stored outside the flatbuffer (over 2 GB) are not supported")
    model.buffers = [_aligned(b) for b in model.buffers or []]
    entries = [m for m in model.metadata or [] if _name(m) != NAME]
    buffer = _AlignedBufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    # Stale buffers of a replaced entry stay (empty-able) rather than renumbering every tensor.
    builder = flatbuffers.Builder(len(tflite) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def read(tflite: bytes) -> dict | None:
    """Our metadata dict, or None when the file has none; UserError if it is unreadable."""
    raw = parse(tflite).metadata.get(NAME)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UserError(f"unreadable {NAME} metadata: {e}") from None
    if not isinstance(value, dict):
        raise UserError(f"{NAME} metadata is not a JSON object")
    return value


def _aligned(buffer) -> _AlignedBufferT:
    out = _AlignedBufferT()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out


def _name(entry) -> str:
    name = entry.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")
