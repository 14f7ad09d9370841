"""Where the image tooling keeps its cache (wheels, build contexts): outside the catalog, reused."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`<checkout>/.cache/images` in a checkout (gitignored), else `$XDG_CACHE_HOME/runner/images`."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "images").is_dir():
        return checkout / ".cache" / "images"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "runner" / "images"
