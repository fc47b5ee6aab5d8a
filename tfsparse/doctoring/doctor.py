"""`tfsparse doctor MODEL [--fix OUT]`: is a Keras model ready for XNNPACK's sparse path, and make it so.

    tfsparse doctor my_model.keras                       # what blocks the sparse path, where, why
    tfsparse doctor my_model.keras --fix fixed.keras     # rewrite it; train with [model] from = "fixed.keras"
    tfsparse doctor my_model.keras --json

    import tfsparse
    report = tfsparse.doctor(tf.keras.applications.MobileNetV2((96, 96, 3), weights=None, classes=10))
    print(report)                      # changes (exact / changes numerics), blockers, prediction
    report.fixed_model                 # the rewritten tf_keras model
    report.after.sparse_share          # share of the 1x1-conv work XNNPACK will run sparse

What it does, before any training:

1. Rewrites what keeps the model off XNNPACK's sparse (channel-first) path
   (`tfsparse.doctoring.rewrite`: explicit symmetric padding, zero biases, pooled Dense heads,
   input preprocessing moved to the file's metadata; BatchNormalization folded only with
   `--fold-batchnorm`, since the converter folds it anyway and training needs it). Every change is
   listed with its layer and marked *exact* or *changes numerics*; the exact ones are checked
   here on a seeded batch (they alone, then all together), so "exact" is measured, not assumed.
2. Checks TF-MOT's `PruneForLatencyOnXNNPack` accepts the result (the policy `[pruning] policy =
   "xnnpack"` trains with).
3. Predicts which share of the 1x1-convolution work (multiply-accumulates) XNNPACK will run
   sparse: the model with its 1x1 kernels magnitude-pruned to a placeholder 90% is converted
   with tfsparse's own converter and read by the XNNPACK rules port (`tfsparse.tflite.xnnpack`,
   the inspector's): the same rules, not a second copy. What stays dense is named, with the
   rule's reason.

The fixed `.keras` carries the doctor's record (`tfsparse.doctoring.record`): `tfsparse train`
feeds the moved preprocessing, `tfsparse export` writes it into the `.tflite` metadata.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsparse import atomic
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.errors import ConversionError, TfsparseError
from tfsparse.errors import first_line as _first_line

PLACEHOLDER_SPARSITY = 0.9
RELATIVE_TOLERANCE = 1e-4  # of the largest output: float rounding of folded BatchNorm, nothing more

# Why each rewrite was needed: XNNPACK's rule behind it (src/subgraph.c, xnn_check_nchw_compatibility).
WHY = {
    "explicit padding": "XNNPACK's channel-first stem and depthwise nodes need padding k//2 on every side; "
                        "TF pads SAME at stride 2 as (0, 1) and XNNPACK refuses a stride-2 node with the SAME flag",
    "symmetric padding": "XNNPACK's channel-first depthwise nodes need padding k//2 on every side",
    "BatchNormalization folded": "TF-MOT must prune the kernel that ships (the converter folds BN anyway)",
    "zero bias added": "LiteRT's XNNPACK delegate does not take a CONV_2D without bias",
    "pooled head": "the cluster must end in a global average pool; a 1x1 conv after MEAN(keep_dims) is pulled "
                   "into it and LiteRT 2.3.0 fails to allocate such a model",
    "4D constant": "XNNPACK runs ADD/MUL channel-first only when both operands are 4D (a scalar constant is rank 0)",
    "scalar folded into bias": "the same reason as 4D constant, and a [1, 1, 1, 1] constant right after a conv breaks TensorFlow's compiled training step (grappler folds it into the BiasAdd)",
    "input preprocessing moved to the file's metadata": "the channel-first cluster must start at the 3x3 "
                                                        "stride-2 stem conv reading the graph input",
}


@dataclass
class Prediction:
    """What XNNPACK will do with the model at a placeholder sparsity (`PLACEHOLDER_SPARSITY`)."""

    sparse_share: float          # of the 1x1-conv multiply-accumulates, in sparse clusters
    sparse_macs: int
    total_macs: int
    sparse_clusters: int
    dense_1x1: list[str]         # 1x1 conv layers outside every sparse cluster
    reasons: list[str]           # the rules port's reasons, with layer names

    @property
    def verdict(self) -> str:
        return "sparse" if self.sparse_clusters else "dense"

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "sparse_share": round(self.sparse_share, 4), "sparse_macs": self.sparse_macs,
                "total_1x1_macs": self.total_macs, "sparse_clusters": self.sparse_clusters,
                "dense_1x1_layers": self.dense_1x1, "reasons": self.reasons}


@dataclass
class DoctorReport:
    """The doctor's findings; `fixed_model` is the rewritten tf_keras model (not in `to_json`)."""

    source: str
    changes: list = field(default_factory=list)        # [rewrite.Change]
    exact_max_diff: float = 0.0      # the exact rewrites alone vs the original, max abs output difference
    fixed_max_diff: float = 0.0      # every rewrite vs the original
    input_preprocessing: dict | None = None
    policy_before: str | None = None  # TF-MOT's PruneForLatencyOnXNNPack: None = accepted, else why not
    policy_after: str | None = None
    before: Prediction | None = None
    after: Prediction | None = None
    fixed_model: Any = None
    batchnorm_kept: int = 0  # BatchNormalization layers left for training (the converter folds them)

    @property
    def ready(self) -> bool:
        """The original model already takes XNNPACK's sparse path (nothing to rewrite)."""
        return not self.changes and self.policy_before is None and bool(self.before and self.before.sparse_clusters)

    def record(self) -> dict:
        """What `--fix` stores in the fixed `.keras` (`tfsparse.doctoring.record`)."""
        return {"source": self.source, "changes": [c.to_json() for c in self.changes],
                "input_preprocessing": self.input_preprocessing}

    def to_json(self) -> dict:
        return {"source": self.source, "changes": [{**c.to_json(), "why": WHY.get(c.action, "")} for c in self.changes],
                "exact_max_abs_diff": self.exact_max_diff, "fixed_max_abs_diff": self.fixed_max_diff,
                "input_preprocessing": self.input_preprocessing, "batchnorm_kept": self.batchnorm_kept,
                "tfmot_xnnpack_policy": {"before": self.policy_before or "accepted",
                                         "after": self.policy_after or "accepted"},
                "prediction": {"before": self.before and self.before.to_json(),
                               "after": self.after and self.after.to_json()},
                "placeholder_sparsity": PLACEHOLDER_SPARSITY}

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.changes)} change(s) for XNNPACK's sparse path"]
        groups: dict = {}
        for c in self.changes:
            groups.setdefault((c.action, c.exact), []).append(c)
        for (action, exact), members in groups.items():
            tag = "exact" if exact else "changes numerics"
            if len(members) <= 3:
                lines += [f"  [{tag}] {c.layer}: {c.detail}" for c in members]
            else:  # 52 folded BatchNorms are one line; --json lists each
                names = ", ".join(c.layer for c in members[:4])
                lines.append(f"  [{tag}] {action} x{len(members)}: {names}, ... ({members[0].detail})")
        if self.changes:
            whys = dict.fromkeys(c.action for c in self.changes)
            lines.append("  why:")
            lines += [f"    {a}: {WHY[a]}" for a in whys if a in WHY]
            lines.append(f"  checked on a seeded batch: exact changes max abs output diff {self.exact_max_diff:.3g}; "
                         f"all changes {self.fixed_max_diff:.3g}"
                         + (" (fine-tuning recovers the moved sampling grid)"
                            if any(not c.exact for c in self.changes) else ""))
        if self.batchnorm_kept:
            lines.append(f"  BatchNormalization kept ({self.batchnorm_kept} layers): the converter folds each into its "
                         "conv at export (zeros stay zeros), and fine-tuning and pruning train better with it "
                         "(--fold-batchnorm folds them now)")
        if self.input_preprocessing:
            p = self.input_preprocessing
            lines.append(f"  input preprocessing moved out of the graph: input = x * {_short(p['scale'])} + "
                         f"{_short(p['offset'])} (train and export apply it; stored in the .tflite metadata)")
        lines.append(f"TF-MOT PruneForLatencyOnXNNPack: before {_policy(self.policy_before)}; "
                     f"after {_policy(self.policy_after)}")
        for label, pred in (("as it is", self.before), ("after --fix", self.after)):
            if pred is None:
                continue
            lines.append(f"XNNPACK prediction {label} (1x1 convs pruned to a placeholder "
                         f"{PLACEHOLDER_SPARSITY:.0%}): {pred.verdict}, {pred.sparse_share:.1%} of the 1x1-conv work "
                         f"sparse ({pred.sparse_macs:,} of {pred.total_macs:,} MACs)")
            if pred.dense_1x1:
                lines.append(f"  1x1 convs left dense: {', '.join(pred.dense_1x1[:8])}"
                             + (f" and {len(pred.dense_1x1) - 8} more" if len(pred.dense_1x1) > 8 else ""))
            if pred.verdict == "dense" or pred.dense_1x1:
                lines += [f"  - {r}" for r in pred.reasons[:6]]
        return "\n".join(lines)


def _policy(message: str | None) -> str:
    return "accepted" if message is None else f"rejected ({message})"


def _short(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    return f"{value:.6g}"


# ---- the steps ---------------------------------------------------------------------------------


def doctor(model, source: str = "model", *, predict: bool = True, fold_batchnorm: bool = False) -> DoctorReport:
    """Rewrites `model` (a tf_keras model) for XNNPACK's sparse path; see the module docstring.

    `fold_batchnorm`: fold BatchNormalization into the convolutions now (for a model that will
    not be trained again); by default BN stays for fine-tuning and pruning, and the converter
    folds it at export."""
    import tensorflow as tf

    from tfsparse.doctoring import rewrite

    if not isinstance(model, tf.keras.Model) or not (model._is_graph_network or isinstance(model, tf.keras.Sequential)):
        raise UserError(f"{source}: only Sequential and functional tf_keras models can be rewritten")
    try:
        exact_model, _, moved = rewrite.rewrite(model, numeric=False, fold=fold_batchnorm)
        fixed, changes, moved = rewrite.rewrite(model, fold=fold_batchnorm)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - Keras rejects a rebuilt config in many ways
        raise TfsparseError(f"{source}: the doctor could not rebuild the model: {_first_line(e)}") from None
    report = DoctorReport(source, changes, input_preprocessing=moved, fixed_model=fixed,
                          batchnorm_kept=sum(isinstance(layer, tf.keras.layers.BatchNormalization)
                                             for layer in fixed.layers))
    x, x_fixed = _batch(model, moved)
    reference = np.asarray(model(x, training=False))
    tolerance = RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    report.exact_max_diff = _max_diff(reference, exact_model(x_fixed, training=False))
    report.fixed_max_diff = _max_diff(reference, fixed(x_fixed, training=False))
    if report.exact_max_diff > tolerance:
        raise TfsparseError(f"{source}: the doctor's exact rewrites changed the outputs by {report.exact_max_diff:.3g} "
                            f"(allowed {tolerance:.3g}); please report this model")
    if all(c.exact for c in changes) and report.fixed_max_diff > tolerance:
        raise TfsparseError(f"{source}: rewrites marked exact changed the outputs by {report.fixed_max_diff:.3g}")
    report.policy_before = policy_verdict(model)
    report.policy_after = policy_verdict(fixed)
    if predict:
        report.before = prediction(model)
        report.after = prediction(fixed) if changes else report.before
    return report


def _batch(model, moved):
    """A seeded batch (pixels 0-255 when the model scaled its own input) and the fixed model's input."""
    rng = np.random.default_rng(0)
    shape = [2, *[d or 32 for d in model.input_shape[1:]]]
    x = rng.uniform(0, 255, shape).astype(np.float32) if moved else rng.standard_normal(shape).astype(np.float32)
    if not moved:
        return x, x
    scale = np.asarray(moved["scale"], np.float32)
    offset = np.asarray(moved["offset"], np.float32)
    return x, (x * scale + offset).astype(np.float32)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def policy_verdict(model) -> str | None:
    """None if TF-MOT's PruneForLatencyOnXNNPack accepts `model`, else its one-line reason."""
    from tfsparse.pruning.magnitude import XNNPackPolicy

    try:
        XNNPackPolicy().ensure_model_supports_pruning(model)
    except UserError as e:
        return str(e).split(": ", 1)[-1]
    return None


def prediction(model, sparsity: float = PLACEHOLDER_SPARSITY) -> Prediction:
    """Converts `model` with its 1x1 kernels magnitude-pruned to `sparsity`; the rules port says the rest."""
    import tensorflow as tf

    from tfsparse.exporting.converter import convert
    from tfsparse.pruning.magnitude import zero_smallest
    from tfsparse.tflite import flatbuffer, xnnpack

    probe = tf.keras.models.clone_model(model)
    probe.set_weights(model.get_weights())
    pointwise = [layer.name for layer in probe.layers if type(layer) is tf.keras.layers.Conv2D
                 and tuple(layer.kernel_size) == (1, 1)]
    zero_smallest(probe, pointwise, sparsity)
    try:
        parsed = flatbuffer.parse(convert(probe, "fp32"))
    except ConversionError as e:  # the converter's message carries every MLIR location: keep its error
        errors = re.findall(r"error: ([^\n]+?)(?= \S+:\d+:\d+: |$)", str(e))
        raise ConversionError(f"the XNNPACK prediction needs a TFLite conversion, which failed: "
                              f"{(errors or [str(e)[:300]])[-1][:300]}") from None
    analysis = xnnpack.analyze(parsed)
    sg = parsed.main
    sparse_ops = {n["op"] for c in analysis["clusters"] if c["sparse"] for n in c["nodes"]}
    # Fused operators are named after every layer they cover: name the convolution first.
    convs = [layer.name for layer in probe.layers if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D,
                                                                           tf.keras.layers.Dense))]
    names = sorted(convs, key=len, reverse=True) + sorted((layer.name for layer in probe.layers), key=len, reverse=True)
    total = sparse = 0
    dense_layers = []
    for op in sg.operators:
        if op.opcode != "CONV_2D" or len(op.inputs) < 2:
            continue
        filt = sg.tensors[op.inputs[1]].shape
        if len(filt) != 4 or filt[1:3] != [1, 1]:
            continue
        out = sg.tensors[op.outputs[0]].shape
        macs = int(np.prod(out[1:3])) * filt[0] * filt[3]
        total += macs
        if op.index in sparse_ops:
            sparse += macs
        else:
            dense_layers.append(_layer_of(sg, op, names))
    reasons = [_with_layer(sg, r, names) for r in analysis["reasons"]]
    return Prediction(sparse / total if total else 0.0, sparse, total, analysis["sparse_clusters"],
                      dense_layers, list(dict.fromkeys(reasons)))


def _layer_of(sg, op, names) -> str:
    """The Keras layer an operator came from, found in its output tensor's name."""
    tensor = sg.tensors[op.outputs[0]].name
    for name in names:  # longest first: "block_1_expand" before "block_1"
        if re.search(rf"(^|[/;]){re.escape(name)}(/|;|$)", tensor):
            return name
    return tensor.split(";")[0]


def _with_layer(sg, reason: str, names) -> str:
    def label(m):
        index = int(m.group(2))
        if index >= len(sg.operators):
            return m.group(0)
        return f"{m.group(0)} (layer {_layer_of(sg, sg.operators[index], names)!r})"

    return re.sub(r"([A-Z][A-Z_0-9]*(?: \([^)]*\))?) #(\d+)", label, reason)


def save_fixed(report: DoctorReport, out) -> Path:
    """Writes the fixed model to `out` (.keras) with the doctor's record, atomically."""
    from tfsparse.doctoring import record

    out = Path(out)
    if out.suffix != ".keras":
        raise UserError(f"--fix {out}: the fixed model is written as a .keras file (it carries the doctor's record)")
    with atomic.atomic_path(out) as tmp:
        report.fixed_model.save(tmp)
        record.add(tmp, report.record())
    return out


# ---- the command ------------------------------------------------------------------------------


def parse_args(argv):
    parser = ArgumentParser(prog="python -m tfsparse.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a saved Keras model: tf_keras .keras/.h5/SavedModel or a Keras 3 .keras")
    parser.add_argument("--fix", metavar="OUT.keras", help="write the rewritten model here (atomically)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--fold-batchnorm", action="store_true",
                        help="fold BatchNormalization into the convolutions now (default: keep it for training; "
                             "the converter folds it at export)")
    parser.add_argument("--no-predict", action="store_true",
                        help="skip the XNNPACK prediction (two TFLite conversions)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.fix and Path(args.fix).suffix != ".keras":
        raise UserError(f"--fix {args.fix}: the fixed model is written as a .keras file (it carries the doctor's record)")
    from tfsparse.training.user_model import load_model

    model, _ = load_model(args.model, "doctor")
    report = doctor(model, args.model, predict=not args.no_predict, fold_batchnorm=args.fold_batchnorm)
    if args.fix:
        save_fixed(report, args.fix)
    print(json.dumps(report.to_json(), indent=2) if args.json else str(report))
    if args.fix and not args.json:
        print(f"fixed model -> {args.fix}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.doctor", main))
