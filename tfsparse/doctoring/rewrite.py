"""Keras graph rewrites that put a model on XNNPACK's sparse (channel-first) path.

XNNPACK runs a model sparse only inside a channel-first cluster that starts at a 3x3 stride-2
convolution on 3 channels padded exactly 1 on every side, holds only 1x1 convolutions,
3x3/5x5 depthwise convolutions padded symmetrically (1 or 2), element-wise ops and global
pooling, and ends at a global average pool (`src/subgraph.c`, `xnn_check_nchw_compatibility`;
ported in `tfsparse.tflite.xnnpack`). keras.applications and most user models miss it by a
few layers; each rewrite here is one of them:

| rewrite | why | numerics |
|---|---|---|
| Rescaling / Normalization at the input -> removed, recorded | the cluster must start at the stem conv; the app applies it (file metadata) | exact |
| BatchNormalization -> folded into the conv / depthwise before it, only with `rewrite(fold=True)` (kept by default: the converter folds it at export, and training needs it) | TF-MOT then prunes the kernel that ships | exact (float rounding) |
| conv without bias and no BatchNormalization after it -> zero bias | LiteRT's delegate takes no CONV_2D without bias | exact |
| a scalar added right after a conv -> that conv's bias; other scalars on pooled maps -> [1, 1, 1, 1] | XNNPACK's ADD/MUL need 4D operands | exact |
| `GlobalAveragePooling2D(keepdims=True)` + 1x1 conv / Reshape / Flatten head -> `GlobalAveragePooling2D()` + `Dense` | a 1x1 conv after MEAN(keepdims) is pulled into the cluster and LiteRT 2.3.0 fails to allocate it | exact |
| `Flatten` (H x W > 1) + Dense -> `GlobalAveragePooling2D` + Dense (kernel summed over positions) | the cluster must end in a global pool | changes numerics |
| SAME stride-2 3x3 conv / depthwise -> `ZeroPadding2D(1)` + `valid` (2 for 5x5) | TF pads SAME at stride 2 as (0, 1); XNNPACK needs 1 on every side and refuses the SAME flag | exact on odd sizes, else changes numerics (the grid moves one pixel) |
| keras' `correct_pad` ZeroPadding2D((0, 1), (0, 1)) -> symmetric | same rule | changes numerics on even sizes |

The rewrites edit the functional config (layer list and inbound nodes) and rebuild it with
`Model.from_config`, then copy every weight by layer name: no library rewrites Keras graphs
(TF-MOT's `clone_model` can replace a layer, not remove or insert one). `rewrite()` returns
the new model and a list of `Change`s; `tfsparse.doctoring.doctor` checks the exact ones
numerically.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

CONVS = ("Conv2D", "DepthwiseConv2D")
# Layers a classification head may hold after global pooling (element-wise on [batch, C]).
HEAD_LAYERS = ("Dropout", "ReLU", "Activation", "TFOpLambda", "Multiply", "Add", "Softmax", "Dense", "Conv2D",
               "Reshape", "Flatten", "BatchNormalization", "LeakyReLU")


@dataclass
class Change:
    """One rewrite: on which layer, what, and whether outputs stay the same."""

    layer: str
    action: str
    detail: str
    exact: bool

    def to_json(self) -> dict:
        return {"layer": self.layer, "action": self.action, "detail": self.detail,
                "numerics": "exact" if self.exact else "changes numerics"}


class Graph:
    """A functional model's config, editable by layer name, plus the weights to put back."""

    def __init__(self, model):
        import tensorflow as tf

        if isinstance(model, tf.keras.Sequential):
            model = tf.keras.Model(model.inputs, model.outputs, name=model.name)
        self.config = copy.deepcopy(model.get_config())
        self.live = {layer.name: layer for layer in model.layers}
        self.weights = {layer.name: layer.get_weights() for layer in model.layers}
        self.changes: list[Change] = []
        self.preprocessing: dict | None = None  # the input transform moved out of the graph
        self.head: set[str] = set()  # layers of a pooled head, now on [batch, channels]

    # -- structure
    @property
    def layers(self) -> list[dict]:
        return self.config["layers"]

    def get(self, name: str) -> dict:
        return next(entry for entry in self.layers if entry["name"] == name)

    def producers(self, name: str) -> list[str]:
        return list(dict.fromkeys(_refs(self.get(name)["inbound_nodes"])))

    def consumers(self, name: str) -> list[str]:
        out = [e["name"] for e in self.layers if name in _refs(e["inbound_nodes"])]
        if name in _refs(self.config["output_layers"]):
            out.append("<output>")
        return out

    def redirect(self, old: str, new: str) -> None:
        for entry in self.layers:
            entry["inbound_nodes"] = _renamed(entry["inbound_nodes"], old, new)
        self.config["output_layers"] = _renamed(self.config["output_layers"], old, new)

    def remove(self, name: str) -> None:
        """Drops a one-input layer; its consumers read its input instead."""
        (producer,) = self.producers(name)
        self.redirect(name, producer)
        self.config["layers"] = [e for e in self.layers if e["name"] != name]

    def insert_before(self, name: str, entry: dict) -> None:
        target = self.get(name)
        entry["inbound_nodes"] = target["inbound_nodes"]
        target["inbound_nodes"] = [[[entry["name"], 0, 0, {}]]]
        index = self.layers.index(target)
        self.layers.insert(index, entry)

    def input_shape(self, name: str):
        shape = self.live[name].input_shape
        return shape[0] if isinstance(shape, list) else shape

    def record(self, layer, action, detail, exact):
        self.changes.append(Change(layer, action, detail, exact))

    # -- build
    def build(self):
        import tensorflow as tf

        model = tf.keras.Model.from_config(self.config)
        for layer in model.layers:
            weights = self.weights.get(layer.name)
            if weights:
                layer.set_weights(weights)
        return model


def _refs(nodes) -> list[str]:
    """Layer names referenced by a config's inbound nodes ([name, node, tensor, kwargs] anywhere)."""
    out = []
    if isinstance(nodes, (list, tuple)):
        if len(nodes) >= 3 and isinstance(nodes[0], str) and isinstance(nodes[1], int) and isinstance(nodes[2], int):
            out.append(nodes[0])
            for rest in nodes[3:]:
                out.extend(_refs(rest))
        else:
            for n in nodes:
                out.extend(_refs(n))
    elif isinstance(nodes, dict):
        for v in nodes.values():
            out.extend(_refs(v))
    return out


def _renamed(nodes, old: str, new: str):
    if isinstance(nodes, (list, tuple)):
        if len(nodes) >= 3 and isinstance(nodes[0], str) and isinstance(nodes[1], int) and isinstance(nodes[2], int):
            head = [new if nodes[0] == old else nodes[0], nodes[1], nodes[2]]
            return head + [_renamed(n, old, new) for n in nodes[3:]]
        return [_renamed(n, old, new) for n in nodes]
    if isinstance(nodes, dict):
        return {k: _renamed(v, old, new) for k, v in nodes.items()}
    return nodes


def _pairs(value) -> tuple:
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)


# ---- the rewrites, in the order `rewrite` applies them ---------------------------------------


def move_input_preprocessing(g: Graph) -> None:
    """Rescaling / Normalization layers right after an input leave the graph (recorded)."""
    scale, offset, names = np.float64(1.0), np.float64(0.0), []
    for ref in _refs(g.config["input_layers"]):
        current = ref
        while True:
            users = g.consumers(current)
            if len(users) != 1 or users[0] == "<output>":
                break
            entry = g.get(users[0])
            layer = g.live[entry["name"]]
            if entry["class_name"] == "Rescaling":
                s = np.asarray(layer.scale, dtype=np.float64)
                o = np.asarray(layer.offset, dtype=np.float64)
            elif entry["class_name"] == "Normalization" and not getattr(layer, "invert", False):
                std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float64)), 1e-7)
                s = 1.0 / std
                o = -np.asarray(layer.mean, dtype=np.float64) / std
            else:
                break
            s, o = s.reshape(-1) if s.size > 1 else s.reshape(()), o.reshape(-1) if o.size > 1 else o.reshape(())
            scale, offset = scale * s, offset * s + o
            names.append(entry["name"])
            g.remove(entry["name"])
            g.record(entry["name"], "input preprocessing moved to the file's metadata",
                     f"{entry['class_name']} removed from the graph: the app feeds input = x * scale + offset "
                     "(stored in the .tflite metadata at export)", True)
    if names:
        g.preprocessing = {"scale": _plain(scale), "offset": _plain(offset), "layers": names}


def fold_batchnorm(g: Graph) -> None:
    """BatchNormalization after a conv / depthwise with a linear activation -> into its weights."""
    for entry in list(g.layers):
        if entry["class_name"] != "BatchNormalization":
            continue
        axis = entry["config"].get("axis")
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        producers = g.producers(entry["name"])
        if axis not in (3, -1) or len(producers) != 1:
            continue
        conv = g.get(producers[0])
        if conv["class_name"] not in CONVS or conv["config"].get("activation", "linear") != "linear" \
                or g.consumers(conv["name"]) != [entry["name"]]:
            continue
        bn = g.live[entry["name"]]
        gamma = bn.gamma.numpy() if bn.scale else 1.0
        beta = bn.beta.numpy() if bn.center else 0.0
        s = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        weights = g.weights[conv["name"]]
        kernel = weights[0]
        bias = weights[1] if len(weights) > 1 else np.zeros(s.shape, np.float32)
        if conv["class_name"] == "DepthwiseConv2D":  # [kh, kw, in, multiplier], out = in * multiplier
            kernel = kernel * s.reshape(kernel.shape[2], kernel.shape[3])
        else:
            kernel = kernel * s
        bias = (bias - bn.moving_mean.numpy()) * s + beta
        g.weights[conv["name"]] = [kernel.astype(np.float32), bias.astype(np.float32)]
        conv["config"]["use_bias"] = True
        g.remove(entry["name"])
        g.record(entry["name"], "BatchNormalization folded",
                 f"into {conv['name']} ({conv['class_name']}): kernel * gamma / sqrt(var + eps), bias adjusted", True)


def add_biases(g: Graph) -> None:
    """Convolutions without bias get a zero bias (LiteRT's XNNPACK delegate needs one).

    Not those a BatchNormalization follows: the converter folds the BN into them, bias included."""
    for entry in g.layers:
        if entry["class_name"] in CONVS and not entry["config"].get("use_bias", True):
            readers = g.consumers(entry["name"])
            if len(readers) == 1 and readers[0] != "<output>" and g.get(readers[0])["class_name"] == "BatchNormalization":
                continue
            entry["config"]["use_bias"] = True
            kernel = g.weights[entry["name"]][0]
            out = kernel.shape[2] * kernel.shape[3] if entry["class_name"] == "DepthwiseConv2D" else kernel.shape[3]
            g.weights[entry["name"]] = [kernel, np.zeros(out, np.float32)]
            g.record(entry["name"], "zero bias added", f"{entry['class_name']} had use_bias=False", True)


def pooled_heads(g: Graph) -> None:
    """GlobalAveragePooling2D(keepdims) + 1x1 conv / Reshape / Flatten head -> pooling + Dense."""
    for entry in list(g.layers):
        if entry["class_name"] != "GlobalAveragePooling2D" or not entry["config"].get("keepdims"):
            continue
        region = _closed_region(g, entry["name"])
        if region is None:
            continue
        entry["config"]["keepdims"] = False
        g.head.update(region)
        g.record(entry["name"], "pooled head", "GlobalAveragePooling2D(keepdims=True) -> keepdims=False", True)
        for name in region:
            member = g.get(name)
            cls = member["class_name"]
            if cls == "Conv2D":
                _conv_to_dense(g, member)
                g.record(name, "pooled head", "1x1 Conv2D on the pooled 1x1 map -> Dense (same weights)", True)
            elif cls in ("Reshape", "Flatten"):
                g.remove(name)
                g.record(name, "pooled head", f"{cls} of the pooled vector removed (the pool already gives "
                                              "[batch, channels])", True)
            elif cls == "BatchNormalization":
                member["config"]["axis"] = -1


def _closed_region(g: Graph, start: str) -> list[str] | None:
    """The layers after `start` that read only from it (or each other), if they reach the output.

    A squeeze-and-excite block's pool is not a head: its Multiply also reads the feature map.
    """
    region, frontier, reaches_output = [], [start], False
    while frontier:  # everything downstream of the pool
        name = frontier.pop(0)
        for user in g.consumers(name):
            if user == "<output>":
                reaches_output = True
            elif user not in region:
                entry = g.get(user)
                if entry["class_name"] not in HEAD_LAYERS or entry["class_name"] == "Conv2D" and (
                        tuple(entry["config"]["kernel_size"]) != (1, 1) or tuple(entry["config"]["strides"]) != (1, 1)):
                    return None
                region.append(user)
                frontier.append(user)
    # ... and it reads nothing else (a squeeze-and-excite Multiply reads the feature map too).
    if any(not set(g.producers(name)) <= set(region) | {start} for name in region):
        return None
    return region if reaches_output and region else None


def _conv_to_dense(g: Graph, member: dict) -> None:
    c = member["config"]
    dense = {"name": c["name"], "trainable": c.get("trainable", True), "dtype": c.get("dtype", "float32"),
             "units": c["filters"], "activation": c.get("activation", "linear"), "use_bias": c.get("use_bias", True)}
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint"):
        if c.get(key) is not None:
            dense[key] = c[key]
    member["class_name"], member["config"] = "Dense", dense
    member.pop("module", None)
    member.pop("registered_name", None)
    weights = g.weights[c["name"]]
    g.weights[c["name"]] = [weights[0].reshape(weights[0].shape[2], weights[0].shape[3]), *weights[1:]]


def flatten_heads(g: Graph) -> None:
    """Flatten / Reshape-to-vector of a feature map, then Dense -> GlobalAveragePooling2D + Dense."""
    for entry in list(g.layers):
        if entry["class_name"] not in ("Flatten", "Reshape"):
            continue
        shape = g.input_shape(entry["name"])
        if len(shape) != 4 or entry["class_name"] == "Reshape" and len(entry["config"]["target_shape"]) != 1:
            continue
        users = g.consumers(entry["name"])
        dense = users[0] if len(users) == 1 and users[0] != "<output>" else None
        while dense and g.get(dense)["class_name"] == "Dropout" and len(g.consumers(dense)) == 1:
            dense = g.consumers(dense)[0]
        if not dense or dense == "<output>" or g.get(dense)["class_name"] != "Dense":
            continue
        h, w, c = shape[1], shape[2], shape[3]
        kind = entry["class_name"]
        kernel, *rest = g.weights[dense]
        # Dense(Flatten(x)) = sum over positions of W[p] x[p]; for a map constant over positions it is
        # (sum_p W[p]) . mean(x): the summed kernel is exact there and a start for fine-tuning elsewhere.
        g.weights[dense] = [kernel.reshape(h, w, c, -1).sum(axis=(0, 1)), *rest]
        entry["class_name"] = "GlobalAveragePooling2D"
        entry["config"] = {"name": entry["name"], "trainable": True, "dtype": entry["config"].get("dtype", "float32"),
                           "data_format": "channels_last", "keepdims": False}
        g.record(entry["name"], "pooled head", f"{kind} of a "
                 f"{h}x{w}x{c} map -> GlobalAveragePooling2D; {dense}'s kernel summed over the {h * w} positions",
                 h * w == 1)


def rank4_constants(g: Graph) -> None:
    """A scalar added to / multiplied with a pooled 1x1 map (squeeze-and-excite's hard sigmoid,
    relu6(x + 3) / 6) -> the same constant shaped [1, 1, 1, 1].

    XNNPACK runs ADD/MUL channel-first only when both operands are 4D; TensorFlow stores the
    Python scalar as a rank-0 tensor, which cuts the cluster at every squeeze-and-excite block.
    A full-size map is left alone: the converter fuses its x * relu6(x + 3) / 6 into HARD_SWISH.
    """
    for entry in g.layers:
        if entry["class_name"] != "TFOpLambda" or entry["config"].get("function") not in (
                "__operators__.add", "math.add", "math.multiply", "math.subtract"):
            continue
        shape = g.input_shape(entry["name"]) if entry["name"] in g.live and entry["name"] not in g.head else None
        if shape is None or len(shape) != 4 or tuple(shape[1:3]) != (1, 1):
            continue
        if _fold_into_bias(g, entry):
            continue
        for node in entry["inbound_nodes"]:
            kwargs = node[3] if len(node) > 3 and isinstance(node[3], dict) else None
            if kwargs is not None and isinstance(kwargs.get("y"), (int, float)):
                value = kwargs["y"]
                kwargs["y"] = [[[[float(value)]]]]
                g.record(entry["name"], "4D constant", f"{entry['config']['function']} by the scalar {value:g} "
                         "-> the same value shaped [1, 1, 1, 1]", True)


def _fold_into_bias(g: Graph, entry: dict) -> bool:
    """`conv(x) + c` (or `- c`) with a scalar c and nothing else reading the conv -> the conv's bias + c.

    Squeeze-and-excite's hard sigmoid adds 3 right after a 1x1 conv. As a [1, 1, 1, 1] constant,
    TensorFlow's graph optimizer (grappler) folds that add into the conv's BiasAdd and then fails
    in every compiled training or evaluation step ("Must provide as many biases as the last
    dimension of the input tensor: [C] vs. [1,1,1,1]"; eager calls work). Folded into the bias
    here it is exact, and the TFLite converter would have folded it the same way.
    """
    function = entry["config"].get("function")
    if function not in ("__operators__.add", "math.add", "math.subtract") or len(entry["inbound_nodes"]) != 1:
        return False
    (node,) = entry["inbound_nodes"]
    kwargs = node[3] if len(node) > 3 and isinstance(node[3], dict) else None
    producers = g.producers(entry["name"])
    if kwargs is None or not isinstance(kwargs.get("y"), (int, float)) or len(producers) != 1:
        return False
    conv = g.get(producers[0])
    weights = g.weights.get(conv["name"]) or []
    if conv["class_name"] not in ("Conv2D", "Dense") or not conv["config"].get("use_bias", True) or \
            conv["config"].get("activation", "linear") != "linear" or len(weights) != 2 or \
            g.consumers(conv["name"]) != [entry["name"]]:
        return False
    value = float(kwargs["y"]) * (-1 if function == "math.subtract" else 1)
    weights[1] = weights[1] + np.asarray(value, dtype=weights[1].dtype)
    g.remove(entry["name"])
    g.record(entry["name"], "scalar folded into bias", f"{function} by the scalar {kwargs['y']:g} after "
             f"{conv['name']} -> {conv['name']}'s bias", True)
    return True


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def explicit_padding(g: Graph) -> None:
    """SAME stride-2 3x3 convs and 3x3/5x5 depthwise -> ZeroPadding2D(k // 2) + valid."""
    for entry in list(g.layers):
        c = entry["config"]
        if entry["class_name"] not in CONVS or c.get("padding") != "same" or tuple(c["strides"]) != (2, 2):
            continue
        k = tuple(c["kernel_size"])
        if tuple(c.get("dilation_rate", (1, 1))) != (1, 1) or k[0] != k[1] or \
                k not in ((3, 3), (5, 5)) or entry["class_name"] == "Conv2D" and k != (3, 3):
            continue
        _, h, w, _ = g.input_shape(entry["name"])
        p = k[0] // 2
        same = (_same_pads(h, k[0], 2), _same_pads(w, k[1], 2))
        name = f"{entry['name']}_pad"
        g.insert_before(entry["name"], {"class_name": "ZeroPadding2D", "name": name, "config": {
            "name": name, "trainable": True, "dtype": c.get("dtype", "float32"), "padding": ((p, p), (p, p)),
            "data_format": "channels_last"}})
        c["padding"] = "valid"
        exact = same == ((p, p), (p, p))
        g.record(entry["name"], "explicit padding", f"padding='same' at stride 2 (TF pads {_txt(same)}) -> "
                 f"ZeroPadding2D({p}) {name} + 'valid'", exact)


def symmetric_padding(g: Graph) -> None:
    """Asymmetric ZeroPadding2D (keras' `correct_pad`) before a stride-2 k x k layer -> k // 2 per side."""
    for entry in list(g.layers):
        if entry["class_name"] != "ZeroPadding2D":
            continue
        users = g.consumers(entry["name"])
        if len(users) != 1 or users[0] == "<output>":
            continue
        conv = g.get(users[0])
        c = conv["config"]
        if conv["class_name"] not in CONVS or c.get("padding") != "valid" or tuple(c["strides"]) != (2, 2):
            continue
        k = tuple(c["kernel_size"])
        if k[0] != k[1] or k not in ((3, 3), (5, 5)):
            continue
        p = k[0] // 2
        old = _pairs(entry["config"]["padding"])
        if isinstance(old[0], int):
            old = ((old[0], old[0]), (old[1], old[1]))
        if old == ((p, p), (p, p)):
            continue
        _, h, w, _ = g.input_shape(entry["name"])
        if (h + sum(old[0]) - k[0]) // 2 != (h + 2 * p - k[0]) // 2 or (w + sum(old[1]) - k[1]) // 2 != (w + 2 * p - k[1]) // 2:
            continue  # the output would change size: left for the report
        entry["config"]["padding"] = ((p, p), (p, p))
        g.record(entry["name"], "symmetric padding", f"ZeroPadding2D {_txt(old)} before stride-2 {conv['name']} -> "
                 f"{p} on every side", False)


def _txt(pads) -> str:
    (t, b), (left, r) = pads
    return f"top {t} bottom {b} left {left} right {r}"


def _plain(value):
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else [float(v) for v in value.reshape(-1)]


EXACT_REWRITES = (move_input_preprocessing, fold_batchnorm, add_biases, pooled_heads, rank4_constants)
NUMERIC_REWRITES = (flatten_heads, explicit_padding, symmetric_padding)


def rewrite(model, *, numeric: bool = True, fold: bool = False) -> tuple:
    """(rewritten model, [Change], moved input preprocessing or None).

    `numeric=False` applies only the rewrites that keep outputs (the doctor checks them alone).
    `fold=True` also folds BatchNormalization into the convolutions. Off by default: XNNPACK never
    sees a BN (the converter folds it, and zeros stay zeros: the fold scales each output channel),
    TF-MOT's XNNPACK policy accepts conv + BN, and a network without its BNs fine-tunes and prunes
    badly (a doctored keras.applications MobileNetV2 fell to chance at 87% sparsity, measured).
    """
    g = Graph(model)
    steps = [step for step in EXACT_REWRITES if fold or step is not fold_batchnorm]
    for step in steps + list(NUMERIC_REWRITES if numeric else ()):
        step(g)
    return g.build(), g.changes, g.preprocessing
