"""Which files of a data folder can be decoded: each checked once, the verdicts remembered.

A file that fails inside a tf.data pipeline stops training in the middle of an epoch without
its name, so `image_folder` and `audio_folder` decode every file when the data set is opened
and leave out (and name) the ones that fail. On a large folder that is minutes of decoding,
and it happened every time a stage opened the data (`train`, then `export`) on every run. Here
the verdicts are kept in tfsparse's cache folder, one file per data folder and check, keyed per
file by its size and modification time and by the check itself (its name, the decoder's
TensorFlow and Python versions): a new, replaced or touched file is decoded again, an unchanged
one is not. Workers of a multi-worker run that share a home folder share the verdicts (each
writes the whole file atomically); on separate machines each still decodes every file once.

    >>> from tfsparse.datasets.image_folder import check_image
    >>> bad, checked = scan(["a/cat/1.png", "a/cat/2.png"], check_image, root="a")  # doctest: +SKIP
    >>> bad, checked = scan(["a/cat/1.png", "a/cat/2.png"], check_image, root="a")  # doctest: +SKIP
    >>> checked  # nothing decoded the second time: no file changed  # doctest: +SKIP
    0

No library keeps per-file verdicts keyed by a file's stat (joblib.Memory caches whole calls,
which a single touched file would invalidate), hence this module.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from tfsparse import atomic
from tfsparse.paths import cache_dir

FORMAT = 1


def check_id(check: Callable) -> str:
    """What decides a check's verdicts: its name and the decoders' versions."""
    try:
        tf_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tf_version = "none"
    return (f"{check.__module__}.{check.__qualname__} tensorflow {tf_version} "
            f"python {sys.version_info[0]}.{sys.version_info[1]}")


def verdict_file(root: str | os.PathLike, check: Callable) -> Path:
    """The cache file of one data folder's verdicts under one check."""
    return _verdict_path(root, check_id(check))


def _verdict_path(root: str | os.PathLike, check: str) -> Path:
    digest = hashlib.sha256(f"{Path(root).resolve()}\0{check}".encode()).hexdigest()[:20]
    return cache_dir("readability", f"{digest}.json")


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # gone or unreadable: the check says why
    return [st.st_size, st.st_mtime_ns]


def _remembered(path: Path, wanted: str) -> dict:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("check") != wanted:
        return {}
    files = saved.get("files")
    return files if isinstance(files, dict) else {}


def scan(files: Sequence[str], check: Callable[[str], str | None], *, root: str | os.PathLike,
         remember: bool = True) -> tuple[dict[str, str], int]:
    """({path: reason} of every file `check` cannot read, how many files were checked now).

    `check(path)` returns None for a readable file, else the reason in one line. Files whose
    size and modification time match the remembered verdict are not checked again. The rest
    are checked in threads (TensorFlow's decoders release the GIL). `remember=False` checks
    every file and leaves the cache alone.
    """
    stats = {f: _stat(f) for f in files}
    wanted = check_id(check)
    cache = _verdict_path(root, wanted) if remember else None
    known = _remembered(cache, wanted) if cache else {}
    verdicts: dict[str, str | None] = {}
    todo = []
    for f in files:
        entry = known.get(f)
        if stats[f] is not None and isinstance(entry, list) and len(entry) == 3 and entry[:2] == stats[f]:
            verdicts[f] = entry[2]
        else:
            todo.append(f)
    if todo:
        with ThreadPoolExecutor(max_workers=max(2, 2 * (os.cpu_count() or 1))) as pool:
            verdicts.update(zip(todo, pool.map(check, todo)))
    if cache and (todo or set(known) != set(files)):
        saved = {f: [*stats[f], verdicts[f]] for f in files if stats[f] is not None}
        try:
            atomic.write_text(cache, json.dumps({"format": FORMAT, "check": wanted, "root": str(root),
                                                 "files": saved}))
        except OSError:
            pass  # a read-only cache folder costs the next open a re-check, nothing else
    return {f: r for f, r in verdicts.items() if r is not None}, len(todo)
