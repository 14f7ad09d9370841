"""Small file helpers shared by the dataset layer: digests, bounded reads of regular files, staged folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import runner.fileio as fileio
from runner.errors import DatasetError, DatasetRefused

CHUNK = 1 << 20


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_bytes(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_digests(path: Path) -> tuple[int, str, str]:
    """(size, sha256, md5) of a regular file, read once in chunks (a FIFO or device is refused)."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open_regular(path) as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def open_regular(path: Path) -> BinaryIO:
    """A regular dataset file opened for reading; links are followed, anything else is refused at once."""
    return fileio.open_regular(path, DatasetRefused, fix="give the dataset file itself", unreadable=DatasetError)


special_kind = fileio.special_kind


def read_regular_file(path: Path, max_bytes: int, what: str = "dataset file", fix: str | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes`. A link, FIFO, device or socket, or a
    larger file, is refused (DatasetRefused) before more than the cap is read; a FIFO never blocks."""
    return fileio.read_bounded(path, max_bytes, DatasetRefused, what=what, follow_links=False, fix=fix)


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write and fsync one new file (callers write into a staging folder or temp name)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def refuse_existing(final: Path) -> None:
    """Results are never overwritten: a destination must be absent or an empty folder."""
    if final.is_symlink() or final.exists():
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            return
        raise DatasetError("already exists and is not an empty folder", file=final,
                           fix="choose another --out folder or remove this one")


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside `final`; rename it into place only on success.

    A crash or an error leaves no half-written `final` (the staging folder is removed; a killed
    process leaves only a dot-named `.NAME.*.tmp` folder, never `final`).
    """
    final = Path(final)
    refuse_existing(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError as exc:
            raise DatasetError(f"cannot be created: {exc.strerror}", file=final,
                               fix="choose another --out folder") from None
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
