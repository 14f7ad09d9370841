"""Per-file sha256 manifest and root hash of a dataset folder.

The manifest maps each regular file's POSIX relative path to (size, sha256). The root hash is
the sha256 of the canonical listing, one line per file sorted by relative path:

    <sha256> <size> <relpath>\\n

so it changes when any file's bytes, name or presence changes, and is the same on every
machine. Symlinks are refused (whether they escape the folder or not: a dataset mounted
read-only into a container must not point elsewhere), and so are devices, sockets, FIFOs and
names that cannot be written on one manifest line.

Folders carry their manifest in a `SHA256SUMS` file in `sha256sum` format (`sha256sum -c`
reads it) which the manifest itself leaves out.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

import runner.fileio as fileio
from runner.data.files import read_regular_file, special_kind
from runner.errors import DatasetError, DatasetRefused

MANIFEST_NAME = "SHA256SUMS"
MAX_MANIFEST_BYTES = 1 << 20  # a line per file: thousands of files fit

Manifest = dict[str, tuple[int, str]]


def dataset_manifest(path: str | Path, exclude: frozenset[str] = frozenset(), *,
                     cache_dir: Path | None = None, workers: int | None = None) -> tuple[Manifest, str]:
    """(relpath -> (size, sha256), root hash) for a folder, or for a single file (its name).

    Files are hashed by a thread pool (`workers`, default min(8, CPUs); hashlib and file reads
    release the GIL). With `cache_dir`, a file whose (size, mtime_ns, inode) equal the ones
    recorded there by an earlier call is not read again (`manifest_cache.py`); pass None
    (`runner data verify --full`) to hash every byte.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError("does not exist", file=root)
    root = root.resolve()  # the root itself may be reached through a link; nothing inside may
    if root.is_file():
        return _finish({root.name: _hash_file(root)})
    if not root.is_dir():
        raise DatasetError("is neither a file nor a folder", file=root)
    from runner.data.manifest_cache import hash_all

    listed = [(rel, full, st) for rel, full, st in _walk_stat(root, root, "") if rel not in exclude]
    return _finish(hash_all(root, listed, _hash_file, cache_dir=cache_dir, workers=workers))


def root_hash(entries: Manifest) -> str:
    h = hashlib.sha256()
    for rel in sorted(entries):
        size, sha = entries[rel]
        h.update(f"{sha} {size} {rel}\n".encode())
    return h.hexdigest()


def _finish(entries: Manifest) -> tuple[Manifest, str]:
    ordered = dict(sorted(entries.items()))
    return ordered, root_hash(ordered)


def _walk_stat(root: Path, folder: Path | str, prefix: str):
    """(relpath, path string, lstat result) of every regular file, sorted; links and special files
    refused. Strings, not Paths: building a Path per file was most of a cached manifest's time."""
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"cannot be listed: {exc.strerror}", file=folder) from None
    root_s = str(root)
    for entry in children:
        name, full = entry.name, entry.path
        _check_name(name, full)
        if entry.is_symlink():
            target = os.path.realpath(full)
            inside = target == root_s or target.startswith(root_s + os.sep)
            what = "a symlink pointing inside the folder" if inside else "a symlink escaping the folder"
            raise DatasetRefused(f"is {what}; symlinks are refused in datasets", file=Path(full),
                               fix="replace the link with a copy of the file")
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            yield from _walk_stat(root, full, f"{prefix}{name}/")
        elif stat.S_ISREG(mode):
            yield f"{prefix}{name}", full, st
        else:
            raise DatasetRefused(f"is {special_kind(mode)}, not a regular file or folder", file=Path(full),
                                 fix="a dataset folder holds plain files only")


def _check_name(name: str, full: Path | str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetRefused("has a file name that is not valid UTF-8", file=full) from None
    if "\n" in name or "\r" in name or "\\" in name or name in (".", ".."):
        raise DatasetRefused("has a file name that cannot be listed in a manifest", file=full,
                           fix="rename it without newlines or backslashes")


def _hash_file(path: Path | str) -> tuple[int, str]:
    """(size, sha256) of a regular dataset file; a link, FIFO or device swapped in after the listing
    is refused (non-blocking open, fstat on the descriptor), never followed or waited on."""
    with fileio.open_regular(path, DatasetRefused, follow_links=False) as f:
        return fileio.sha256_stream(f)


def safe_relpath(rel: str, source: Path) -> str:
    """Check a relative path read from a manifest: POSIX, relative, no `..`, no empty parts."""
    p = PurePosixPath(rel)
    if (not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel
            or any(part in ("", ".", "..") for part in rel.split("/")) or p.is_absolute()):
        raise DatasetError(f"lists an unsafe path {rel!r}", file=source,
                           fix="manifest paths must be relative and stay inside the folder")
    return rel


def format_manifest_file(entries: Manifest) -> bytes:
    """`sha256sum`-compatible text: '<sha256>  <relpath>' per line, sorted."""
    return "".join(f"{sha}  {rel}\n" for rel, (_, sha) in sorted(entries.items())).encode()


def read_manifest_file(path: Path) -> dict[str, str]:
    """Parse a SHA256SUMS file into relpath -> sha256 (refusing unsafe or duplicate paths)."""
    raw = read_regular_file(path, MAX_MANIFEST_BYTES, "manifest")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError("is not UTF-8 text", file=path) from None
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        sha, sep, rel = line.partition("  ")
        if not sep:
            sha, sep, rel = line.partition(" *")  # sha256sum's binary-mode marker
        sha = sha.strip().lower()
        if not sep or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise DatasetError("is not a sha256sum line", file=path, line=lineno,
                               fix="each line must be '<64 hex digits>  <relative path>'")
        rel = safe_relpath(rel, path)
        if rel in out:
            raise DatasetError(f"lists {rel!r} twice", file=path, line=lineno)
        out[rel] = sha
    return out


def verify_folder_manifest(folder: Path) -> tuple[Manifest, str]:
    """Check a folder against the SHA256SUMS inside it: no file missing, changed or unlisted."""
    listing = folder / MANIFEST_NAME
    expected = read_manifest_file(listing)
    actual, root = dataset_manifest(folder, exclude=frozenset({MANIFEST_NAME}))
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            raise DatasetError(f"is listed in {MANIFEST_NAME} but missing", file=folder / rel)
        if rel not in expected:
            raise DatasetError(f"is not listed in {MANIFEST_NAME}", file=folder / rel,
                               fix=f"remove it, or regenerate {MANIFEST_NAME} if it belongs there")
        if actual[rel][1] != expected[rel]:
            raise DatasetError(f"does not match its sha256 in {MANIFEST_NAME}", file=folder / rel,
                               fix="the file is corrupt or was modified; restore it from the archive")
    return actual, root
