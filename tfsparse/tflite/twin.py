"""The dense twin of a sparse `.tflite`: the same weights, zeros included, stored dense.

Why: an emulated arm64 CPU (qemu-user) computes floating point in software, where an
operation on a zero weight costs much less than on a non-zero one. A pruned model stored
dense already runs ~2x faster than the unpruned model under qemu, though not on a phone,
whose FPU does not care. So under emulation the only meaningful speed ratio of a sparse
file is against the *same weights stored dense*: XNNPACK's sparse path versus its dense
path on identical arithmetic. The twin is that file.

What: every sparse-encoded constant (`SparsityParameters`) is replaced by its decoded dense
values in the same tensor; every DENSIFY op is removed and its readers (and any subgraph or
signature output) read the now-dense constant directly; the DENSIFY outputs, read by nobody
any more, are dropped. Everything else (operators, quantization, metadata, signatures) is
unchanged, so the twin computes exactly what the sparse file computes (bit for bit in fp32)
and XNNPACK is never asked for sparse inference. Works on any `.tflite`, not only ours; a
file without a sparse tensor comes back unchanged.

Needs only numpy and flatbuffers (the generated schema in `ai_edge_litert`), no TensorFlow,
so `android_bench` can make twins too. Example::

    from tfsparse.tflite.twin import dense_twin
    twin = dense_twin(open("model.sparse.fp32.tflite", "rb").read())

    python -m tfsparse.twin export/mobilenet_v1/mobilenet_v1.sparse.fp32.tflite twin.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.tflite import flatbuffer

IDENTIFIER = b"TFL3"


def dense_twin(data: bytes, parsed: flatbuffer.Model | None = None) -> bytes:
    """`data` (a .tflite flatbuffer) with every sparse constant stored dense and no DENSIFY.

    `parsed`: `flatbuffer.parse(data)` when the caller has it already (parsing checks the
    whole file and decodes every sparse tensor: once is enough).
    Raises UserError (one line) for a file that cannot be read or rewritten.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    # The hardened reader checks the file and decodes every sparse tensor; the object API
    # below trusts what it has checked.
    parsed = flatbuffer.parse(data) if parsed is None else parsed
    if not has_sparse_tensors(parsed) and not any(
            op.builtin_code == flatbuffer.DENSIFY for sg in parsed.subgraphs for op in sg.operators):
        return bytes(data)
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # noqa: BLE001 - the generated code raises anything on odd input
        raise UserError(f"cannot unpack the flatbuffer: {type(e).__name__}: {e}") from None
    if any(b.offset or b.size for b in model.buffers or []):
        raise UserError("buffers stored outside the flatbuffer (models over 2 GB) are not supported")
    refs = _buffer_references(model)
    for s, (sg, psg) in enumerate(zip(model.subgraphs, parsed.subgraphs)):
        for t, tensor in enumerate(sg.tensors or []):
            if tensor.sparsity is None:
                continue
            dense = psg.tensors[t].dense_values()
            if refs.get(tensor.buffer, 0) > 1:  # a shared buffer keeps its sparse bytes for the others
                model.buffers.append(schema.BufferT())
                tensor.buffer = len(model.buffers) - 1
            model.buffers[tensor.buffer].data = np.frombuffer(np.ascontiguousarray(dense).tobytes(), np.uint8)
            tensor.sparsity = None
        _remove_densify(model, s, sg)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def has_sparse_tensors(model: flatbuffer.Model) -> bool:
    return any(t.sparsity is not None for sg in model.subgraphs for t in sg.tensors)


def twin_if_sparse(data: bytes) -> bytes | None:
    """The dense twin of `data`, or None when it has no sparse tensor (nothing to compare with).
    Raises UserError for a file the reader cannot parse."""
    parsed = flatbuffer.parse(data)
    return dense_twin(data, parsed) if has_sparse_tensors(parsed) else None


def _buffer_references(model) -> dict[int, int]:
    counts: dict[int, int] = {}
    for sg in model.subgraphs:
        for tensor in sg.tensors or []:
            counts[tensor.buffer] = counts.get(tensor.buffer, 0) + 1
    return counts


def _remove_densify(model, index: int, sg) -> None:
    """Drops subgraph `index`'s DENSIFY ops: readers of an output read the op's input instead."""
    codes = [c.builtinCode for c in model.operatorCodes]
    replace: dict[int, int] = {}
    kept = []
    for op in sg.operators or []:
        if codes[op.opcodeIndex] == flatbuffer.DENSIFY:
            if len(op.inputs) != 1 or len(op.outputs) != 1:
                raise UserError(f"a DENSIFY op with {len(op.inputs)} inputs and {len(op.outputs)} outputs")
            replace[int(op.outputs[0])] = int(op.inputs[0])
        else:
            kept.append(op)
    if not replace:
        return
    sg.operators = kept

    def follow(t: int) -> int:
        seen = 0
        while t in replace:  # a DENSIFY of a DENSIFY output: follow to the constant
            t, seen = replace[t], seen + 1
            if seen > len(replace):
                raise UserError("DENSIFY ops form a cycle")
        return t

    for op in kept:
        op.inputs = np.array([follow(int(t)) for t in op.inputs], dtype=np.int32)
    sg.outputs = np.array([follow(int(t)) for t in sg.outputs], dtype=np.int32)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == index:
            for tm in sig.outputs or []:
                tm.tensorIndex = follow(tm.tensorIndex)
    _drop_unused_tensors(model, index, sg, set(replace))


def _drop_unused_tensors(model, index: int, sg, candidates: set[int]) -> None:
    """Removes the tensors in `candidates` that nothing refers to any more, renumbering the rest."""
    used = {int(t) for op in sg.operators for field in (op.inputs, op.outputs, op.intermediates)
            if field is not None for t in field}
    used |= {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
    drop = candidates - used
    if not drop:
        return
    new_index, kept = {}, []
    for t, tensor in enumerate(sg.tensors):
        if t not in drop:
            new_index[t] = len(kept)
            kept.append(tensor)
    sg.tensors = kept

    def renumber(values):
        if values is None:
            return None
        return np.array([new_index[int(t)] if t >= 0 else int(t) for t in values], dtype=np.int32)

    for op in sg.operators:
        op.inputs, op.outputs, op.intermediates = (renumber(op.inputs), renumber(op.outputs),
                                                   renumber(op.intermediates))
    sg.inputs, sg.outputs = renumber(sg.inputs), renumber(sg.outputs)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == index:
            for tm in [*(sig.inputs or []), *(sig.outputs or [])]:
                tm.tensorIndex = new_index[tm.tensorIndex]


def twin_file(src: str | Path, dst: str | Path) -> Path:
    """Writes the dense twin of the .tflite file `src` to `dst` (atomically)."""
    from tfsparse.atomic import write_bytes

    src = Path(src)
    try:
        data = src.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {src}: {e.strerror or e}") from None
    return write_bytes(dst, dense_twin(data))


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfsparse.twin", description=__doc__.split("\n\n")[0])
    parser.add_argument("sparse", metavar="SPARSE.tflite")
    parser.add_argument("out", metavar="TWIN.tflite")
    args = parser.parse_args(argv)
    if Path(args.out).resolve() == Path(args.sparse).resolve():
        raise UserError(f"{args.out}: the twin must not overwrite the sparse file")
    twin_file(args.sparse, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.twin", main))
