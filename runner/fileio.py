"""The file primitives every part of runner shares (host, data layer and workload alike).

Standard library only, so the workload and `runner.data` may import it. One of each:
- `sha256_file`: (size, sha256) read in 1 MiB chunks;
- `write_atomic`: temp file beside the target, fsync, rename; returns (size, sha256);
- `canonical_json` / `canonical_sha256`: the one canonical JSON form (sorted keys, compact,
  ASCII, no NaN) that every digest of a document is taken over;
- `open_regular` / `read_bounded`: a REGULAR file opened, or its bytes read (at most
  `max_bytes`). A FIFO, a device (`/dev/zero`), a socket or a folder is refused before a byte is
  read, and the cap is enforced on what is actually read (a device reports size 0), so hostile
  input costs bounded time and memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from runner.errors import RunnerError

CHUNK = 1 << 20
FILE_MODE = 0o644


def sha256_stream(fh: BinaryIO, buf: bytearray | None = None) -> tuple[int, str]:
    """(size, sha256 hex) of what is left in an open binary file; `buf` (reused by callers that hash
    many files) spares one 1 MiB allocation per file."""
    buf = buf if buf is not None else bytearray(CHUNK)
    view = memoryview(buf)
    h, size = hashlib.sha256(), 0
    while n := fh.readinto(buf):
        h.update(view[:n])
        size += n
    return size, h.hexdigest()


def sha256_file(path: str | Path, buf: bytearray | None = None) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    with open(path, "rb", buffering=0) as fh:
        return sha256_stream(fh, buf)


def write_atomic(path: str | Path, data: bytes | Sequence[bytes | memoryview], fsync: bool = True) -> tuple[int, str]:
    """Write bytes (or chunks of them, in turn: no joined copy) to a temp file beside `path`, then
    rename over it; returns (size, sha256). Readers never see a half-written file."""
    path = Path(path)
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


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ASCII, NaN refused: the text every document digest is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_sha256(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def special_kind(mode: int) -> str:
    """What a non-regular file is, in words (for one-line refusals)."""
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a symbolic link" if stat.S_ISLNK(mode)
            else "a special file")


def open_regular(path: str | Path, error: type[RunnerError], *, what: str = "file", fix: str | None = None,
                 max_bytes: int | None = None, follow_links: bool = True,
                 unreadable: type[RunnerError] | None = None) -> BinaryIO:
    """A REGULAR file opened for reading (binary); anything else raises `error` in one line.

    Opened non-blocking (a FIFO does not hang the open) and checked with fstat on the open
    descriptor (no race between check and read). max_bytes refuses a file by its size before a
    byte is read; follow_links=False refuses a symbolic link itself; `unreadable` is the error for
    a path that cannot be opened at all (default: `error`).
    """
    path = Path(path)
    missing = unreadable or error
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise missing(f"no such {what}", file=path, fix=fix or "check the path") from None
    except OSError as e:
        if not follow_links and path.is_symlink():
            raise error(f"is a symbolic link; a {what} must be a plain file", file=path,
                        fix=fix or "replace the link with a copy of the file") from None
        raise missing(f"cannot be read ({e.strerror})", file=path, fix=fix or "check the path") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"is {special_kind(st.st_mode)}, not a regular {what}", file=path,
                        fix=fix or "name a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"is larger than the {max_bytes}-byte limit for a {what}", file=path,
                        fix=fix or f"a {what} should be far smaller; check that this is the right file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | Path, max_bytes: int, error: type[RunnerError], *, what: str = "file",
                 follow_links: bool = True, fix: str | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; anything else raises `error` (one line).

    The cap is checked on the reported size and again on what is actually read (a file that grows
    while read, or a device, which reports size 0, cannot get past it).
    """
    with open_regular(path, error, what=what, fix=fix, max_bytes=max_bytes, follow_links=follow_links) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"is larger than the {max_bytes}-byte limit for a {what}", file=Path(path),
                    fix=fix or f"a {what} should be far smaller; check that this is the right file")
    return data
