"""Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747) from Debian's package.

60k training / 10k test 28x28 grey images of 10 clothing classes. PyPI and the
Keras/TFDS loaders download at run time, which these machines cannot do; the
Debian package `dataset-fashion-mnist` carries the original files. `fetch()`
gets it with `apt-get download` (no root needed unless apt's package lists are
empty), checks the SHA-256 of each file and caches them under
`~/.cache/tfsparse/fashion-mnist/`.

For XNNPACK's sparse stem (a 3x3 stride-2 conv on 3 channels) the grey channel
is replicated to 3 and the images are resized to the recipe's `input_size`.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tfsparse.datasets.splits import Splits
from tfsparse.errors import UserError
from tfsparse.paths import cache_dir

DEB_PACKAGE = "dataset-fashion-mnist"
DEB_DIR = "usr/share/datasets/fashion-mnist"
FILES = {  # SHA-256 of the files in Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FETCH_COMMAND = "python -m tfsparse.datasets fetch fashion_mnist"


def data_dir() -> Path:
    return cache_dir("fashion-mnist")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_fetched() -> bool:
    return all((data_dir() / name).is_file() for name in FILES)


def fetch(verbose: bool = True) -> Path:
    """Downloads the Debian package once, verifies it, caches the four files."""
    target = data_dir()
    if is_fetched():
        return target
    with tempfile.TemporaryDirectory(prefix="tfsparse-fmnist-") as tmp:
        tmp = Path(tmp)
        download = ["apt-get", "download", DEB_PACKAGE]
        result = subprocess.run(download, cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            # A fresh machine may have no package lists yet.
            if verbose:
                print("apt-get download failed; running apt-get update once (needs root)")
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
            result = subprocess.run(download, cwd=tmp, capture_output=True, text=True)
        debs = list(tmp.glob(f"{DEB_PACKAGE}_*.deb"))
        if result.returncode != 0 or not debs:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"could not download Debian package {DEB_PACKAGE}: {last[0]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], check=True)
        staging = Path(tempfile.mkdtemp(prefix=".fashion-mnist.", dir=_parent(target)))
        for name, digest in FILES.items():
            source = tmp / "x" / DEB_DIR / name
            if not source.is_file() or _sha256(source) != digest:
                shutil.rmtree(staging, ignore_errors=True)
                raise UserError(f"{DEB_PACKAGE}: {name} is missing or fails its SHA-256 check")
            shutil.copy(source, staging / name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic: the folder is complete or absent
    if verbose:
        print(f"fashion_mnist: cached in {target}")
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _read(name: str, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(data_dir() / name).read(), np.uint8, offset=offset)


def raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as uint8, images 28x28."""
    if not is_fetched():
        raise UserError(f"Fashion-MNIST is not in {data_dir()}: run `{FETCH_COMMAND}` (or `make data`)")
    x_train = _read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_train = _read("train-labels-idx1-ubyte.gz", 8)
    x_test = _read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_test = _read("t10k-labels-idx1-ubyte.gz", 8)
    return x_train, y_train, x_test, y_test


def to_rgb(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, 28, 28) -> uint8 (N, size, size, 3): bilinear resize, grey replicated."""
    if size == images.shape[1]:
        resized = images
    else:
        import tensorflow as tf  # only needed when resizing

        resized = np.concatenate([
            np.round(tf.image.resize(images[i:i + 8192, :, :, None], (size, size)).numpy()[..., 0])
            for i in range(0, len(images), 8192)
        ]).clip(0, 255).astype(np.uint8)
    return np.repeat(resized[..., None], 3, axis=-1)


def load(data_config, model_args) -> Splits:
    """Splits: the last `validation_examples` of the training set are validation."""
    size = int(model_args.get("input_size", 28))
    x_train, y_train, x_test, y_test = raw()
    n_val = data_config.validation_examples
    if not 0 <= n_val < len(x_train):
        raise UserError(f"data.validation_examples={n_val} leaves no training data")
    split = len(x_train) - n_val
    return Splits(
        name="fashion_mnist", labels=LABELS,
        x_train=to_rgb(x_train[:split], size), y_train=y_train[:split].astype(np.int32),
        x_val=to_rgb(x_train[split:], size), y_val=y_train[split:].astype(np.int32),
        x_test=to_rgb(x_test, size), y_test=y_test.astype(np.int32),
        preprocessing={"kind": "image", "layout": "NHWC", "channels": 3, "height": size, "width": size,
                       "scale": 1 / 255, "offset": 0.0,
                       "note": "grey 28x28 replicated to 3 channels, bilinear-resized; input = pixel / 255"},
    )
