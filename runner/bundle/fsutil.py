"""Small file-system helpers for bundles: atomic writes with their size and sha256, safe paths."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from runner.errors import BundleError

CHUNK = 1 << 20
PARTIAL_SUFFIX = ".partial"  # a bundle still being written (or interrupted)
FILE_MODE = 0o644


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | Sequence[bytes | memoryview], fsync: bool = True) -> tuple[int, str]:
    """Write bytes (or chunks of them, written in turn: no joined copy of a large file) to a temp
    file beside `path`, then rename over it; returns (size, sha256)."""
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    h, size = hashlib.sha256(), 0
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; results are meant to be read by others
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                h.update(chunk)
                size += len(chunk)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size, h.hexdigest()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n").encode()


def sha256_file(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


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
