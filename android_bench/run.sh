#!/usr/bin/env bash
# Benchmark .tflite files on an Android phone or emulator over adb (dense vs sparse).
#   android_bench/run.sh --help
#   android_bench/run.sh --benchmark-binary PATH/TO/benchmark_model export/mobilenet_v1
# A thin wrapper: finds Python >= 3.11 and runs tfsparse.benchmarking.android (no TensorFlow).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

python=""
for candidate in "${TFSPARSE_PYTHON:-}" "$repo/.venv/bin/python" python3.11 python3.12 python3.13 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
  echo "android_bench/run.sh: error: needs Python >= 3.11 (set TFSPARSE_PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export TFSPARSE_PROG="android_bench/run.sh"
exec "$python" -m tfsparse.android_bench "$@"
