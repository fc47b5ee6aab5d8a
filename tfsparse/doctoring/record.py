"""What `tfsparse doctor --fix` stores inside the fixed `.keras` file, read back by train and export.

A `.keras` file is a zip (config.json, metadata.json, model.weights.h5); Keras reads those
members by name and ignores others, so the doctor adds `tfsparse_doctor.json`: the changes it
made and, above all, the input preprocessing it moved out of the graph (a `Rescaling` /
`Normalization` layer). Training feeds the model `pixel * scale + offset` composed with that
transform, and export writes the composed formula into the `.tflite` metadata, so the app
applies exactly what the removed layers did. No TensorFlow here.

    record = read("fixed.keras")          # None for a file the doctor did not write
    record["input_preprocessing"]         # {"scale": ..., "offset": ...} or None
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "tfsparse_doctor.json"


def read(path) -> dict | None:
    """The doctor's record of a `.keras` file, or None (not a zip, or no record)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(MEMBER)) if MEMBER in z.namelist() else None
    except (zipfile.BadZipFile, ValueError, KeyError):
        return None


def add(path, record: dict) -> None:
    """Adds (or replaces) the record in the `.keras` zip at `path` (a temporary being written)."""
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if MEMBER in names:  # zipfile cannot replace a member: copy the others
        tmp = path.with_name(path.name + ".rec")
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in names:
                if name != MEMBER:
                    dst.writestr(name, src.read(name))
        shutil.move(tmp, path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MEMBER, json.dumps(record, indent=2, default=_plain))


def compose(preprocessing: dict, removed: dict | None) -> dict:
    """The data's `pixel * scale + offset` followed by the removed layers' `x * scale + offset`.

    Scalars stay scalars; a per-channel transform gives lists (one value per channel).
    """
    if not removed:
        return preprocessing
    s1 = np.asarray(preprocessing.get("scale", 1.0), dtype=np.float64)
    o1 = np.asarray(preprocessing.get("offset", 0.0), dtype=np.float64)
    s2 = np.asarray(removed["scale"], dtype=np.float64)
    o2 = np.asarray(removed["offset"], dtype=np.float64)
    out = dict(preprocessing)
    out["scale"] = _plain(s1 * s2)
    out["offset"] = _plain(o1 * s2 + o2)
    out["moved_from_model"] = removed.get("layers", [])
    return out


def _plain(value):
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else [float(v) for v in value.reshape(-1)]
