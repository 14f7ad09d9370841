"""Hashing a million files fast: a thread pool, and a cache keyed by (size, mtime_ns, inode).

The cache is one JSON file per dataset folder, `CACHE_DIR/<sha256 of the folder's real path>.json`,
never inside the dataset (which may be read-only, and whose root hash must not change). A file
is taken from the cache only when its size, mtime_ns AND inode equal the recorded ones; any
other file is hashed again. A cache that cannot be read or parsed is ignored (and rewritten),
never trusted in part. `runner data verify --full` passes no cache: every byte is read.

What the cache cannot see: a file rewritten in place within the same nanosecond timestamp and
size (mtime is set by the kernel on every write, so this needs a deliberate `touch -d`). That
is what `--full` is for.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.fileio import write_atomic

CACHE_FORMAT = "runner-manifest-cache/1"
_MAX_CACHE_BYTES = 1 << 30

Entry = tuple[int, str]


def cache_file(cache_dir: Path, root: Path) -> Path:
    return cache_dir / f"{hashlib.sha256(str(root).encode()).hexdigest()[:32]}.json"


def _load(path: Path, root: Path) -> dict[str, list]:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_CACHE_BYTES:
            return {}
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("root") != str(root):
        return {}
    files = doc.get("files")
    return files if isinstance(files, dict) else {}


def _hit(rec: object, st: os.stat_result) -> Entry | None:
    if (isinstance(rec, list) and len(rec) == 4 and rec[0] == st.st_size and rec[1] == st.st_mtime_ns
            and rec[2] == st.st_ino and isinstance(rec[3], str) and len(rec[3]) == 64):
        return int(rec[0]), rec[3]
    return None


def hash_all(root: Path, listed: Sequence[tuple[str, Path, os.stat_result]],
             hash_file: Callable[[Path], Entry], *, cache_dir: Path | None = None,
             workers: int | None = None) -> dict[str, Entry]:
    """relpath -> (size, sha256) for the listed files, from the cache where it still holds."""
    cached = _load(cache_file(cache_dir, root), root) if cache_dir is not None else {}
    out: dict[str, Entry] = {}
    todo: list[tuple[str, Path]] = []
    for rel, full, st in listed:
        hit = _hit(cached.get(rel), st)
        if hit is not None:
            out[rel] = hit
        else:
            todo.append((rel, full))
    if todo:
        n = workers or min(8, os.cpu_count() or 1)
        if n <= 1 or len(todo) < 64:
            out.update((rel, hash_file(full)) for rel, full in todo)
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="runner-hash") as pool:
                for (rel, _), entry in zip(todo, pool.map(lambda t: hash_file(t[1]), todo), strict=True):
                    out[rel] = entry
    if cache_dir is not None and (todo or len(cached) != len(out)):
        stats = {rel: st for rel, _, st in listed}
        files = {rel: [size, stats[rel].st_mtime_ns, stats[rel].st_ino, sha] for rel, (size, sha) in out.items()}
        try:
            write_atomic(cache_file(cache_dir, root),
                         json.dumps({"format": CACHE_FORMAT, "root": str(root), "files": files},
                                    separators=(",", ":")).encode(), fsync=False)
        except OSError:
            pass  # a cache that cannot be written only costs time next call
    return out
