"""Inspect a .tflite: is it really sparse, and will XNNPACK run it sparse on a phone?

    python -m tfsparse.inspect export/mobilenet_v1/mobilenet_v1.sparse.fp32.tflite
    python -m tfsparse.inspect model.tflite --json
    python -m tfsparse.inspect model.tflite --target x86-avx

Prints operators, a tensor summary, every sparse tensor's encoding (dimension formats,
block map, index width, stored values, zero fraction of the densified tensor, and the block
structure of its zeros), raw and gzip sizes, metadata (ours: labels, normalisation,
sparsity figures) and the XNNPACK analysis (`tfsparse.tflite.xnnpack`): each channel-first
cluster, its 1x1 zero fraction, the verdict and every reason. No TensorFlow needed.

Library use (the export stage fills its manifest from it):

    report = inspect_bytes(data)            # the --json document
    manifest_summary(report)                # {"sparse_tensors", "densify_ops", "xnnpack": {...}}
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.tflite import xnnpack
from tfsparse.tflite.flatbuffer import Model, Subgraph, Tensor, metadata_text, parse

PROG = "tfsparse.inspect"


def block_structure(weights: np.ndarray, out_axis: int = 0) -> dict:
    """The structure in a weight tensor's zeros.

    `output_channel_block`: the largest b in (8, 4, 2, 1) such that non-zeros come in aligned
    groups of b output channels for the same input position (what Fast Sparse ConvNets' and
    XNNPACK's 2- and 4-channel SpMM kernels exploit); 1 when there are no zeros. `n_m`: "N:4" when every group of 4
    consecutive input-channel weights holds at most N <= 2 non-zeros (e.g. TF-MOT's 2:4), else None.
    """
    nonzero = np.moveaxis(np.asarray(weights) != 0, out_axis, 0)
    rows = nonzero.reshape(nonzero.shape[0], -1)  # [output channels, everything else]
    block = 1
    for b in (8, 4, 2):
        if rows.all() or not rows.any():
            break  # no zeros (or nothing but zeros): no structure to report
        if rows.shape[0] % b == 0:
            grouped = rows.reshape(rows.shape[0] // b, b, -1)
            if np.all(grouped == grouped[:, :1, :]):
                block = b
                break
    n_m = None
    inputs = weights.shape[-1] if weights.ndim >= 2 and out_axis != weights.ndim - 1 else 0
    if inputs and inputs % 4 == 0 and rows.any():
        most = int(nonzero.reshape(-1, 4).sum(axis=1).max())
        if most <= 2:
            n_m = f"{most}:4"
    return {"output_channel_block": block, "n_m": n_m}


def _reader_of(sg: Subgraph, tensor: int, consumers: dict) -> list:
    """The ops that use a sparse tensor's values, looking through DENSIFY and DEQUANTIZE."""
    out, frontier = [], [tensor]
    for _ in range(4):
        nxt = []
        for t in frontier:
            for i in consumers.get(t, []):
                op = sg.operators[i]
                if op.opcode in ("DENSIFY", "DEQUANTIZE"):
                    nxt.extend(op.outputs)
                else:
                    out.append(op)
        frontier = nxt
    return out


def _sparse_tensor(sg: Subgraph, t: Tensor, consumers: dict) -> dict:
    enc = t.sparsity
    dense = t.dense_values()
    readers = _reader_of(sg, t.index, consumers)
    out_axis = 3 if any(op.opcode == "DEPTHWISE_CONV_2D" for op in readers) and dense.ndim == 4 else 0
    block_shape = enc.block_shape(len(t.shape))
    structure = block_structure(dense, out_axis) if dense.ndim >= 2 else {"output_channel_block": 1, "n_m": None}
    return {"index": t.index, "name": t.name, "shape": t.shape, "dtype": t.dtype,
            "used_by": [f"{op.opcode} #{op.index}" for op in readers],
            "traversal_order": enc.traversal_order, "block_map": enc.block_map,
            "dim_formats": enc.dim_formats, "index_width": sorted({w for w in enc.index_widths if w}),
            "stored_values": int(t.values().size), "dense_elements": int(dense.size),
            "zero_fraction": round(float(np.count_nonzero(dense == 0)) / max(dense.size, 1), 4),
            "bytes": len(t.data or b""),
            "block_structure": {"converter_block": block_shape if any(b > 1 for b in block_shape) else None,
                                **structure}}


def _tensor_summary(sg: Subgraph) -> dict:
    constants = [t for t in sg.tensors if t.is_constant]
    return {"count": len(sg.tensors), "constant": len(constants),
            "constant_bytes": sum(len(t.data) for t in constants),
            "by_dtype": dict(Counter(t.dtype for t in sg.tensors)),
            "inputs": [{"name": sg.tensors[i].name, "shape": sg.tensors[i].shape, "dtype": sg.tensors[i].dtype}
                       for i in sg.inputs],
            "outputs": [{"name": sg.tensors[i].name, "shape": sg.tensors[i].shape, "dtype": sg.tensors[i].dtype}
                        for i in sg.outputs]}


def inspect_model(model: Model, data: bytes, target: str = "arm64") -> dict:
    sg = model.main
    consumers = sg.consumers()
    try:
        sparse = [_sparse_tensor(sg, t, consumers) for t in sg.tensors if t.sparsity is not None]
        analysis = xnnpack.analyze(model, target)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a structurally odd file must still end in one line
        raise UserError(f"cannot analyse this model ({type(e).__name__}: {e})") from None
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9, mtime=0)),
            "ops": [{"index": op.index, "opcode": op.opcode, "version": op.version, "inputs": op.inputs,
                     "outputs": op.outputs, "options": op.options,
                     **({"custom_code": op.custom_code} if op.custom_code else {})} for op in sg.operators],
            "tensors": _tensor_summary(sg),
            "sparse_tensors": sparse,
            "densify_ops": sum(op.opcode == "DENSIFY" for op in sg.operators),
            "signatures": model.signatures,
            "subgraphs": len(model.subgraphs),
            "metadata": {k: metadata_text(k, v) for k, v in model.metadata.items()},
            "xnnpack": analysis}


def inspect_bytes(data: bytes, target: str = "arm64") -> dict:
    """The full report for the bytes of a .tflite (UserError if unreadable)."""
    if target not in xnnpack.TARGETS:
        raise UserError(f"unknown target {target!r} (choose from {', '.join(xnnpack.TARGETS)})")
    return inspect_model(parse(data), data, target)


def manifest_summary(report: dict) -> dict:
    """The export manifest's fields: sparse tensor count, DENSIFY count, XNNPACK verdict and reasons."""
    x = report["xnnpack"]
    return {"sparse_tensors": len(report["sparse_tensors"]), "densify_ops": report["densify_ops"],
            "xnnpack": {"sparse_clusters": x["sparse_clusters"],
                        "verdict": "sparse" if x["sparse_clusters"] else "dense",
                        "reasons": x["reasons"] + [f["message"] for f in x["findings"] if f["code"] in
                                                   ("xnnpack_bug_a", "xnnpack_bug_b", "xnnpack_bug_b_harmless",
                                                    "dense_head_in_cluster")]}}


def inspect_file(path: str | Path, target: str = "arm64") -> dict:
    """Reads and inspects a file; every problem is a UserError naming it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .tflite file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        report = inspect_bytes(data, target)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return {"file": str(path), **report}


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def format_report(r: dict) -> str:
    """The human-readable report."""
    lines = [f"{r.get('file', '<bytes>')}: {_kb(r['bytes'])} raw, {_kb(r['gzip_bytes'])} gzip",
             "", f"Operators ({len(r['ops'])}):"]
    for op in r["ops"]:
        opts = ", ".join(f"{k}={v}" for k, v in op["options"].items()
                         if k in ("padding", "strideH", "strideW", "fusedActivationFunction", "keepDims",
                                  "depthMultiplier", "dilationHFactor", "dilationWFactor", "keepNumDims"))
        lines.append(f"  #{op['index']:<3} {op['opcode']:<22} v{op['version']}  in {op['inputs']} out {op['outputs']}"
                     + (f"  ({opts})" if opts else ""))
    t = r["tensors"]
    lines += ["", f"Tensors: {t['count']} ({t['constant']} constant, {_kb(t['constant_bytes'])}), "
              + ", ".join(f"{k} {v}" for k, v in t["by_dtype"].items())]
    for kind in ("inputs", "outputs"):
        lines += [f"  {kind[:-1]} {x['name']} {x['shape']} {x['dtype']}" for x in t[kind]]
    lines += ["", f"Sparse tensors: {len(r['sparse_tensors'])}, DENSIFY ops: {r['densify_ops']}"]
    for s in r["sparse_tensors"]:
        b = s["block_structure"]
        lines.append(f"  #{s['index']} {s['name']} {s['shape']} {s['dtype']} -> {', '.join(s['used_by']) or '-'}")
        lines.append(f"      formats {s['dim_formats']} order {s['traversal_order']} block_map {s['block_map']} "
                     f"index {'/'.join(s['index_width']) or '-'}")
        lines.append(f"      {s['stored_values']} of {s['dense_elements']} values stored, "
                     f"{100 * s['zero_fraction']:.1f}% zero; blocks: converter {b['converter_block'] or 'none'}, "
                     f"output-channel block {b['output_channel_block']}, N:M {b['n_m'] or 'none'}")
    lines += ["", "Signatures:"] + ([f"  {s['key']}: inputs {list(s['inputs'])} outputs {list(s['outputs'])}"
                                     for s in r["signatures"]] or ["  none"])
    lines += ["", "Metadata:"]
    for k, v in r["metadata"].items():
        lines.append(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    x = r["xnnpack"]
    verdict = "SPARSE" if x["sparse_clusters"] else "DENSE"
    lines += ["", f"XNNPACK ({x['target']}): {verdict}, {x['sparse_clusters']} sparse cluster(s)"]
    for i, c in enumerate(x["clusters"]):
        zf = "n/a" if c["zero_fraction"] is None else f"{100 * c['zero_fraction']:.1f}%"
        nodes = " ".join(f"#{n['op']}" for n in c["nodes"])
        lines.append(f"  cluster {i}: {'sparse' if c['sparse'] else 'dense'}, 1x1 zeros {zf}, nodes {nodes}")
        lines += [f"    - {reason}" for reason in c["reasons"]]
    if x["warnings"]:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in x["warnings"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help=".tflite file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--target", default="arm64", choices=xnnpack.TARGETS,
                        help="CPU the XNNPACK prediction is for (default arm64)")
    args = parser.parse_args(argv)
    report = inspect_file(args.file, args.target)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
