"""Where tfsparse keeps downloads and provisioned runtimes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TFSPARSE_CACHE` or `~/.cache/tfsparse`, joined with `parts` (not created)."""
    root = os.environ.get("TFSPARSE_CACHE") or Path.home() / ".cache" / "tfsparse"
    return Path(root).joinpath(*parts)
