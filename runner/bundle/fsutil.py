"""Small file-system helpers for bundles: safe member paths, JSON bytes; the atomic writer and
file hash are runner.fileio's, re-exported here."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from runner.errors import BundleError
from runner.fileio import sha256_file, write_atomic  # noqa: F401 - re-exported: the one implementation

PARTIAL_SUFFIX = ".partial"  # a bundle still being written (or interrupted)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n").encode()


def safe_member(root: Path, rel: str, source: str | Path) -> Path:
    """The path of `rel` inside `root`, refusing absolute paths, `..`, and links leading outside."""
    if (not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel
            or any(part in ("", ".", "..") for part in rel.split("/")) or PurePosixPath(rel).is_absolute()):
        raise BundleError(f"lists an unsafe path {rel!r}", file=source,
                          fix="bundle paths must be relative and stay inside the bundle")
    full = root / rel
    resolved, base = full.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise BundleError(f"lists {rel!r}, which leads outside the bundle", file=source,
                          fix="remove the link; a bundle holds plain files only")
    return full
