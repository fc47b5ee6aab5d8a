"""Store pruned lookup tables (GATHER params, e.g. a Keras `Embedding`) sparse in a flatbuffer.

Why: the converter's sparsity pass (`Optimize.EXPERIMENTAL_SPARSITY`) only sparse-encodes the
weights of ops that declare sparse operands (convolutions, fully connected). An `Embedding`
lowers to GATHER, so a table pruned to 90% is written out dense: in a text model that table is
almost the whole file, and pruning it saved nothing an app downloads.

What: every constant 2-D float table read only by GATHERs (directly, or through the DEQUANTIZE
of an fp16 export) that is at least `MIN_ZERO_FRACTION` zeros is re-encoded in TFLite's own
sparse format (rows dense, columns CSR: `array_segments` per row, `array_indices` per
non-zero, the smallest index type that fits; fp32 values) and read through a builtin DENSIFY
op, the same op the converter itself inserts before sparse convolution weights. DENSIFY expands the table once, on the first
invocation, into a persistent buffer: the file shrinks, run-time memory and the lookups' outputs
do not change (the export stage checks outputs against the Keras model as for every file).
"""

from __future__ import annotations

import numpy as np

# Same threshold as the converter's own pass (see tfsparse/export.py): below it the index arrays
# cost more than the zeros they drop.
MIN_ZERO_FRACTION = 0.3

_NUMPY_OF_TFLITE_TYPE = {0: np.float32, 1: np.float16}  # FLOAT32, FLOAT16 (int8 tables: not yet)


def _schema():
    # TensorFlow's generated schema (object API); imported late so that `tfsparse.tflite.inspector`
    # and friends keep working without TensorFlow.
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils
    return fb, flatbuffer_utils


def _index_vector(fb, values: np.ndarray):
    """A SparseIndexVector union (type, value) in the smallest unsigned type holding `values`."""
    top = int(values.max()) if values.size else 0
    if top <= np.iinfo(np.uint8).max:
        vec, kind, dtype = fb.Uint8VectorT(), fb.SparseIndexVector.Uint8Vector, np.uint8
    elif top <= np.iinfo(np.uint16).max:
        vec, kind, dtype = fb.Uint16VectorT(), fb.SparseIndexVector.Uint16Vector, np.uint16
    else:
        vec, kind, dtype = fb.Int32VectorT(), fb.SparseIndexVector.Int32Vector, np.int32
    vec.values = values.astype(dtype)
    return kind, vec


def csr_sparsity(fb, table: np.ndarray):
    """TFLite SparsityParameters and packed non-zero values of a 2-D `table` (rows dense, CSR)."""
    rows, cols = table.shape
    nonzero = table != 0
    segments = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    indices = np.nonzero(nonzero)[1]  # row-major: column ids of each row's non-zeros, in order
    dense_dim = fb.DimensionMetadataT()
    dense_dim.format = fb.DimensionType.DENSE
    dense_dim.denseSize = rows
    csr_dim = fb.DimensionMetadataT()
    csr_dim.format = fb.DimensionType.SPARSE_CSR
    csr_dim.arraySegmentsType, csr_dim.arraySegments = _index_vector(fb, segments)
    csr_dim.arrayIndicesType, csr_dim.arrayIndices = _index_vector(fb, indices)
    sparsity = fb.SparsityParametersT()
    sparsity.traversalOrder = np.array([0, 1], dtype=np.int32)
    sparsity.dimMetadata = [dense_dim, csr_dim]
    return sparsity, table[nonzero]


def _opcode_index(fb, model, builtin: int) -> int:
    """Index of the operator code `builtin` at version 1 (added if the model has none)."""
    for i, code in enumerate(model.operatorCodes):
        if code.builtinCode == builtin and code.version == 1:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _lookup_tables(fb, model, subgraph) -> list[tuple[int, object | None, list]]:
    """Constant lookup tables as (tensor id, the DEQUANTIZE between table and GATHERs in an
    fp16 export or None, the (op, input position) pairs that read the float table)."""
    codes = [c.builtinCode for c in model.operatorCodes]
    producer = {out: op for op in subgraph.operators for out in op.outputs}
    readers: dict[int, list] = {}
    for op in subgraph.operators:
        for position, tensor_id in enumerate(op.inputs):
            readers.setdefault(tensor_id, []).append((op, position))
    found = {}
    for op in subgraph.operators:
        if codes[op.opcodeIndex] != fb.BuiltinOperator.GATHER:
            continue
        read = op.inputs[0]
        source = producer.get(read)
        dequantize = None
        if source is not None and codes[source.opcodeIndex] == fb.BuiltinOperator.DEQUANTIZE:
            tensor_id, dequantize = source.inputs[0], source
        elif source is None:
            tensor_id = read
        else:
            continue  # computed, not a constant table
        # Only tables read by GATHERs alone: a table shared with another op (tied weights)
        # keeps the layout that op expects.
        if any(codes[o.opcodeIndex] != fb.BuiltinOperator.GATHER or p != 0 for o, p in readers.get(read, [])):
            continue
        if dequantize is not None and len(readers.get(tensor_id, [])) != 1:
            continue
        tensor = subgraph.tensors[tensor_id]
        data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
        if (tensor.sparsity is None and data is not None and len(data)
                and tensor.type in _NUMPY_OF_TFLITE_TYPE and len(tensor.shape) == 2):
            found[tensor_id] = (tensor_id, dequantize, readers[read])
    return list(found.values())


def sparsify_lookup_tables(flatbuffer: bytes, min_zero_fraction: float = MIN_ZERO_FRACTION):
    """`flatbuffer` with its pruned lookup tables stored sparse.

    Returns (new bytes, one dict per table considered: name, shape, zero_fraction, dense_bytes,
    sparse_bytes or None when left dense). Returns the input unchanged when nothing qualifies.
    A table is re-encoded only when it is at least `min_zero_fraction` zeros and the encoding
    is smaller than the dense table.
    """
    fb, flatbuffer_utils = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    densify = None
    tables = []
    for subgraph in model.subgraphs:
        for tensor_id, dequantize, readers in _lookup_tables(fb, model, subgraph):
            tensor = subgraph.tensors[tensor_id]
            table = np.frombuffer(bytes(model.buffers[tensor.buffer].data),
                                  dtype=_NUMPY_OF_TFLITE_TYPE[tensor.type]).reshape(tensor.shape)
            zero_fraction = float(np.mean(table == 0))
            entry = {"name": tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name,
                     "shape": [int(d) for d in tensor.shape], "zero_fraction": round(zero_fraction, 5),
                     "dense_bytes": int(table.nbytes), "sparse_bytes": None}
            tables.append(entry)
            if zero_fraction < min_zero_fraction:
                continue
            # An fp16 table is stored sparse with fp32 values (exactly its fp16 values) and read
            # without the DEQUANTIZE: GATHER has no fp16 kernel, a CAST after DENSIFY would
            # convert the whole table on every call, and LiteRT 2.3.0's XNNPACK delegate takes
            # DENSIFY -> DEQUANTIZE for static convolution weights and leaves a GATHER reading
            # it all zeros (measured).
            sparsity, values = csr_sparsity(fb, table.astype(np.float32))
            sparse_bytes = int(values.nbytes + _index_bytes(sparsity))
            if sparse_bytes >= table.nbytes:
                continue
            # The sparse constant keeps the table's buffer; a new dense fp32 tensor (no buffer)
            # takes its place as the GATHERs' input and DENSIFY fills it once.
            model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
            tensor.type = fb.TensorType.FLOAT32
            tensor.sparsity = sparsity
            dense = fb.TensorT()
            dense.shape = np.array(tensor.shape, dtype=np.int32)
            dense.type = fb.TensorType.FLOAT32
            dense.name = (entry["name"] + "/densified").encode()
            dense.buffer = 0  # the empty buffer: computed at run time
            subgraph.tensors.append(dense)
            dense_id = len(subgraph.tensors) - 1
            for op, position in readers:
                op.inputs[position] = dense_id
            if dequantize is not None:
                subgraph.operators.remove(dequantize)  # its output is now read by nobody
            if densify is None:
                densify = _opcode_index(fb, model, fb.BuiltinOperator.DENSIFY)
            op = fb.OperatorT()
            op.opcodeIndex = densify
            op.inputs = np.array([tensor_id], dtype=np.int32)
            op.outputs = np.array([dense_id], dtype=np.int32)
            subgraph.operators.insert(0, op)  # before every reader: keeps execution order valid
            entry["sparse_bytes"] = sparse_bytes
    if densify is None:
        return flatbuffer, tables
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), tables


def _index_bytes(sparsity) -> int:
    return sum(v.values.nbytes for d in sparsity.dimMetadata
               for v in (d.arraySegments, d.arrayIndices) if v is not None)
