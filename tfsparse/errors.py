"""The errors tfsparse raises, and how they read: one line naming what is wrong.

Library code raises these (it never prints or exits); the command layer
(`tfsparse.cli.run_main`) turns any `TfsparseError` into one line on stderr and exit
status 2. Catch `TfsparseError` to handle every problem tfsparse reports itself:

    import tfsparse
    try:
        recipe = tfsparse.load_recipe("models/no_such.toml")
    except tfsparse.TfsparseError as e:
        print("not loaded:", e)
"""

from __future__ import annotations


class TfsparseError(Exception):
    """Base class of every error tfsparse raises on purpose (bad input, a file that does not
    convert, the wrong Keras). Its message is one line that names the bad value."""


class UserError(TfsparseError):
    """Something the user asked for or gave is wrong (a value, a path, a file): theirs to fix,
    not ours to debug. Commands print it as one line and exit with status 2."""


class KerasVersionError(TfsparseError):
    """TensorFlow resolves `tf.keras` to Keras 3, which TF-MOT 0.8.1 cannot prune."""


class ConversionError(TfsparseError):
    """The TFLite converter rejected a model (the message carries the converter's error lines)."""


def unknown_name(kind: str, name: str, known) -> UserError:
    """`unknown <kind> 'name' (did you mean ...?)`: the error for a typo in a registry name."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return UserError(f"unknown {kind} {name!r} ({hint})")


def one_line(text, *, last: bool = False) -> str:
    """`text` as one line: runs of whitespace, newlines included, become one space.

    With `last=True` only the last non-blank line is kept (adb and the device's tools print
    the cause last, after lines of context).

    >>> one_line("conversion failed:\\n  op X\\n")
    'conversion failed: op X'
    >>> one_line("* daemon started\\nerror: device offline\\n", last=True)
    'error: device offline'
    """
    text = "" if text is None else str(text)
    if last:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    return " ".join(text.split())


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), cut at `limit`
    characters: Keras and TensorFlow put a whole traceback or graph dump after the cause.

    >>> first_line(ValueError("bad layer\\n  File ...\\n"))
    'bad layer'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[:limit] + "..."
