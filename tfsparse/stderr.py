"""File descriptor 2, captured: quiet C++ logs (TensorFlow, the converter, LiteRT).

TensorFlow, its converter and LiteRT log from C++ straight to file descriptor 2, below
Python's `sys.stderr`, burying one-line errors and progress lines. `captured_stderr()`
is the one place that redirects it; what was captured can go into an error message.

    from tfsparse.stderr import captured_stderr
    with captured_stderr() as log:
        run_something_noisy()
    print("it said:", log())
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Callable, Iterator


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """Sends file descriptor 2 to a temporary file for the block, then restores it.

    Yields a function returning what was captured so far (for error messages); discard it
    to silence the block.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile(mode="w+b") as log:

            def captured() -> str:
                log.flush()
                log.seek(0)
                return log.read().decode("utf-8", "replace")

            os.dup2(log.fileno(), 2)
            try:
                yield captured
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
