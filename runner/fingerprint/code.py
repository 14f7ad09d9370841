"""The code that ran: the git state of the runner checkout and a tree hash of the workload.

The tree hash covers the files a container executes (`runner/workload` and `runner/data`), so
two bundles with the same hash ran the same workload code, whether or not either came from a
git checkout. It is the sha256 of one line per file, sorted by relative path:

    <sha256> <size> <relpath>\\n

(`__pycache__` folders and compiled files are left out).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runner

PACKAGE_ROOT = Path(runner.__file__).resolve().parent.parent
WORKLOAD_DIRS = ("runner/workload", "runner/data")
# The package files the workload imports outside those folders: without them a mounted copy of
# the code would not be a package of its own.
WORKLOAD_FILES = ("runner/__init__.py", "runner/errors.py", "runner/fileio.py")
_SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeFile:
    relpath: str
    path: Path
    size: int
    sha256: str


def _code_file(root: Path, path: Path) -> CodeFile:
    data = path.read_bytes()
    return CodeFile(path.relative_to(root).as_posix(), path, len(data), hashlib.sha256(data).hexdigest())


def workload_files(root: Path = PACKAGE_ROOT, dirs: tuple[str, ...] = WORKLOAD_DIRS,
                   files: tuple[str, ...] = WORKLOAD_FILES) -> list[CodeFile]:
    """The regular files under `dirs` and the single `files` (relative to `root`), sorted, with their sha256."""
    out = [_code_file(root, root / f) for f in files if (root / f).is_file()]
    for d in dirs:
        base = root / d
        if not base.is_dir():
            continue
        for folder, subdirs, names in os.walk(base):
            subdirs[:] = sorted(s for s in subdirs if s not in _SKIP_DIRS)
            for name in names:
                path = Path(folder) / name
                if name.endswith(_SKIP_SUFFIXES) or path.is_symlink() or not path.is_file():
                    continue
                out.append(_code_file(root, path))
    return sorted(out, key=lambda f: f.relpath)


def tree_hash(files: list[CodeFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relpath):
        h.update(f"{f.sha256} {f.size} {f.relpath}\n".encode())
    return h.hexdigest()


def git_state(root: Path = PACKAGE_ROOT) -> dict[str, Any] | None:
    """{commit, dirty, branch} of the checkout holding `root`; None outside git (or without git)."""
    git = shutil.which("git")
    if git is None:
        return None

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True, timeout=20,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "--verify", "HEAD")
    if commit is None:
        return None
    status = run("status", "--porcelain", "--untracked-files=normal", "--", "runner")
    branch = run("rev-parse", "--abbrev-ref", "HEAD")
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "branch": None if branch in (None, "HEAD") else branch}


def code_fingerprint(root: Path = PACKAGE_ROOT, files: list[CodeFile] | None = None) -> dict[str, Any]:
    """Tree hash of the workload files (listed afresh unless given) and the checkout's git state."""
    files = workload_files(root) if files is None else files
    return {"tree_sha256": tree_hash(files), "files": len(files), "dirs": list(WORKLOAD_DIRS),
            "git": git_state(root), "runner_version": runner.__version__}
