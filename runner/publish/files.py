"""Writing new files and folders that never replace anything already there."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import UsageError


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` atomically; refuse (UsageError) if it exists, even if it appears meanwhile.

    The data goes to a temp file beside it, which is then hard-linked to the final name: a
    link fails when the name exists, where a rename would silently replace it.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise UsageError("exists; it is never overwritten", file=path, fix="move it away or choose another name")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise UsageError("exists; it is never overwritten", file=path,
                             fix="move it away or choose another name") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A staging folder beside `final`, renamed to `final` when the block succeeds, removed otherwise."""
    final = Path(final)
    if final.exists() or final.is_symlink():
        raise UsageError("exists; it is never overwritten", file=final, fix="move it away or choose another --out")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".staging"))
    try:
        yield staging
        os.chmod(staging, 0o755)
        if final.exists():
            raise UsageError("appeared while it was being written; nothing was replaced", file=final,
                             fix="move it away and run again")
        os.rename(staging, final)  # an empty folder of that name would be replaced: checked just above
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
