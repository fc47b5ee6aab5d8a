"""`[data] name = "image_folder"`: the user's images, one sub-folder per class, streamed.

    path/cat/0001.jpg, path/dog/0002.png, ...                 split by validation_split / test_split
    path/train/cat/..., path/val/cat/..., path/test/cat/...    explicit splits (val/ and test/ optional)

Class names are the sub-folder names, sorted (index = position), and become the model card's
labels. Files ending in .jpg/.jpeg/.png/.bmp/.gif are decoded by TensorFlow's own decoders
(`tf.io.decode_image`: 3 channels, first frame of a GIF) and bilinear-resized to `image_size`
(aspect ratio not kept, as `tf.keras.utils.image_dataset_from_directory` does by default).

Every image is decoded once when the data set is first opened (in parallel threads), because a file
that fails inside a tf.data pipeline would stop training in the middle of an epoch without its
name. A file that cannot be decoded is *named* in a progress line and in metrics.json
(`data.unreadable_files`), *counted* (`data.unreadable`) and left out; if no image of the data
set can be read, or a class folder has no images, that is an error. Other files (a README, a
.DS_Store) are counted as `ignored_files`. The verdicts are remembered per file
(`tfsparse.datasets.readability`): a later open decodes only new or changed files.

Recipe:

    [data]
    name = "image_folder"
    path = "/data/flowers"          # or --set data.path=...
    image_size = 96                 # or [height, width]; default: model.input_size
    validation_split = 0.1          # used when there is no val/ folder
    test_split = 0.1                # used when there is no test/ folder
    augment = ["flip", "translate"] # training split only: flip, translate, crop
    cache = true                    # decoded images cached on disk (true: ~/.cache/tfsparse/data-cache)
    pixel_scale = 0.00784313725     # what the model takes: pixel * pixel_scale + pixel_offset
    pixel_offset = -1.0             # (default 1/255, 0; raw pixels for a model with its own Rescaling: 1, 0)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from tfsparse.errors import UserError
from tfsparse.datasets.readability import scan
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.streamed import StreamedSplit, data_cache, unreadable_report

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = ("train", "val", "test")
AUGMENTATIONS = ("flip", "translate", "crop")


def _decode(path, size):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, size)  # bilinear, float
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    image.set_shape((*size, 3))
    return image


def augmentation(names: list[str], size: tuple[int, int]):
    """One training image (uint8 HxWx3) -> a randomly flipped / shifted / cropped one, same shape.

    `translate` shifts by up to 1/8 of the size (reflect-padded, then a random crop back),
    `crop` takes a random crop of 80-100% of each side and resizes it back (a zoom).
    """
    import tensorflow as tf

    h, w = size

    def apply(image):
        if "flip" in names:
            image = tf.image.random_flip_left_right(image)
        if "translate" in names:
            ph, pw = max(1, h // 8), max(1, w // 8)
            padded = tf.pad(image, [[ph, ph], [pw, pw], [0, 0]], mode="REFLECT")
            image = tf.image.random_crop(padded, (h, w, 3))
        if "crop" in names:
            fraction = tf.random.uniform((), 0.8, 1.0)
            ch = tf.cast(tf.round(fraction * h), tf.int32)
            cw = tf.cast(tf.round(fraction * w), tf.int32)
            crop = tf.image.random_crop(image, tf.stack([ch, cw, 3]))
            image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(crop, size)), 0, 255), tf.uint8)
        image.set_shape((h, w, 3))
        return image

    return apply


class ImageFolderSplit(StreamedSplit):
    element_dtype = np.uint8

    def __init__(self, keys, labels, *, size: tuple[int, int], **kw):
        super().__init__(keys, labels, **kw)
        self.size = tuple(size)
        self.element_shape = (*self.size, 3)

    def settings(self) -> dict:
        return {"size": self.size}

    def decode(self, key):
        return _decode(key, self.size)


def check_image(path: str) -> str | None:
    """None if TensorFlow decodes the file, else the reason, one line."""
    import tensorflow as tf

    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return None
    except Exception as e:  # noqa: BLE001 - TF raises InvalidArgumentError, NotFoundError, ...
        message = (getattr(e, "message", None) or str(e) or type(e).__name__).strip().splitlines()[0]
        # TF wraps the decoder's words in "{{function_node ...}} ... [Op:DecodeImage] name:".
        message = re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", message)
        return message[:200]


def _class_folders(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _list(root: Path, extensions=EXTENSIONS, what: str = "images") -> tuple[dict[str, list[str]], int]:
    """{class: [file paths]} of one folder of class folders, and the count of other files."""
    classes = _class_folders(root)
    if not classes:
        raise UserError(f"{root}: no {what} (expected one sub-folder per class holding "
                        f"{'/'.join(e[1:] for e in extensions)} files)")
    files, ignored = {}, 0
    for name, folder in classes.items():
        images = []
        for dirpath, _dirs, names in os.walk(folder):
            for n in sorted(names):
                if n.lower().endswith(extensions):
                    images.append(os.path.join(dirpath, n))
                elif not n.startswith("."):
                    ignored += 1
        if not images:
            raise UserError(f"{folder}: empty class folder (no {'/'.join(e[1:] for e in extensions)} files)")
        files[name] = sorted(images)
    return files, ignored


def image_size(data_config, model_args) -> tuple[int, int]:
    size = data_config.image_size if data_config.image_size is not None else model_args.get("input_size")
    if size is None:
        raise UserError("image_folder: set data.image_size (or model.input_size)")
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def fetch() -> str:
    return "nothing to fetch: reads the user's folder (data.path)"


def folder_splits(data_config, extensions=EXTENSIONS, check=check_image, what: str = "images"):
    """(labels, {split: (paths, class indices)}, {unreadable path: reason}, ignored file count, layout,
    files checked now) of a folder of class folders (or of train/, val/, test/ folders of them);
    shared with audio_folder. Files unchanged since an earlier open are not decoded again
    (`tfsparse.datasets.readability`)."""
    root = Path(data_config.path).expanduser()
    if not root.is_dir():
        raise UserError(f"data.path: no such folder: {root}")
    explicit = (root / "train").is_dir()
    if explicit:
        listed = {s: _list(root / s, extensions, what) for s in SPLIT_FOLDERS if (root / s).is_dir()}
        labels = list(listed["train"][0])
        for s, (files, _) in listed.items():
            if list(files) != labels:
                extra = sorted(set(files) ^ set(labels))
                raise UserError(f"{root / s}: its classes differ from {root / 'train'}'s "
                                f"({len(files)} vs {len(labels)} classes; not in both: {', '.join(extra)})")
        ignored = sum(n for _, n in listed.values())
    else:
        files, ignored = _list(root, extensions, what)
        labels = list(files)
        listed = {"all": (files, ignored)}
    everything = [f for files, _ in listed.values() for c in files.values() for f in c]
    bad, checked = scan(everything, check, root=root)
    if len(bad) == len(everything):
        first = next(iter(bad.items()))
        raise UserError(f"{root}: none of the {len(everything)} {what} can be read (e.g. {first[0]}: {first[1]})")

    def readable(files: dict[str, list[str]]):
        keys, ys = [], []
        for index, name in enumerate(labels):
            good = [f for f in files[name] if f not in bad]
            keys += good
            ys += [index] * len(good)
        return np.array(keys, dtype=str), np.array(ys, np.int32)

    parts = {}
    if explicit:
        for s in SPLIT_FOLDERS:
            parts[s] = readable(listed[s][0]) if s in listed else None
    # Folders missing: cut them from train, per class, in a seeded order (stratified).
    if not explicit or parts["val"] is None or parts["test"] is None:
        source = readable(listed["train" if explicit else "all"][0])
        fractions = {"val": data_config.validation_split if data_config.validation_split is not None else 0.1,
                     "test": data_config.test_split if data_config.test_split is not None else 0.1}
        if explicit:
            fractions = {s: f if parts[s] is None else 0.0 for s, f in fractions.items()}
        rng = np.random.default_rng(0)
        chosen = {s: [] for s in SPLIT_FOLDERS}
        for c in range(len(labels)):
            idx = rng.permutation(np.flatnonzero(source[1] == c))
            n_test = int(round(len(idx) * fractions["test"]))
            n_val = int(round(len(idx) * fractions["val"]))
            if len(idx) - n_test - n_val < 1:
                raise UserError(f"{root}: class {labels[c]!r} has {len(idx)} readable {what}, too few to split "
                                f"into train/val/test (validation_split {fractions['val']}, "
                                f"test_split {fractions['test']})")
            chosen["test"].append(idx[:n_test])
            chosen["val"].append(idx[n_test:n_test + n_val])
            chosen["train"].append(idx[n_test + n_val:])
        for s in SPLIT_FOLDERS:
            if parts.get(s) is None or s == "train":
                order = np.sort(np.concatenate(chosen[s])).astype(int)
                parts[s] = (source[0][order], source[1][order])
    if len(parts["test"][0]) == 0:
        raise UserError(f"{root}: no test {what} (add a test/ folder or raise data.test_split)")
    return labels, parts, bad, ignored, "train/val/test folders" if explicit else "class folders", checked


def load(data_config, model_args) -> Splits:
    size = image_size(data_config, model_args)
    root = Path(data_config.path).expanduser()
    labels, parts, bad, ignored, layout, checked = folder_splits(data_config)
    cache = data_cache(data_config.cache)
    augment = augmentation(data_config.augment or [], size) if data_config.augment else None
    buffer = data_config.shuffle_buffer or 1024

    def split(s: str, **kw) -> ImageFolderSplit:
        return ImageFolderSplit(*parts[s], size=size, cache=cache, shuffle_buffer=buffer, name=s, **kw)

    problems = sorted(bad.items())
    scale = 1 / 255 if data_config.pixel_scale is None else float(data_config.pixel_scale)
    offset = 0.0 if data_config.pixel_offset is None else float(data_config.pixel_offset)
    return Splits(
        name="image_folder", labels=labels,
        x_train=split("train", augment=augment), y_train=parts["train"][1],
        x_val=split("val"), y_val=parts["val"][1],
        x_test=split("test"), y_test=parts["test"][1],
        preprocessing={"kind": "image", "layout": "NHWC", "channels": 3, "height": size[0], "width": size[1],
                       "scale": scale, "offset": offset,
                       "note": f"decoded to RGB, bilinear-resized to {size[0]}x{size[1]} (aspect not kept); "
                               f"input = pixel * {scale:.6g} + {offset:g}"},
        data_report=unreadable_report(
            "image_folder", str(root), problems, classes=labels, ignored_files=ignored,
            examples={s: int(len(parts[s][0])) for s in SPLIT_FOLDERS},
            layout=layout, checked_now=checked),
    )
