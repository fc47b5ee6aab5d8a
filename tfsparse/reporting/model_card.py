"""`export/<name>/README.md`: the model card an app developer reads before shipping a file.

    python -m tfsparse.model_card export/mobilenet_v1
    python -m tfsparse.model_card reports/mobilenet_v1/export/mobilenet_v1 --bench reports/mobilenet_v1/bench

Built from what the export and bench stages wrote (no TensorFlow): the manifest
(`tfsparse.exporting.manifest`), the "tfsparse" metadata inside the files (`tfsparse.tflite.metadata`:
labels, input shape and normalisation) and the bench JSON of each target found in `--bench`
(`host.json`, `arm64-emu.json`, `android/results.json`). It states the input spec and
preprocessing, labels, accuracy, sparsity, sizes, the latency table, the SHA-256 of every
file, and how to load a file on Android (Kotlin, LiteRT `Interpreter` with XNNPACK) and iOS
(Swift, `TensorFlowLiteSwift`). Written atomically; `python -m tfsparse.pipeline` regenerates it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Sequence

from tfsparse import atomic
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting import manifest as manifest_io
from tfsparse.reporting import report, retrieval_card
from tfsparse.reporting.export_table import format_pct, format_score, format_size, metric_label
from tfsparse.tflite import metadata as tflite_metadata

PROG = "tfsparse.model_card"
CARD_NAME = "README.md"
# LiteRT's Interpreter API on Android: the 1.x line keeps the org.tensorflow.lite packages
# (https://ai.google.dev/edge/litert/android lists v1.4.x as the latest Interpreter release).
LITERT_ANDROID = "com.google.ai.edge.litert:litert:1.4.1"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata(export_dir: Path, manifest: dict) -> dict:
    """The tfsparse metadata of the first runnable file (every file carries the same spec)."""
    for entry in manifest["files"]:
        if entry.get("runs", True):
            info = tflite_metadata.read((export_dir / entry["path"]).read_bytes())
            if info:
                return info
    return {}


def _shipping_choice(manifest: dict) -> dict | None:
    """The smallest runnable sparse file XNNPACK runs sparse; else the smallest runnable sparse one."""
    sparse = [e for e in manifest["files"] if not e["dense"] and e.get("runs", True)
              and manifest_io.role_of(e) is None]  # a retrieval document encoder is shipped beside it
    engaged = [e for e in sparse if (e.get("xnnpack") or {}).get("verdict") == "sparse"]
    pool = engaged or sparse
    return min(pool, key=lambda e: e.get("bytes") or 0) if pool else None


def _latency_table(point: dict | None) -> list[str]:
    if not point or not any(r["latency"] for r in point["rows"]):
        return ["No benchmark was run for this folder (`python -m tfsparse.bench --target arm64-emu "
                "export/<name>`, or `python -m tfsparse.pipeline`)."]
    keys = report._latency_keys(point["rows"])
    head = ["file"] + [h for k in keys for h, _ in report.latency_columns(k, report._threads(point["rows"], k))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in point["rows"]:
        if r.get("reference"):  # the equal-epochs dense model: no file
            continue
        cells = [f"`{r['file']}`"] + [c for k in keys for c in report.latency_cells(r, k)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "*vs same weights*: against this file's dense twin (the same weights stored dense), what "
              "XNNPACK's sparse path gains; on a phone this is also about the gain over the unpruned model. "
              "Emulated (arm64-emu) milliseconds are not phone milliseconds.", ""]
    for target, b in point["benchmarks"].items():
        version = f", LiteRT {b['litert_version']}" if b.get("litert_version") else ""
        lines.append(f"- {target}: {b.get('device')}{version}. {b.get('note') or ''}")
    return lines


def card(export_dir: Path, point: dict | None = None) -> str:
    """The README text for an export folder (`point`: its report.collect_point, for latencies)."""
    manifest = manifest_io.load(export_dir)
    info = _metadata(export_dir, manifest)
    name = manifest.get("model", export_dir.name)
    inp, out = info.get("input", {}), info.get("output", {})
    norm = inp.get("normalisation", {})
    labels = info.get("labels") or []
    sparsity = manifest.get("sparsity") or {}
    pick = _shipping_choice(manifest)
    shape = inp.get("shape", ["?"])
    pick_name = pick["path"] if pick else f"{name}.dense.fp32.tflite"

    lines = [f"# {name}: sparse TFLite models for XNNPACK", "",
             f"`{manifest.get('architecture', '?')}` trained with recipe `{manifest.get('recipe', '?')}`, "
             f"pruned to {format_pct(sparsity.get('overall'))} zeros in its pruned layers "
             f"(target {format_pct(sparsity.get('target'))}) and exported by tfsparse "
             f"{manifest.get('tfsparse_version', '?')} on {manifest.get('created', '?')}.", ""]
    if pick:
        metric = manifest_io.task_metric(manifest)
        score = manifest_io.file_score(pick, metric)
        scored = f"test {metric_label(metric)} {format_score(metric, score)}, " if score is not None else ""
        lines += [f"**Ship `{pick['path']}`** ({format_size(pick.get('bytes'))}, {scored}XNNPACK verdict "
                  f"`{(pick.get('xnnpack') or {}).get('verdict')}`) unless the table says otherwise for your target.", ""]
    lines += ["## Files", "", report_table(manifest), ""]
    lines += ["## Input and output", "",
              f"- Input `{inp.get('name', 'image')}`: {inp.get('dtype', 'float32')} `{shape}` "
              f"({inp.get('layout', 'NHWC')}), batch 1.",
              _preprocessing(norm, inp),
              f"- Output `{out.get('name', 'probabilities')}`: {out.get('dtype', 'float32')} "
              f"`{out.get('shape', ['?'])}`, {out.get('meaning', 'one score per label')}.",
              "- Every variant (including int8) takes and returns float32, so the app code is the same for all.",
              "- The same facts are stored inside each file (metadata name `tfsparse`; "
              "`python -m tfsparse.inspect FILE` prints them).", ""]
    if labels:
        lines += ["## Labels", "", "| index | label |", "|---|---|"]
        lines += [f"| {i} | {label} |" for i, label in enumerate(labels)] + [""]
    layers = sparsity.get("layers") or {}
    if layers:
        lines += ["## Sparsity", "", f"{len(layers)} pruned layers, {format_pct(sparsity.get('overall'))} zero overall "
                  "(XNNPACK runs a cluster sparse only when its 1x1 weights are more than 2/3 zero). "
                  "All other layers stay dense.", "",
                  "| layer | zeros |", "|---|---|"] + [f"| {k} | {format_pct(v)} |" for k, v in layers.items()] + [""]
    lines += retrieval_card.section(manifest, pick, out)  # empty unless a retrieval encoder
    lines += report.agent_lines(point)
    lines += ["## Latency", ""] + _latency_table(point) + [""]
    lines += ["## SHA-256", "", "```"]
    for entry in manifest["files"]:
        path = export_dir / entry["path"]
        if path.is_file():
            lines.append(f"{sha256(path)}  {entry['path']}")
    lines += ["```", "", "Check with `sha256sum -c` after copying the lines above into a file.", ""]
    io = _io_code(inp, out, labels, norm)
    lines += _android(pick_name, io) + _ios(pick_name, io)
    return "\n".join(lines) + "\n"


def _elided(value, limit: int = 16):
    """`value` with long lists (a tokenizer's vocabulary) replaced by their length."""
    if isinstance(value, dict):
        return {k: _elided(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"<{len(value)} items: in the file's metadata>"
    return value


def _preprocessing(norm: dict, inp: dict) -> str:
    if "scale" not in norm:
        formula = f"`{inp['formula']}`; " if inp.get("formula") else ""
        return f"- Preprocessing: {formula}as recorded by the data set: `{_elided(norm)}`."
    image = norm.get("kind", "image") == "image"
    text = (f"- Preprocessing: `{inp.get('formula', 'input = pixel * scale + offset')}` with scale = "
            f"{norm['scale']}, offset = {norm.get('offset', 0.0)}" + (", on raw 0-255 values" if image else ""))
    text += f" ({norm['note']})." if norm.get("note") else "."
    if not image:  # the front end's exact parameters (log-mel: window, hop, mel scale, ...)
        text += f" Front end: `{_elided({k: v for k, v in norm.items() if k not in ('note', 'scale', 'offset')})}`."
    return text


def report_table(manifest: dict) -> str:
    from tfsparse.reporting.export_table import table

    return table(manifest).rstrip()


def _elements(shape: list) -> int | str:
    n = 1
    for d in shape[1:]:
        if not isinstance(d, int):
            return "N"
        n *= d
    return n


def _io_code(inp: dict, out: dict, labels: list, norm: dict) -> dict:
    """What the loading snippets need: element counts and types, and how to fill the input."""
    shape, kind = inp.get("shape", ["?"]), norm.get("kind")
    ints = str(inp.get("dtype", "float32")).startswith("int")
    if "scale" in norm:
        what = "pixel" if norm.get("kind", "image") == "image" else norm.get("kind", "feature")
        fill = (f"for each {what} value (row-major, {inp.get('layout', 'NHWC')}): "
                f"value = {what} * {norm['scale']} + {norm.get('offset', 0.0)}")
    elif kind == "tokens":
        fill = ("token ids from the tokenizer stored in the file's metadata (`input.normalisation`: "
                "lower-case, vocabulary, out-of-vocabulary id), padded with 0 / truncated to the length")
    else:
        fill = f"{inp.get('formula', 'the features as described under Input and output')}"
    return {"shape": shape, "inputs": _elements(shape), "ints": ints, "fill": fill,
            "outputs": _elements(out.get("shape", ["?"])), "output_name": out.get("name", "probabilities"),
            "labels": labels}


def _android(file: str, io: dict) -> list[str]:
    put = "putInt(id)" if io["ints"] else "putFloat(value)"
    result = (["val best = output[0].indices.maxBy { output[0][it] }  // index into the labels table"]
              if io["labels"] else [f"// output[0]: the model's {io['output_name']}"])
    return ["## Android (Kotlin, LiteRT Interpreter with XNNPACK)", "",
            f"Copy `{file}` into `app/src/main/assets/` and add to `build.gradle.kts`:", "",
            "```kotlin",
            f'implementation("{LITERT_ANDROID}")',
            "android { androidResources { noCompress += \"tflite\" } }  // memory-map the file",
            "```", "",
            "```kotlin",
            "import org.tensorflow.lite.Interpreter",
            "import org.tensorflow.lite.support.common.FileUtil  // or map the asset yourself",
            "import java.nio.ByteBuffer",
            "import java.nio.ByteOrder",
            "",
            f'val model = FileUtil.loadMappedFile(context, "{file}")',
            "val options = Interpreter.Options()",
            "    .setUseXNNPACK(true)   // XNNPACK runs the sparse (SpMM) kernels on arm64",
            "    .setNumThreads(1)      // the latency table above is single-threaded",
            "val interpreter = Interpreter(model, options)",
            "",
            f"// {io['inputs']} {'int32' if io['ints'] else 'float32'} values, shape {io['shape']}",
            f"val input = ByteBuffer.allocateDirect(4 * {io['inputs']}).order(ByteOrder.nativeOrder())",
            f"// {io['fill']}; input.{put} for each",
            f"val output = Array(1) {{ FloatArray({io['outputs']}) }}",
            "interpreter.run(input.rewind(), output)",
            *result,
            "```", "",
            "`FileUtil` is in `com.google.ai.edge.litert:litert-support`; without it, open the asset's file "
            "descriptor and `FileChannel.map` it. Check that sparse inference engaged with `benchmark_model "
            "--enable_op_profiling=true` (`android_bench/run.sh` does this): sparse runs show "
            "`Convolution (NCHW, F32) SPMM` operators.", ""]


def _ios(file: str, io: dict) -> list[str]:
    kind = "Int32" if io["ints"] else "Float"
    return ["## iOS (Swift, TensorFlowLiteSwift)", "",
            "Add `pod 'TensorFlowLiteSwift'` to the Podfile and the `.tflite` file to the app bundle.", "",
            "```swift",
            "import TensorFlowLite",
            "",
            f'let path = Bundle.main.path(forResource: "{file.removesuffix(".tflite")}", ofType: "tflite")!',
            "var options = Interpreter.Options()",
            "options.threadCount = 1",
            "options.isXNNPackEnabled = true  // XNNPACK's sparse kernels run on arm64 iPhones",
            "let interpreter = try Interpreter(modelPath: path, options: options)",
            "try interpreter.allocateTensors()",
            f"// values: [{kind}] of {io['inputs']} elements, shape {io['shape']}: {io['fill']}",
            "let data = values.withUnsafeBufferPointer { Data(buffer: $0) }",
            "try interpreter.copy(data, toInputAt: 0)",
            "try interpreter.invoke()",
            "let output = try interpreter.output(at: 0)",
            f"let {'probabilities' if io['labels'] else io['output_name']} = output.data.withUnsafeBytes "
            "{ Array($0.bindMemory(to: Float32.self)) }",
            "```", ""]


def write(export_dir: Path, bench_dir: Path | None = None, run_dir: Path | None = None) -> Path:
    """Writes `export_dir/README.md`; latencies come from `bench_dir` when it holds bench JSON."""
    export_dir = Path(export_dir)
    point = None
    if bench_dir is not None:
        point = report.collect_point(export_dir.name, run_dir or export_dir, export_dir, bench_dir)
    return atomic.write_text(export_dir / CARD_NAME, card(export_dir, point))


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="export folder with manifest.json")
    parser.add_argument("--bench", help="folder with host.json / arm64-emu.json / android/results.json")
    args = parser.parse_args(argv)
    export_dir = Path(args.export_dir)
    if not export_dir.is_dir():
        raise UserError(f"{export_dir}: no such export folder")
    print(write(export_dir, Path(args.bench) if args.bench else None))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
