"""Read a `.tflite` flatbuffer without TensorFlow: operators, tensors, sparsity, signatures, metadata.

Built on the generated accessors in `ai_edge_litert.schema_py_generated` (imports only numpy
and flatbuffers, ~0.1 s). Flatbuffers have no verifier in Python and every offset in a file
may point anywhere, so this reader treats the file as hostile:

- the file must carry the `TFL3` identifier and every vector length must fit in the file;
- a global budget on table visits stops nested vectors that alias the same bytes from
  multiplying into an endless walk;
- every operator/tensor/buffer index is range-checked;
- any exception raised by the generated code becomes `UserError` (one line).

Densification of sparse tensors follows LiteRT's `FormatConverter::Populate`
(`tflite/kernels/internal/utils/sparsity_format_converter.cc`): levels in traversal order,
DENSE levels enumerate `dense_size` positions, SPARSE_CSR levels walk `array_segments` /
`array_indices`, block dimensions (after the original rank) multiply into their original
dimension through `block_map`. Here it is vectorised level by level with numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfsparse.errors import UserError

DENSIFY = schema.BuiltinOperator.DENSIFY  # 124
CUSTOM = schema.BuiltinOperator.CUSTOM

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
DTYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
PADDING_NAMES = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}
ACTIVATION_NAMES = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
DIM_FORMATS = {schema.DimensionType.DENSE: "DENSE", schema.DimensionType.SPARSE_CSR: "SPARSE_CSR"}
INDEX_WIDTHS = {schema.SparseIndexVector.Int32Vector: ("int32", schema.Int32Vector),
                schema.SparseIndexVector.Uint16Vector: ("uint16", schema.Uint16Vector),
                schema.SparseIndexVector.Uint8Vector: ("uint8", schema.Uint8Vector)}
NUMPY_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
                "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FLOAT64": np.float64,
                "BOOL": np.bool_, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}

# A densified tensor larger than this is refused: no phone model has a 256 MB weight, and a
# corrupt shape must not make the inspector allocate gigabytes.
MAX_DENSE_ELEMENTS = 1 << 26


@dataclass
class SparseEncoding:
    """A tensor's `SparsityParameters`, decoded (index vectors as numpy arrays)."""

    traversal_order: list[int]
    block_map: list[int]
    dim_formats: list[str]
    dense_sizes: list[int]
    index_widths: list[str | None]  # per level: dtype of segments/indices (None for DENSE)
    segments: list[np.ndarray | None]
    indices: list[np.ndarray | None]

    def block_shape(self, rank: int) -> list[int]:
        """Block size per original dimension (1 where not blocked), e.g. [1, 4] for FC 1x4."""
        shape = [1] * rank
        for k, dim in enumerate(self.block_map):
            level = self.traversal_order.index(rank + k) if rank + k in self.traversal_order else None
            if 0 <= dim < rank and level is not None:
                shape[dim] = self.dense_sizes[level]
        return shape


@dataclass
class Tensor:
    index: int
    name: str
    shape: list[int]
    dtype: str
    buffer: int
    data: bytes | None  # the stored bytes (for a sparse tensor: only the kept values)
    quantization: dict | None
    sparsity: SparseEncoding | None
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None and len(self.data) > 0

    def values(self) -> np.ndarray:
        """Stored values as a flat numpy array (kept values only for a sparse tensor)."""
        if self.data is None:
            raise UserError(f"tensor {self.index} ({self.name}) has no data")
        dt = NUMPY_DTYPES.get(self.dtype)
        if dt is None:
            raise UserError(f"tensor {self.index} ({self.name}): cannot read values of type {self.dtype}")
        if len(self.data) % np.dtype(dt).itemsize:
            raise UserError(f"tensor {self.index} ({self.name}): {len(self.data)} bytes is not a whole "
                            f"number of {self.dtype} values")
        return np.frombuffer(self.data, dtype=dt)

    def dense_values(self) -> np.ndarray:
        """The tensor in its dense shape: densifies a sparse tensor, reshapes a dense one."""
        if self.sparsity is not None:
            return densify(self.values(), self.shape, self.sparsity, self.name)
        values = self.values()
        if math.prod(self.shape) != values.size:
            raise UserError(f"tensor {self.index} ({self.name}): {values.size} values for shape {self.shape}")
        return values.reshape(self.shape)


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name, or the custom code for CUSTOM ops
    builtin_code: int
    custom_code: str | None
    version: int
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Subgraph:
    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def consumers(self) -> dict[int, list[int]]:
        """Tensor index -> indices of the operators that read it."""
        out: dict[int, list[int]] = {}
        for op in self.operators:
            for t in op.inputs:
                if t >= 0 and op.index not in out.setdefault(t, []):
                    out[t].append(op.index)
        return out

    def producers(self) -> dict[int, int]:
        """Tensor index -> index of the operator that writes it."""
        return {t: op.index for op in self.operators for t in op.outputs if t >= 0}


@dataclass
class Model:
    version: int
    description: str
    subgraphs: list[Subgraph]
    signatures: list[dict]
    metadata: dict[str, bytes]
    size: int

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]


class _Reader:
    """Bounded access to the generated accessors (see the module docstring for why)."""

    def __init__(self, data: bytes):
        self.data = data
        # Every element of a real file occupies its own bytes, so a valid file never needs
        # more visits than it has bytes; aliasing corrupt offsets hit this ceiling instead.
        self.budget = len(data) + 10_000

    def count(self, n: int, what: str) -> int:
        """Checks a vector length read from the file before anything loops over it."""
        if not isinstance(n, int) or n < 0 or n * 4 > len(self.data):
            raise UserError(f"corrupt {what} count {n}")
        self.budget -= n
        if self.budget < 0:
            raise UserError(f"corrupt file: {what} vectors alias each other")
        return n

    def array(self, value, what: str, dtype=None) -> np.ndarray:
        """A `...AsNumpy()` result (0 when the field is absent) as a 1-D array."""
        if isinstance(value, int):
            return np.zeros(0, dtype=dtype or np.int32)
        arr = np.asarray(value)
        self.count(arr.size // 4, what)
        return arr


def _text(raw) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def parse(data: bytes) -> Model:
    """Parses a TFLite flatbuffer; raises UserError (one line) for anything unreadable."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UserError("expected the bytes of a .tflite file")
    data = bytes(data)
    if len(data) == 0:
        raise UserError("empty file")
    if len(data) < 16 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise UserError("not a TFLite flatbuffer (no TFL3 file identifier)")
    try:
        return _parse(data)
    except UserError:
        raise
    except RecursionError:
        raise UserError("corrupt TFLite flatbuffer (nesting too deep)") from None
    except Exception as e:  # noqa: BLE001 - the generated code raises anything on bad offsets
        raise UserError(f"corrupt or truncated TFLite flatbuffer ({type(e).__name__}: {e})") from None


def _parse(data: bytes) -> Model:
    r = _Reader(data)
    m = schema.Model.GetRootAs(data, 0)
    buffers = [_buffer_bytes(r, m.Buffers(i)) for i in range(r.count(m.BuffersLength(), "buffer"))]
    opcodes = []
    for i in range(r.count(m.OperatorCodesLength(), "operator code")):
        oc = m.OperatorCodes(i)
        # Codes above 127 live in builtin_code; the deprecated int8 field saturates at 127.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = _text(oc.CustomCode()) if oc.CustomCode() is not None else None
        opcodes.append((code, custom, int(oc.Version())))
    subgraphs = [_subgraph(r, m.Subgraphs(i), i, opcodes, buffers)
                 for i in range(r.count(m.SubgraphsLength(), "subgraph"))]
    if not subgraphs:
        raise UserError("TFLite flatbuffer has no subgraph")
    metadata = {}
    for i in range(r.count(m.MetadataLength(), "metadata")):
        md = m.Metadata(i)
        b = int(md.Buffer())
        if not 0 <= b < len(buffers):
            raise UserError(f"metadata entry {i} points at buffer {b} of {len(buffers)}")
        metadata[_text(md.Name())] = buffers[b] or b""
    signatures = [_signature(r, m.SignatureDefs(i), subgraphs)
                  for i in range(r.count(m.SignatureDefsLength(), "signature"))]
    return Model(version=int(m.Version()), description=_text(m.Description()), subgraphs=subgraphs,
                 signatures=signatures, metadata=metadata, size=len(data))


def _buffer_bytes(r: _Reader, buf) -> bytes | None:
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1:  # large models keep buffers after the flatbuffer, addressed from file start
        if offset + size > len(r.data):
            raise UserError(f"buffer at offset {offset} size {size} lies past the end of the file")
        return r.data[offset:offset + size]
    arr = buf.DataAsNumpy()
    if isinstance(arr, int):
        return None
    r.count(arr.size // 4, "buffer byte")
    return arr.tobytes()


def _subgraph(r: _Reader, sg, index: int, opcodes, buffers) -> Subgraph:
    tensors = [_tensor(r, sg.Tensors(i), i, buffers) for i in range(r.count(sg.TensorsLength(), "tensor"))]
    n = len(tensors)

    def indices(arr, what: str, allow_missing: bool) -> list[int]:
        out = [int(x) for x in r.array(arr, what)]
        for t in out:
            if not (0 <= t < n or (allow_missing and t == -1)):
                raise UserError(f"subgraph {index}: {what} refers to tensor {t} of {n}")
        return out

    operators = []
    for i in range(r.count(sg.OperatorsLength(), "operator")):
        op = sg.Operators(i)
        oi = int(op.OpcodeIndex())
        if not 0 <= oi < len(opcodes):
            raise UserError(f"operator {i} uses opcode {oi} of {len(opcodes)}")
        code, custom, version = opcodes[oi]
        name = (custom or "CUSTOM") if code == CUSTOM else OPCODE_NAMES.get(code, f"BUILTIN_{code}")
        operators.append(Operator(index=i, opcode=name, builtin_code=code, custom_code=custom,
                                  version=version,
                                  inputs=indices(op.InputsAsNumpy(), f"operator {i} input", True),
                                  outputs=indices(op.OutputsAsNumpy(), f"operator {i} output", True),
                                  options=_options(op)))
    return Subgraph(name=_text(sg.Name()), tensors=tensors, operators=operators,
                    inputs=indices(sg.InputsAsNumpy(), "subgraph input", False),
                    outputs=indices(sg.OutputsAsNumpy(), "subgraph output", False))


def _tensor(r: _Reader, t, index: int, buffers) -> Tensor:
    b = int(t.Buffer())
    if not 0 <= b < len(buffers):
        raise UserError(f"tensor {index} points at buffer {b} of {len(buffers)}")
    dtype = DTYPE_NAMES.get(int(t.Type()), f"TYPE_{t.Type()}")
    shape = [int(x) for x in r.array(t.ShapeAsNumpy(), "shape")]
    q = t.Quantization()
    quant = None
    if q is not None:
        scale = r.array(q.ScaleAsNumpy(), "scale").tolist()
        zero = r.array(q.ZeroPointAsNumpy(), "zero point").tolist()
        if scale or zero:
            quant = {"scale": scale if len(scale) <= 8 else f"{len(scale)} per-channel scales",
                     "zero_point": zero if len(zero) <= 8 else f"{len(zero)} per-channel zero points",
                     "quantized_dimension": int(q.QuantizedDimension())}
    sp = t.Sparsity()
    return Tensor(index=index, name=_text(t.Name()), shape=shape, dtype=dtype, buffer=b,
                  data=buffers[b], quantization=quant,
                  sparsity=_sparsity(r, sp, index) if sp is not None else None,
                  is_variable=bool(t.IsVariable()))


def _sparsity(r: _Reader, sp, tensor: int) -> SparseEncoding:
    order = [int(x) for x in r.array(sp.TraversalOrderAsNumpy(), "traversal order")]
    block_map = [int(x) for x in r.array(sp.BlockMapAsNumpy(), "block map")]
    enc = SparseEncoding(order, block_map, [], [], [], [], [])
    for i in range(r.count(sp.DimMetadataLength(), "dim metadata")):
        dm = sp.DimMetadata(i)
        fmt = DIM_FORMATS.get(int(dm.Format()))
        if fmt is None:
            raise UserError(f"tensor {tensor}: unknown dimension format {dm.Format()}")
        enc.dim_formats.append(fmt)
        enc.dense_sizes.append(int(dm.DenseSize()))
        if fmt == "DENSE":
            enc.index_widths.append(None)
            enc.segments.append(None)
            enc.indices.append(None)
            continue
        width = None
        vectors = []
        for kind, table in ((dm.ArraySegmentsType(), dm.ArraySegments()),
                            (dm.ArrayIndicesType(), dm.ArrayIndices())):
            if kind not in INDEX_WIDTHS or table is None:
                raise UserError(f"tensor {tensor}: SPARSE_CSR level {i} lacks its index vectors")
            width, cls = INDEX_WIDTHS[kind]
            vec = cls()
            vec.Init(table.Bytes, table.Pos)
            vectors.append(r.array(vec.ValuesAsNumpy(), "sparse index").astype(np.int64))
        enc.index_widths.append(width)
        enc.segments.append(vectors[0])
        enc.indices.append(vectors[1])
    return enc


def _options(op) -> dict:
    """Scalar builtin options (stride, padding, fused activation, keep_dims, ...) by name."""
    try:
        obj = schema.BuiltinOptionsCreator(op.BuiltinOptionsType(), op.BuiltinOptions())
    except Exception:  # noqa: BLE001 - a corrupt options table is not worth failing the file
        return {}
    if obj is None:
        return {}
    out = {}
    for key, value in vars(obj).items():
        if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
            value = value.item() if hasattr(value, "item") else value
            if key == "padding":
                value = PADDING_NAMES.get(value, value)
            elif key == "fusedActivationFunction":
                value = ACTIVATION_NAMES.get(value, value)
            out[key] = value
    return out


def _signature(r: _Reader, sd, subgraphs) -> dict:
    def tensor_map(length, get) -> dict:
        out = {}
        for i in range(r.count(length, "signature tensor")):
            tm = get(i)
            out[_text(tm.Name())] = int(tm.TensorIndex())
        return out

    sub = int(sd.SubgraphIndex())
    if not 0 <= sub < len(subgraphs):
        raise UserError(f"signature points at subgraph {sub} of {len(subgraphs)}")
    return {"key": _text(sd.SignatureKey()), "subgraph": sub,
            "inputs": tensor_map(sd.InputsLength(), sd.Inputs),
            "outputs": tensor_map(sd.OutputsLength(), sd.Outputs)}


def densify(values: np.ndarray, shape: list[int], enc: SparseEncoding, name: str = "") -> np.ndarray:
    """Expands a sparse tensor's kept `values` to its dense `shape` (see the module docstring)."""
    what = f"sparse tensor {name!r}" if name else "sparse tensor"
    rank = len(shape)
    levels = len(enc.traversal_order)
    if (levels != rank + len(enc.block_map) or len(enc.dim_formats) != levels
            or sorted(enc.traversal_order) != list(range(levels))):
        raise UserError(f"{what}: traversal order {enc.traversal_order} does not fit rank {rank} "
                        f"with {len(enc.block_map)} block dimension(s)")
    if any(d <= 0 for d in shape) or math.prod(shape) > MAX_DENSE_ELEMENTS:
        raise UserError(f"{what}: unusable dense shape {shape}")
    if any(not 0 <= b < rank for b in enc.block_map) or any(t >= rank for t in enc.traversal_order[:rank]):
        raise UserError(f"{what}: block map {enc.block_map} does not fit rank {rank}")
    block_sizes = [enc.dense_sizes[enc.traversal_order.index(rank + k)] for k in range(len(enc.block_map))]

    # Paths only multiply through DENSE levels, and each must end up addressing a stored value
    # or a segment of a later CSR level: more is a corrupt size, rejected before numpy builds
    # arrays for it (up to MAX_DENSE_ELEMENTS took seconds and GBs; found by tfsparse.tflite.fuzz).
    limit = max([values.size] + [enc.segments[lv].size for lv in range(levels) if enc.dim_formats[lv] != "DENSE"])
    prev = np.zeros(1, dtype=np.int64)  # position of each partial path in its parent level
    coords: list[np.ndarray] = []       # coordinate per level, one entry per partial path
    for level in range(levels):
        size = enc.dense_sizes[level]
        if enc.dim_formats[level] == "DENSE":
            if size <= 0 or prev.size * size > min(limit, MAX_DENSE_ELEMENTS):
                raise UserError(f"{what}: dense level {level} of size {size} is unusable")
            coords = [np.repeat(c, size) for c in coords] + [np.tile(np.arange(size), prev.size)]
            prev = (np.repeat(prev, size) * size + coords[-1])
        else:
            seg, idx = enc.segments[level], enc.indices[level]
            if prev.size and (seg.size < int(prev.max()) + 2 or np.any(np.diff(seg) < 0)
                              or seg[0] < 0 or seg[-1] > idx.size):
                raise UserError(f"{what}: array_segments of level {level} are inconsistent")
            starts, ends = seg[prev], seg[prev + 1]
            counts = ends - starts
            total = int(counts.sum())
            if total > MAX_DENSE_ELEMENTS:
                raise UserError(f"{what}: level {level} has too many entries")
            # Child positions: for path p, the range starts[p] .. ends[p]-1, in order.
            child = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
            coords = [np.repeat(c, counts) for c in coords] + [idx[child]]
            prev = child
    if prev.size != values.size:
        raise UserError(f"{what}: sparsity parameters address {prev.size} values but {values.size} are stored")

    orig = [None] * rank
    for level in range(rank):
        orig[enc.traversal_order[level]] = coords[level]
    for level in range(rank, levels):
        k = enc.traversal_order[level] - rank
        dim = enc.block_map[k]
        orig[dim] = orig[dim] * block_sizes[k] + coords[level]
    for dim in range(rank):
        if orig[dim].size and (orig[dim].min() < 0 or orig[dim].max() >= shape[dim]):
            raise UserError(f"{what}: an index along dimension {dim} lies outside shape {shape}")
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(orig)] = values
    return dense


def metadata_text(name: str, raw: bytes) -> object:
    """A readable form of one metadata entry: JSON for ours, text if printable, else a size."""
    if name == "tfsparse":
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return f"<unreadable tfsparse metadata, {len(raw)} bytes>"
    try:
        text = raw.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return f"<binary, {len(raw)} bytes>"
    return text if text.isprintable() else f"<binary, {len(raw)} bytes>"
