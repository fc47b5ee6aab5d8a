"""A folder of images like a user's: Fashion-MNIST (offline, `make data`) written as PNGs.

    python examples/byo/fashion_mnist_folder.py clothes 1000 200

writes clothes/train/<class>/*.png (1000 per class) and clothes/test/<class>/*.png (200 per
class), 28x28 grey, class names as folder names: the shape `[data] name = "image_folder"`
reads (it decodes to RGB and resizes). Used by the README's "Bring your own model and data"
walk-through; any folder of JPEG/PNG files per class works the same way.
"""

import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image  # Pillow: what tfsparse's tests write PNGs with

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def main(out: Path, per_train: int, per_test: int) -> None:
    source = Path.home() / ".cache" / "tfsparse" / "fashion-mnist"
    for split, prefix, per in (("train", "train", per_train), ("test", "t10k", per_test)):
        images = np.frombuffer(gzip.open(source / f"{prefix}-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
        labels = np.frombuffer(gzip.open(source / f"{prefix}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
        images = images.reshape(-1, 28, 28)
        for index, name in enumerate(NAMES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(labels == index)[:per]:
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    print(sum(1 for _ in out.rglob("*.png")), "PNGs in", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
