"""`[data] name = "arrays"`: the user's numpy arrays in one `.npz`, memory-mapped, streamed.

    np.savez("data.npz", x_train=..., y_train=..., x_test=..., y_test=...,
             x_val=..., y_val=...,            # optional: else validation_split of train (default 0.1)
             class_names=np.array(["cat", "dog"]))   # optional: else "0", "1", ...

    [data]
    name = "arrays"
    path = "data.npz"

An `.npz` written by `np.savez` stores every array uncompressed: those are opened with
`np.memmap` at their offset inside the zip, so only the batches being trained on are read
into memory. `np.savez_compressed` members cannot be mapped: each is read whole (the data
report says `mmap: false` for it). `y` holds integer class indices. `uint8` images of shape
(N, H, W, C) are fed as `pixel / 255` (like the built-in image sets); anything else is fed
as stored (float64 as float32).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from tfsparse.errors import UserError
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.streamed import StreamedSplit, unreadable_report

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def fetch() -> str:
    return "nothing to fetch: reads the user's .npz (data.path)"


def _mapped(path: Path, zf: zipfile.ZipFile, member: str):
    """The array `member` of the zip at `path` as a read-only np.memmap, or None if it is compressed.

    numpy maps only bare .npy files (`np.load(mmap_mode=...)` ignores the mode for .npz), so the
    offset of the member's data inside the zip is found here: past the zip's local file header
    (30 bytes + name + extra field, APPNOTE 4.3.7) and numpy's own .npy header.
    """
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise UserError(f"{path}: {member[:-4]} holds Python objects; save numbers (or unicode class names)")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def open_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """{name: array (memmap where possible)}, {name: mapped?}; a file numpy cannot read is one error."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.endswith(".npy")]
            arrays, mapped = {}, {}
            for member in members:
                name = member[:-4]
                array = _mapped(path, zf, member)
                mapped[name] = array is not None
                if array is None:
                    with zf.open(member) as f:
                        array = np.lib.format.read_array(f, allow_pickle=False)
                arrays[name] = array
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read it as a .npz: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return arrays, mapped


class ArraySplit(StreamedSplit):
    """Keys are row indices into a (memory-mapped) array; rows are gathered per batch."""

    def __init__(self, keys, labels, *, source: np.ndarray, **kw):
        super().__init__(keys, labels, **kw)
        self.source = source
        self.element_shape = tuple(source.shape[1:])
        self.element_dtype = np.float32 if source.dtype.kind == "f" else source.dtype

    def _gather(self, index: np.ndarray) -> np.ndarray:
        order = np.argsort(index)  # sorted reads are sequential on disk; then restore the order
        rows = np.asarray(self.source[index[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return out.astype(self.element_dtype, copy=False)

    def settings(self) -> dict:
        return {"shape": self.source.shape, "dtype": str(self.source.dtype)}

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, shard: tuple[int, int] | None = None):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((np.asarray(self.keys, np.int64), self.labels))
        if shard is not None:  # a multi-worker run: only this worker's rows are read (StreamedSplit.dataset)
            ds = ds.shard(*shard)
        if shuffle:
            ds = ds.shuffle(max(1, len(self)), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        dtype = tf.as_dtype(self.element_dtype)

        def gather(index, y):
            x = tf.numpy_function(self._gather, [index], dtype, stateful=False)
            x.set_shape((None, *self.element_shape))
            return x, y

        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
        if self.cache:
            ds = ds.cache(self.cache_file(shard))
        return ds


def load(data_config, model_args) -> Splits:
    path = Path(data_config.path).expanduser()
    if not path.is_file():
        raise UserError(f"data.path: no such file: {path}")
    arrays, mapped = open_npz(path)
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)} (has {', '.join(sorted(arrays)) or 'nothing'})")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise UserError(f"{path}: has {'x_val' if 'x_val' in arrays else 'y_val'} without its pair")
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    for s in splits:
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.ndim < 2 or len(x) != len(y):
            raise UserError(f"{path}: x_{s} has {len(x)} rows, y_{s} {len(y)}" if x.ndim >= 1 and len(x) != len(y)
                            else f"{path}: x_{s} must have shape (examples, ...), got {x.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise UserError(f"{path}: y_{s} must be integer class indices of shape (N,), got {y.dtype} {y.shape}")
        if x.shape[1:] != arrays["x_train"].shape[1:]:
            raise UserError(f"{path}: x_{s} examples have shape {x.shape[1:]}, x_train's {arrays['x_train'].shape[1:]}")
    if len(arrays["x_train"]) == 0 or len(arrays["x_test"]) == 0:
        raise UserError(f"{path}: x_train and x_test need at least one example")
    top = max(int(np.max(arrays[f"y_{s}"])) for s in splits if len(arrays[f"y_{s}"]))
    if "class_names" in arrays:
        labels = [str(c) for c in np.asarray(arrays["class_names"]).ravel()]
        for s in splits:
            y = np.asarray(arrays[f"y_{s}"])
            if len(y) and (y.min() < 0 or y.max() >= len(labels)):
                raise UserError(f"{path}: y_{s} has class {int(y.max() if y.max() >= len(labels) else y.min())}, "
                                f"but class_names lists {len(labels)} classes")
    else:
        labels = [str(i) for i in range(top + 1)]
    y_train = np.asarray(arrays["y_train"], np.int32)
    train_keys = np.arange(len(y_train))
    if "x_val" in arrays:
        val = (np.arange(len(arrays["y_val"])), np.asarray(arrays["y_val"], np.int32), arrays["x_val"])
    else:
        fraction = data_config.validation_split if data_config.validation_split is not None else 0.1
        order = np.random.default_rng(0).permutation(len(y_train))
        n_val = int(round(len(order) * fraction))
        if n_val >= len(order):
            raise UserError(f"{path}: data.validation_split {fraction} leaves no training data")
        val_keys, train_keys = np.sort(order[:n_val]), np.sort(order[n_val:])
        val = (val_keys, y_train[val_keys], arrays["x_train"])
    x_train = arrays["x_train"]
    image = x_train.dtype == np.uint8 and x_train.ndim == 4
    preprocessing = ({"kind": "image", "layout": "NHWC", "channels": int(x_train.shape[3]),
                      "height": int(x_train.shape[1]), "width": int(x_train.shape[2]), "scale": 1 / 255,
                      "offset": 0.0, "note": "uint8 arrays from the user's .npz; input = pixel / 255"}
                     if image else
                     {"kind": "arrays", "layout": "as stored in the .npz (batch first)",
                      "note": "the user's arrays fed as stored (float64 as float32)"})
    common = {"cache": None, "shuffle_buffer": data_config.shuffle_buffer or 1024}
    y_test = np.asarray(arrays["y_test"], np.int32)
    return Splits(
        name="arrays", labels=labels,
        x_train=ArraySplit(train_keys, y_train[train_keys], source=x_train, name="train", **common),
        y_train=y_train[train_keys],
        x_val=ArraySplit(val[0], val[1], source=val[2], name="val", **common), y_val=val[1],
        x_test=ArraySplit(np.arange(len(y_test)), y_test, source=arrays["x_test"], name="test", **common),
        y_test=y_test,
        preprocessing=preprocessing,
        data_report=unreadable_report("arrays", str(path), [], classes=labels,
                                      examples={"train": len(train_keys), "val": len(val[0]), "test": len(y_test)},
                                      mmap={k: v for k, v in mapped.items() if k.startswith("x_")}),
    )
