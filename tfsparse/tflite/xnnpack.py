"""Predict whether LiteRT's XNNPACK delegate runs a TFLite model with sparse (channel-first) kernels.

A port of XNNPACK's `xnn_check_nchw_compatibility` and `xnn_subgraph_rewrite_for_nchw`
(`src/subgraph.c`) applied to the nodes LiteRT's delegate (`xnnpack_delegate.cc`) would define
for a model. The facts it relies on are in the project notes `xnnpack-sparse.md`, sections 1-4:

1. TFLite ops become XNNPACK nodes: DENSIFY and DEQUANTIZE of static weights vanish (the
   delegate densifies them ahead of time); PAD folds into the next conv/depthwise when it pads
   only H/W with zeros and has one consumer without a SAME flag; SAME padding at stride 1 becomes
   explicit padding, at stride 2 it keeps the SAME flag; a 1x1 conv (groups 1, stride 1, no pad,
   in+out channels > 2) becomes a fully_connected node; MEAN without keep_dims is followed by
   a reshape.
2. Each node gets layout flags: may start a cluster (the 3x3 stride-2, pad-1, 3-channel stem),
   may sit in the middle, may end it (global pooling, MEAN/SUM over 4D, depth_to_space).
3. Clusters grow from end nodes to their producers (connected components); a cluster reading
   a graph input, or fed by a node that cannot run channel-first, or whose values are read
   outside it, is rejected.
4. A surviving cluster runs sparse only if strictly more than 2/3 of its 1x1/fully-connected
   weights are zero (`zeros * 3 > params * 2`).

Everything that blocks or enables a cluster is recorded as a plain-words reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfsparse.tflite.flatbuffer import Model, Subgraph

TARGETS = ("arm64", "x86-avx")

# Layout flags, as in XNNPACK.
NCHW = 1           # may run channel-first in the middle of a cluster
NHWC2NCHW = 2      # may start a cluster (reads NHWC, writes NCHW)
NCHW2NHWC = 4      # may end a cluster (reads NCHW, writes NHWC)
INCOMPATIBLE = 8   # this node's cluster is rejected

FP_TYPES = ("FLOAT32", "FLOAT16")
UNARY_OPS = {"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "ELU",
             "LEAKY_RELU", "ABS", "NEG", "SQUARE", "SQRT", "RSQRT", "FLOOR", "CEIL", "ROUND", "EXP",
             "LOG", "GELU", "SIN", "COS", "SIGN", "QUANTIZE", "DEQUANTIZE"}
SPARSE_THRESHOLD = "66.7%"

# The codes of the warnings `analyze` reports (its "findings"), with what each means.
FINDINGS = {
    "x86_avx": "the target is an x86 CPU with AVX: XNNPACK never runs sparse there",
    "no_sparse_tensor": "no sparse tensor in the file",
    "no_densify": "sparse tensors but no DENSIFY op: the delegate is never asked for sparse inference",
    "int8": "int8 tensors: the sparse path is fp32/fp16 only",
    "int8_dynamic_sparse": "int8 dynamic-range weights stored sparse: fails to load on LiteRT 2.3.0",
    "xnnpack_bug_a": "a constant second MUL/ADD operand breaks the cluster (XNNPACK bug a)",
    "dense_head_in_cluster": "a dense head after MEAN(keep_dims) is pulled into the cluster",
    "xnnpack_bug_b": "a cluster ends in a middle node: XNNPACK computes WRONG results (bug b)",
    "xnnpack_bug_b_harmless": "a cluster ends in a middle node, harmless because its output is 1x1",
    "not_eligible": "no cluster runs sparse: the model is not eligible for XNNPACK sparse inference",
}
X86_REASON = "x86 with AVX never runs sparse: XNNPACK disables its channel-first path on AVX CPUs"
NO_DENSIFY_REASON = "no DENSIFY op: the delegate is never asked for sparse inference"
INT8_REASON = "int8 tensors: XNNPACK's sparse path is fp32/fp16 only"


@dataclass
class Node:
    """One XNNPACK node, tied to the TFLite operator it came from."""

    op: int
    opcode: str
    inputs: list[int]
    outputs: list[int]
    flags: int = 0
    role: int = 0                     # the flags before clustering clears some of them
    why_not: str | None = None        # why it cannot run channel-first (flags == 0)
    weights: int | None = None        # filter value of a 1x1 conv / fully-connected node
    leader: int = 0
    blocked_by: list[str] = field(default_factory=list)  # why its cluster was rejected
    bug_a: bool = False               # rejected by XNNPACK's known bug (a), constant second operand

    @property
    def label(self) -> str:
        return f"{self.opcode} #{self.op}"


@dataclass
class Graph:
    """The delegate's view of a subgraph: nodes, value shapes/types, static and external values."""

    nodes: list[Node]
    shapes: dict[int, list[int]]
    dtypes: dict[int, str]
    static: dict[int, int]             # value -> TFLite tensor holding its (densified) data
    external_inputs: set[int]
    external_outputs: set[int]
    densify_inputs: list[int]          # sparse tensors read by DENSIFY ops
    notes: list[str] = field(default_factory=list)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%".replace(".0%", "%")


def build_graph(sg: Subgraph) -> Graph:
    """Maps TFLite operators to the nodes the XNNPACK delegate would define (rules in the docstring)."""
    tensors = sg.tensors
    shapes = {t.index: list(t.shape) for t in tensors}
    dtypes = {t.index: t.dtype for t in tensors}
    producers = sg.producers()
    consumers = sg.consumers()
    static = {t.index: t.index for t in tensors if t.is_constant and t.index not in producers}
    densify_inputs = []
    vanished = set()
    for op in sg.operators:  # operators are in execution order, so static-ness flows forward
        if op.opcode in ("DENSIFY", "DEQUANTIZE") and op.inputs and op.inputs[0] in static and op.outputs:
            static[op.outputs[0]] = static[op.inputs[0]]
            vanished.add(op.index)
            if op.opcode == "DENSIFY":
                densify_inputs.append(op.inputs[0])

    graph = Graph([], shapes, dtypes, static, set(sg.inputs), set(sg.outputs), densify_inputs)
    fused_pads: dict[int, tuple[int, list[int]]] = {}  # consumer op -> (pad input value, [t, l, b, r])
    next_value = len(tensors)
    for op in sg.operators:
        if op.index in vanished:
            continue
        pad = _fusable_pad(sg, op, static, consumers)
        if pad is not None:
            fused_pads[pad[0]] = (op.inputs[0], pad[1])
            graph.notes.append(f"PAD #{op.index} is folded into {sg.operators[pad[0]].opcode} #{pad[0]}")
            continue
        if op.opcode in ("MEAN", "SUM") and not op.options.get("keepDims", False) and op.outputs:
            # XNNPACK reduces with kept dimensions, then reshapes: the reshape ends the cluster.
            node = _node(sg, op, static, fused_pads.get(op.index), shapes)
            hidden = next_value
            next_value += 1
            out = op.outputs[0]
            shapes[hidden] = shapes.get(out, [])
            dtypes[hidden] = dtypes.get(out, "FLOAT32")
            node.outputs = [hidden]
            graph.nodes.append(node)
            graph.nodes.append(Node(op.index, f"RESHAPE (after {op.opcode} without keep_dims)", [hidden], [out],
                                    why_not="RESHAPE cannot run channel-first"))
            continue
        graph.nodes.append(_node(sg, op, static, fused_pads.get(op.index), shapes))
    return graph


def _fusable_pad(sg: Subgraph, op, static, consumers) -> tuple[int, list[int]] | None:
    """(consumer op, [top, left, bottom, right]) if XNNPACK folds this PAD into its consumer."""
    if op.opcode not in ("PAD", "PADV2") or len(op.inputs) < 2 or not op.outputs:
        return None
    if op.opcode == "PADV2":
        if len(op.inputs) < 3 or op.inputs[2] not in static:
            return None
        value = sg.tensors[static[op.inputs[2]]]
        try:
            if np.any(value.values() != 0):
                return None
        except Exception:  # noqa: BLE001 - unreadable pad value: not folded
            return None
    if op.inputs[1] not in static:
        return None
    try:
        pads = sg.tensors[static[op.inputs[1]]].values().astype(np.int64).reshape(-1).tolist()
    except Exception:  # noqa: BLE001
        return None
    if len(pads) != 8 or pads[0] or pads[1] or pads[6] or pads[7] or min(pads) < 0:
        return None
    out = op.outputs[0]
    users = consumers.get(out, [])
    if len(users) != 1 or out in sg.outputs:
        return None
    user = sg.operators[users[0]]
    if user.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D") or not user.inputs or user.inputs[0] != out:
        return None
    if _keeps_same_flag(user.options):
        return None
    return users[0], [pads[2], pads[4], pads[3], pads[5]]


def _keeps_same_flag(options: dict) -> bool:
    """SAME padding survives as a flag only for strides above 1 (stride 1 becomes explicit)."""
    return options.get("padding") == "SAME" and (options.get("strideH", 1), options.get("strideW", 1)) != (1, 1)


def _explicit_padding(options: dict, kh: int, kw: int) -> list[int]:
    """[top, left, bottom, right] as XNNPACK stores it (SAME at stride 1 made explicit)."""
    if options.get("padding") == "SAME" and not _keeps_same_flag(options):
        ph = (kh - 1) * options.get("dilationHFactor", 1)
        pw = (kw - 1) * options.get("dilationWFactor", 1)
        return [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]
    return [0, 0, 0, 0]


def _node(sg: Subgraph, op, static, fused_pad, shapes) -> Node:
    # Constant integer operands (axes, paddings, target shapes) are node parameters in
    # XNNPACK, not values, so they take no part in the type check or the clustering.
    inputs = [t for t in op.inputs
              if t >= 0 and not (t in static and sg.tensors[t].dtype in ("INT32", "INT64"))
              or (op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and t >= 0)]
    node = Node(op.index, op.opcode, inputs, [t for t in op.outputs if t >= 0])
    if fused_pad is not None and node.inputs:
        node.inputs[0] = fused_pad[0]
    types = [sg.tensors[t].dtype for t in node.inputs + node.outputs]
    # Static weights are checked after DENSIFY/DEQUANTIZE: look at the value the node reads.
    if any(t not in FP_TYPES for t in types):
        node.why_not = INT8_REASON if any(t in ("INT8", "UINT8") for t in types) else \
            f"{op.opcode} #{op.index} has {'/'.join(sorted(set(types) - set(FP_TYPES)))} tensors"
        return node
    flags, why = _compatibility(sg, op, node, static, shapes, fused_pad)
    node.flags = node.role = flags
    node.why_not = why
    return node


def _compatibility(sg, op, node, static, shapes, fused_pad) -> tuple[int, str | None]:
    name, o = f"{op.opcode} #{op.index}", op.options
    stride = (o.get("strideH", 1), o.get("strideW", 1))
    dilation = (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1))
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        if len(op.inputs) < 2 or op.inputs[1] not in static:
            return 0, f"{name} has non-constant weights (not delegated)"
        if op.opcode == "CONV_2D" and (len(op.inputs) < 3 or op.inputs[2] < 0):
            return 0, f"{name} has no bias: the delegate does not take a CONV_2D without bias"
        fshape = shapes[op.inputs[1]]
        if len(fshape) != 4 or len(shapes[op.inputs[0]]) != 4:
            return 0, f"{name} is not a 2D convolution over a 4D input"
        kh, kw = fshape[1], fshape[2]
        pad = _explicit_padding(o, kh, kw)
        if fused_pad is not None:
            pad = [a + b for a, b in zip(pad, fused_pad[1])]
        same = _keeps_same_flag(o)
        stride_txt = f"stride-{stride[0]}" if stride[0] == stride[1] else f"stride-{stride[0]}x{stride[1]}"
        if op.opcode == "DEPTHWISE_CONV_2D":
            channels = shapes[op.inputs[0]][3]
            if dilation != (1, 1):
                return 0, f"{name} is dilated {dilation}"
            if same:
                return 0, (f"{stride_txt} depthwise {name} uses SAME padding (TF pads it asymmetrically); "
                           "use ZeroPadding2D(1) + padding='valid'")
            if fshape[3] != channels:
                return 0, f"{name} has depth multiplier {fshape[3] / max(channels, 1):g}, only 1 runs channel-first"
            if stride[0] != stride[1] or stride[0] not in (1, 2):
                return 0, f"{name} has stride {stride}, only 1 or 2 run channel-first"
            if (kh, kw) == (3, 3) and pad == [1, 1, 1, 1] or (kh, kw) == (5, 5) and pad == [2, 2, 2, 2]:
                return NCHW, None
            if (kh, kw) in ((3, 3), (5, 5)):
                return 0, f"{kh}x{kw} depthwise {name} has padding (t,l,b,r)={tuple(pad)}, needs {kh // 2} on every side"
            return 0, f"{kh}x{kw} depthwise {name}: only 3x3 and 5x5 depthwise run channel-first"
        in_ch, out_ch = shapes[op.inputs[0]][3], fshape[0]
        groups = in_ch // fshape[3] if fshape[3] else 0
        if groups != 1:
            return 0, f"{name} is a grouped convolution ({groups} groups)"
        if dilation != (1, 1):
            return 0, f"{name} is dilated {dilation}"
        if (kh, kw) == (1, 1):
            if any(pad):
                return 0, f"1x1 {name} is padded {tuple(pad)}"
            if stride != (1, 1):
                return 0, f"1x1 {name} has stride {stride}, only stride 1 runs channel-first"
            node.weights = op.inputs[1]
            if in_ch > 2 and out_ch > 2:
                node.opcode = f"{op.opcode} (1x1 -> fully_connected)"
            return NCHW, None
        if (kh, kw) == (3, 3):
            if same:
                return 0, (f"{stride_txt} 3x3 {name} uses SAME padding (TF pads it asymmetrically, "
                           "XNNPACK needs exactly 1 on every side); use ZeroPadding2D(1) + padding='valid'")
            if pad != [1, 1, 1, 1]:
                return 0, f"3x3 {name} has padding (t,l,b,r)={tuple(pad)}, the stem needs exactly 1 on every side"
            if stride != (2, 2):
                return 0, f"3x3 {name} has stride {stride}: only a stride-2 stem conv runs channel-first"
            if in_ch != 3:
                return 0, f"3x3 {name} has {in_ch} input channels: only a 3-channel stem conv runs channel-first"
            return NHWC2NCHW, None
        return 0, f"{kh}x{kw} {name}: only the 3x3 stride-2 stem and 1x1 convolutions run channel-first"
    if op.opcode == "FULLY_CONNECTED":
        if len(op.inputs) < 2 or op.inputs[1] not in static:
            return 0, f"{name} has non-constant weights"
        if sg.tensors[op.inputs[1]].sparsity is not None:
            return 0, (f"{name} keeps block-sparse weights without DENSIFY (op version {op.version}): "
                       "the delegate refuses it")
        node.weights = op.inputs[1]
        return NCHW, None
    if op.opcode in ("MEAN", "SUM"):
        if len(shapes[op.inputs[0]]) == 4:
            return NCHW | NCHW2NHWC, None
        return 0, f"{name} reduces a {len(shapes[op.inputs[0]])}D tensor, only 4D runs channel-first"
    if op.opcode == "DEPTH_TO_SPACE":
        return NCHW2NHWC, None
    if op.opcode in ("ADD", "MUL"):
        a, b = op.inputs[0], op.inputs[1]
        if len(shapes[a]) != 4 or len(shapes[b]) != 4:
            return 0, f"{name} has operands of rank {len(shapes[a])} and {len(shapes[b])}, needs both 4D"
        if a in static and sum(d != 1 for d in shapes[a]) > 1:
            return 0, f"{name}'s constant first operand {shapes[a]} is not a scalar or per-channel vector"
        if b in static and sum(d != 1 for d in shapes[a]) > 1:
            # XNNPACK checks the FIRST operand's shape here (known bug): a per-channel constant
            # in second place always fails because the activation has H, W and C > 1.
            node.bug_a = True
            return 0, (f"{name} has a constant second operand {shapes[b]}: XNNPACK bug (a) checks the first "
                       "operand's shape and breaks the cluster; put the constant first")
        return NCHW, None
    if op.opcode == "RESIZE_BILINEAR":
        s = shapes[op.inputs[0]]
        if len(s) == 4 and s[1] > 1 and s[2] > 1:
            return NCHW, None
        return 0, f"{name} resizes a {s} input, needs H and W above 1"
    if op.opcode in UNARY_OPS:
        if len(shapes[op.inputs[0]]) == 4:
            return NCHW, None
        return 0, f"{name} works on a {len(shapes[op.inputs[0]])}D tensor, only 4D runs channel-first"
    return 0, f"{name} cannot run channel-first"


def _clusters(graph: Graph) -> bool:
    """XNNPACK's connected-components pass; True if any end node took a producer (else no rewrite)."""
    nodes = graph.nodes
    producer = {v: i for i, n in enumerate(nodes) for v in n.outputs}
    for i, n in enumerate(nodes):
        n.leader = i

    def visit(i: int) -> bool:
        node, changed = nodes[i], False
        for v in node.inputs:
            if v in graph.static:
                continue
            if v in graph.external_inputs or v not in producer:
                node.flags |= INCOMPATIBLE
                node.blocked_by.append(f"{node.label} reads a graph input: only the 3x3 stride-2 stem conv "
                                       "on 3 channels may start a channel-first cluster")
                continue
            if v in graph.external_outputs:
                node.flags |= INCOMPATIBLE
                node.blocked_by.append(f"{node.label} reads a value that is also a graph output")
                continue
            p = nodes[producer[v]]
            if p.flags & (NHWC2NCHW | NCHW) and not p.flags & INCOMPATIBLE:
                p.flags &= ~NCHW2NHWC
                if p.leader != node.leader:
                    p.leader = node.leader = max(p.leader, node.leader)
                    changed = True
            else:
                node.flags |= INCOMPATIBLE
                # Name the root cause: a producer cut off by something further up inherits it.
                if p.why_not:
                    node.blocked_by.append(f"{node.label} reads {p.label}: {p.why_not}")
                else:
                    node.blocked_by.append(p.blocked_by[0] if p.blocked_by else f"{p.label} is in a rejected cluster")
        return changed

    update = False
    for i, n in enumerate(nodes):
        if n.flags & NCHW2NHWC:
            update |= visit(i)
    # XNNPACK stops here when no end node took a producer; the clusters are still formed
    # below so the report can show them, and the caller marks them dense.
    changed = True
    for _ in range(len(nodes) + 1):  # converges well before; the bound keeps corrupt graphs finite
        if not changed:
            break
        changed = False
        for i, n in enumerate(nodes):
            if not n.flags & INCOMPATIBLE and n.flags & (NCHW | NCHW2NHWC):
                n.blocked_by.clear()  # re-visited: keep only this pass's causes
                changed |= visit(i)
    for n in nodes:
        nodes[n.leader].flags |= n.flags & INCOMPATIBLE
    # Every value read inside a cluster must be read only inside clusters.
    consumers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for v in set(n.inputs):
            consumers.setdefault(v, []).append(i)
    for n in nodes:
        if nodes[n.leader].flags & INCOMPATIBLE or not n.flags & (NCHW | NCHW2NHWC):
            continue
        for v in n.inputs:
            if v in graph.static:
                continue
            outside = [nodes[c] for c in consumers.get(v, [])
                       if nodes[nodes[c].leader].flags & INCOMPATIBLE or not nodes[c].flags & (NCHW | NCHW2NHWC)]
            if outside or v in graph.external_outputs:
                nodes[n.leader].flags |= INCOMPATIBLE
                who = ", ".join(c.label for c in outside) or "the graph output"
                p = nodes[producer[v]] if v in producer else n
                n.blocked_by.append(f"the output of {p.label} is also read by {who}, outside the cluster")
    return update


def analyze(model: Model, target: str = "arm64") -> dict:
    """The XNNPACK report: `{"target", "sparse_clusters", "clusters", "warnings", "findings", "reasons"}`.

    `findings` are the warnings as `{"code", "message"}`, the code one of FINDINGS (match on it,
    never on the wording); `warnings` are the same messages alone.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    sg = model.main
    graph = build_graph(sg)
    any_end = _clusters(graph)
    nodes = graph.nodes
    has_hint = bool(graph.densify_inputs)
    warnings: list[tuple[str, str]] = []  # (code, message): see FINDINGS

    dense_cache: dict[int, np.ndarray] = {}

    def dense_of(tensor: int) -> np.ndarray:
        if tensor not in dense_cache:
            dense_cache[tensor] = sg.tensors[tensor].dense_values()
        return dense_cache[tensor]

    groups: dict[int, list[Node]] = {}
    for n in nodes:
        groups.setdefault(n.leader, []).append(n)
    clusters = []
    for leader, members in sorted(groups.items(), key=lambda kv: kv[1][0].op):
        if not any(m.flags & (NCHW | NHWC2NCHW | NCHW2NHWC) for m in members):
            continue
        counted = [m for m in members if m.weights is not None]
        ends = any(m.role & NCHW2NHWC for m in members)
        if not counted and not ends:
            continue
        if len(members) == 1 and not members[0].role & (NHWC2NCHW | NCHW2NHWC):
            continue  # a lone 1x1/FC between layers that cannot run channel-first: not a cluster
        clusters.append(_cluster_report(graph, dense_of, nodes, leader, members, counted, any_end, has_hint,
                                        target, warnings))

    if target == "x86-avx":
        warnings.append(("x86_avx", X86_REASON + "; measure speed on an arm64 device"))
    sparse_tensors = [t for t in sg.tensors if t.sparsity is not None]
    if not sparse_tensors:
        warnings.append(("no_sparse_tensor", "no sparse tensor in the file: the model was not pruned, no weight "
                         "reached the converter's 30% zero threshold, or Optimize.EXPERIMENTAL_SPARSITY was not set"))
    elif not has_hint:
        warnings.append(("no_densify", NO_DENSIFY_REASON))
    int8 = [n for n in nodes if n.why_not == INT8_REASON]
    if int8:
        warnings.append(("int8", "int8 tensors disable XNNPACK's sparse path (fp32/fp16 only): this file is "
                         "smaller, not faster"))
    if _dynamic_range_sparse(sg, graph):
        warnings.append(("int8_dynamic_sparse", "int8 dynamic-range weights stored sparse: LiteRT 2.3.0's XNNPACK "
                         "delegate fails at allocate_tensors ('failed to delegate CONV_2D node'); ship fp32, fp16 "
                         "or full-integer int8"))
    for n in nodes:
        if n.why_not and n.bug_a:
            warnings.append(("xnnpack_bug_a", f"known XNNPACK bug (a): {n.why_not}"))
    sparse = sum(c["sparse"] for c in clusters)
    reasons = _model_reasons(clusters, nodes, any_end, has_hint, target)
    if not sparse:
        warnings.append(("not_eligible", "model not eligible for XNNPACK sparse inference: " + "; ".join(reasons)))
    findings = list(dict.fromkeys(warnings))
    return {"target": target, "sparse_clusters": sparse, "clusters": clusters,
            "warnings": [message for _code, message in findings],
            "findings": [{"code": code, "message": message} for code, message in findings],
            "reasons": reasons, "notes": graph.notes}


def _cluster_report(graph, dense_of, nodes, leader, members, counted, any_end, has_hint, target,
                    warnings) -> dict:
    params = zeros = 0
    for m in counted:
        w = dense_of(graph.static[m.weights])
        params += w.size
        zeros += int(np.count_nonzero(w == 0))
    fraction = zeros / params if params else None
    reasons: list[str] = []
    rejected = bool(nodes[leader].flags & INCOMPATIBLE)
    for m in members:
        reasons.extend(m.blocked_by)
    if not any(m.role & NCHW2NHWC for m in members):
        inside = {id(m) for m in members}
        for m in members:
            for n in nodes:
                if id(n) not in inside and n.why_not and set(n.inputs) & set(m.outputs):
                    reasons.append(f"the cluster has no end node (global average pool, MEAN/SUM over 4D or "
                                   f"depth_to_space): its output goes to {n.label}: {n.why_not}")
    if not any_end:
        reasons.append("no node can end a channel-first cluster (global average pooling / MEAN / SUM over a 4D "
                       "input, or depth_to_space) fed by a channel-first producer")
    eligible = not rejected and any_end and params > 0
    if not rejected and any_end and params:
        _exit_warnings(graph, nodes, members, zeros * 3 > params * 2, warnings)
    if not params:
        reasons.append("no 1x1 convolution or fully-connected weights in the cluster")
    elif zeros * 3 <= params * 2:
        reasons.append(f"1x1 weights {_pct(fraction)} zero, needs more than {SPARSE_THRESHOLD}")
        eligible = False
    else:
        reasons.append(f"1x1 weights {_pct(fraction)} zero, above the {SPARSE_THRESHOLD} XNNPACK needs")
    if not has_hint:
        reasons.append(NO_DENSIFY_REASON)
    if target == "x86-avx":
        reasons.append(X86_REASON)
    sparse = eligible and has_hint and target == "arm64"
    return {"nodes": [{"op": m.op, "opcode": m.opcode} for m in members],
            "params": params, "zeros": zeros,
            "zero_fraction": None if fraction is None else round(fraction, 4),
            "sparse": sparse, "reasons": list(dict.fromkeys(reasons))}


def _exit_warnings(graph, nodes, members, runs_nchw: bool, warnings) -> None:
    """Flags a cluster whose output leaves through a middle node (bug b) and dense heads pulled in."""
    inside = {id(m) for m in members}
    readers: dict[int, list[Node]] = {}
    for n in nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    for m in members:
        if m.flags & NCHW2NHWC:
            continue
        for v in m.outputs:
            leaves = v in graph.external_outputs or any(id(r) not in inside for r in readers.get(v, []))
            if not leaves:
                continue
            shape = graph.shapes.get(v, [])
            spatial_one = len(shape) < 4 or (shape[1] == 1 and shape[2] == 1)
            if m.weights is not None and spatial_one and _fed_by_reduction(m, members):
                warnings.append(("dense_head_in_cluster",
                                 f"dense head pulled into the cluster: {m.label} after MEAN(keep_dims) joins the "
                                 "channel-first cluster and its weights count toward the 2/3 rule; LiteRT 2.3.0 on "
                                 "arm64 fails to allocate such a model when it runs sparse ('XNNPack delegate failed "
                                 "to reshape runtime'). Use GlobalAveragePooling2D() without keepdims, then Dense"))
            elif not runs_nchw:
                continue
            elif spatial_one:
                warnings.append(("xnnpack_bug_b_harmless",
                                 f"known XNNPACK bug (b): the cluster ends in {m.label}, a middle node whose output "
                                 "leaves the cluster; harmless here because its output has H=W=1"))
            else:
                warnings.append(("xnnpack_bug_b",
                                 f"known XNNPACK bug (b): the cluster ends in {m.label}, a middle node whose output "
                                 f"{shape} leaves the cluster: XNNPACK computes it on channel-first data and gives "
                                 "WRONG results; end the cluster with a global average pool"))


def _fed_by_reduction(node: Node, members: list[Node]) -> bool:
    """True if a MEAN/SUM inside the cluster lies upstream of `node`."""
    producer = {v: n for n in members for v in n.outputs}
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        for v in n.inputs:
            p = producer.get(v)
            if p is None or id(p) in seen:
                continue
            if p.opcode in ("MEAN", "SUM"):
                return True
            seen.add(id(p))
            stack.append(p)
    return False


def _dynamic_range_sparse(sg: Subgraph, graph: Graph) -> bool:
    """A float-activation op reading int8 weights that a DENSIFY expands (dynamic-range + sparse)."""
    for t in graph.densify_inputs:
        if sg.tensors[t].dtype == "INT8":
            for op in sg.operators:
                if op.opcode != "DENSIFY" and op.inputs and sg.tensors[op.inputs[0]].dtype == "FLOAT32" \
                        and any(graph.static.get(i) == t for i in op.inputs[1:] if i >= 0):
                    return True
    return False


def _model_reasons(clusters, nodes, any_end, has_hint, target) -> list[str]:
    """Why the model as a whole runs sparse or dense, in plain words, most important first."""
    reasons = []
    if target == "x86-avx":
        reasons.append(X86_REASON)
    if not has_hint:
        reasons.append(NO_DENSIFY_REASON)
    if any(c["sparse"] for c in clusters):
        sparse = [c for c in clusters if c["sparse"]]
        n = sum(len(c["nodes"]) for c in sparse)
        reasons.append(f"{len(sparse)} cluster(s) of {n} node(s) run sparse")
        reasons.extend(r for c in sparse for r in c["reasons"])
        return list(dict.fromkeys(reasons))
    if any(n.why_not == INT8_REASON for n in nodes):
        reasons.append(INT8_REASON)
    if not clusters:
        reasons.append("no channel-first cluster with 1x1/fully-connected weights can form")
    for c in clusters:
        reasons.extend(c["reasons"])
    convs = [n.why_not for n in nodes if n.why_not and n.opcode.startswith(("CONV_2D", "DEPTHWISE"))]
    reasons.extend(list(dict.fromkeys(convs))[:5])
    return list(dict.fromkeys(reasons))
