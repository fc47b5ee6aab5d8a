"""`[data] name = "text_csv"`: a CSV with a text column and a label column, tokenized, streamed.

    [model]
    name = "text_classifier"
    vocab_size = 10000
    sequence_length = 128

    [data]
    name = "text_csv"
    path = "reviews.csv"        # a header row, then one example per row (quoted fields may span lines)
    text_column = "text"        # default "text"
    label_column = "label"      # default "label"
    validation_split = 0.1      # default 0.1, stratified by label
    test_split = 0.1            # default 0.1

Class names are the label column's values, sorted. Tokenized with the same plain tokenizer as
the built-in BBC News set (`tfsparse.datasets.text`, vocabulary from the training rows only,
stored in the exported files' metadata). The CSV is read three times, row by row: labels,
vocabulary counts, then token ids written to a memory-mapped `.npy` in tfsparse's cache
(named by the file's size, time and the tokenizer settings), from which training streams
batches like `arrays`. A row with an empty text or label (or too few fields) is counted,
named by its line number in the progress line and metrics.json, and skipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tfsparse import atomic
from tfsparse.errors import UserError
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.arrays import ArraySplit
from tfsparse.datasets.streamed import unreadable_report
from tfsparse.datasets.text import Tokenizer
from tfsparse.paths import cache_dir


def fetch() -> str:
    return "nothing to fetch: reads the user's CSV (data.path)"


def _rows(path: Path, text_column: str, label_column: str):
    """(line number, text, label or None, problem or None) per data row."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for column, key in ((text_column, "text_column"), (label_column, "label_column")):
                if column not in header:
                    raise UserError(f"{path}: no column {column!r} (data.{key}); columns: {', '.join(header) or 'none'}")
            for row in reader:
                line = reader.line_num
                text, label = row.get(text_column), row.get(label_column)
                if text is None or label is None:
                    yield line, None, None, "too few fields"
                elif not text.strip() or not label.strip():
                    yield line, None, None, f"empty {'text' if not text.strip() else 'label'}"
                else:
                    yield line, text, label.strip(), None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV: {e}") from None


def load(data_config, model_args) -> Splits:
    path = Path(data_config.path).expanduser()
    if not path.is_file():
        raise UserError(f"data.path: no such file: {path}")
    text_column, label_column = data_config.text_column or "text", data_config.label_column or "label"
    # Pass 1: labels only (one small string per row), and the rows that cannot be used.
    names, problems = [], []
    for line, _text, label, problem in _rows(path, text_column, label_column):
        if problem:
            problems.append((f"{path}:{line}", problem))
        else:
            names.append(label)
    if not names:
        raise UserError(f"{path}: no usable rows ({len(problems)} rows without text or label)")
    labels = sorted(set(names))
    y = np.searchsorted(np.array(labels), np.array(names)).astype(np.int32)  # labels are sorted
    del names
    fractions = (data_config.validation_split if data_config.validation_split is not None else 0.1,
                 data_config.test_split if data_config.test_split is not None else 0.1)
    rng = np.random.default_rng(0)
    split_of = np.zeros(len(y), np.int8)  # 0 train, 1 val, 2 test
    for c in range(len(labels)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = int(round(len(idx) * fractions[1])), int(round(len(idx) * fractions[0]))
        if len(idx) - n_test - n_val < 1:
            raise UserError(f"{path}: label {labels[c]!r} has {len(idx)} rows, too few to split into train/val/test")
        split_of[idx[:n_test]], split_of[idx[n_test:n_test + n_val]] = 2, 1
    if not np.any(split_of == 2):
        raise UserError(f"{path}: no test rows (raise data.test_split or add rows)")
    vocab_size = int(model_args.get("vocab_size", 10000))
    sequence_length = int(model_args.get("sequence_length", 256))

    def usable_texts(which=None):
        i = 0
        for _line, text, _label, problem in _rows(path, text_column, label_column):
            if problem is None:
                if which is None or split_of[i] == which:
                    yield text
                i += 1

    # Pass 2: the vocabulary, from the training rows only.
    try:
        tokenizer = Tokenizer.fit(usable_texts(0), vocab_size=vocab_size, sequence_length=sequence_length)
    except ValueError as e:
        raise UserError(f"model: {e}") from None
    # Pass 3: token ids into a memory-mapped .npy, keyed by the file and the tokenizer.
    stat = os.stat(path)
    key = hashlib.sha256(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, text_column, label_column,
                                     tokenizer.get_config()], sort_keys=True).encode()).hexdigest()[:16]
    ids_file = cache_dir("text_csv", f"{path.stem}-{key}.npy")
    if not ids_file.is_file():
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(ids_file) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(len(y), sequence_length))
            for i, text in enumerate(usable_texts()):
                out[i] = tokenizer.ids(text)
            out.flush()
            del out
    ids = np.load(ids_file, mmap_mode="r")
    common = {"source": ids, "shuffle_buffer": data_config.shuffle_buffer or 1024}
    part = {s: np.flatnonzero(split_of == k) for k, s in enumerate(("train", "val", "test"))}
    return Splits(
        name="text_csv", labels=labels,
        x_train=ArraySplit(part["train"], y[part["train"]], name="train", **common), y_train=y[part["train"]],
        x_val=ArraySplit(part["val"], y[part["val"]], name="val", **common), y_val=y[part["val"]],
        x_test=ArraySplit(part["test"], y[part["test"]], name="test", **common), y_test=y[part["test"]],
        preprocessing={"kind": "tokens", **tokenizer.get_config(),
                       "note": f"{path.name}: column {text_column!r} tokenized, vocabulary from the training rows"},
        data_report=unreadable_report("text_csv", str(path), problems, classes=labels,
                                      examples={s: int(len(v)) for s, v in part.items()},
                                      text_column=text_column, label_column=label_column),
    )
