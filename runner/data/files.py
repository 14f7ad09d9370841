"""Small file helpers shared by the dataset layer: hashing, atomic writes, staged folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import runner.fileio as fileio
from runner.errors import DatasetError

CHUNK = 1 << 20


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_bytes(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_digests(path: Path) -> tuple[int, str, str]:
    """(size, sha256, md5) of a file, read once in chunks."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def sha256_file(path: Path) -> str:
    return fileio.sha256_file(path)[1]


def read_regular_file(path: Path) -> bytes:
    """Read a file's bytes, refusing symlinks and anything that is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise DatasetError("file is missing", file=path) from None
    except OSError as exc:
        if Path(path).is_symlink():
            raise DatasetError("symlinks are refused in datasets", file=path,
                               fix="replace the link with a copy of the file") from None
        raise DatasetError(f"cannot be read: {exc.strerror}", file=path) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DatasetError("not a regular file", file=path)
        return f.read()


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write and fsync one new file (callers write into a staging folder or temp name)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then os.replace it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
