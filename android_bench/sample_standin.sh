#!/usr/bin/env bash
# Regenerates android_bench/sample_summary_standin.md with the adb STAND-IN (no device involved).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
mkdir -p "$tmp/export/mobilenet_v1"
# Small real graphs (tests/graphs.py), so that the sparse files get real dense twins.
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" - "$tmp/export/mobilenet_v1" <<'PY'
import sys
from pathlib import Path
from tests.graphs import build_tflite
out = Path(sys.argv[1])
for name, graph in [("dense.fp32", "unpruned"), ("sparse.fp32", "mobilenet"), ("sparse.fp16", "mobilenet_fp16"),
                    ("sparse.int8", "int8")]:
    (out / f"mobilenet_v1.{name}.tflite").write_bytes(build_tflite(graph))
PY
cat > "$tmp/export/mobilenet_v1/manifest.json" <<'JSON'
{"model": "mobilenet_v1", "files": [
 {"path": "mobilenet_v1.dense.fp32.tflite", "variant": "fp32", "dense": true, "runs": true},
 {"path": "mobilenet_v1.sparse.fp32.tflite", "variant": "fp32", "dense": false, "runs": true},
 {"path": "mobilenet_v1.sparse.fp16.tflite", "variant": "fp16", "dense": false, "runs": true},
 {"path": "mobilenet_v1.sparse.int8.tflite", "variant": "int8", "dense": false, "runs": true}]}
JSON
printf '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' > "$tmp/benchmark_model"  # an aarch64 ELF header: the stand-in never runs it
echo '{"latency_us": {"dense": 20400, "sparse": 7900}, "profile": {"int8": "dense", "twin": "dense"}, "latency_by_name": {"int8.dense-twin": 11500, "int8": 11800, "twin": 20100}}' > "$tmp/scenario.json"
ADB=tests/fake_adb/adb FAKE_ADB_SCENARIO="$tmp/scenario.json" FAKE_ADB_LOG="$tmp/adb.log" \
TFSPARSE_BENCHMARK_MODEL="$tmp/benchmark_model" FAKE_ADB_PYTHON="$(command -v python3)" TFSPARSE_PYTHON="$PYTHON" \
  android_bench/run.sh --threads 1,4 --out "$tmp/report" "$tmp/export/mobilenet_v1"
{ printf '%s\n' "> **Produced by the adb STAND-IN (tests/fake_adb), not by a device.** The numbers are" \
    "> the stand-in's canned latencies; they show the report's format only. Replace this file with" \
    "> the summary.md of a real device run when one is available. Regenerate: \`bash android_bench/sample_standin.sh\`." ""
  cat "$tmp/report/summary.md"; } > android_bench/sample_summary_standin.md
rm -rf "$tmp"
