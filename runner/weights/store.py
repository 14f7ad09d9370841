"""The weights store: `<data-root>/weights/<sha256>.npz`, one canonical file per content hash.

The sha256 of the file is the identity a spec pins (`model.pretrained.sha256`); the canonical
writer is deterministic, so importing the same checkpoint again gives the same file and hash.
A spec's `pretrained.path` is only a hint: looked at first, used only if its hash matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import ModelError
from runner.fileio import sha256_file

STORE_DIR = "weights"


@dataclass(frozen=True)
class StoredWeights:
    path: Path
    sha256: str
    size: int

    def fingerprint(self) -> dict[str, object]:
        """For the bundle's environment: what every run of the plan started from."""
        from runner.workload.models.npz import npz_index

        members = npz_index(self.path)
        return {"sha256": self.sha256, "size": self.size, "file": self.path.name, "tensors": len(members),
                "parameters": int(sum(int(np.prod(m.shape)) for m in members))}


def store_dir(data_root: Path) -> Path:
    return Path(data_root) / STORE_DIR


def store_path(data_root: Path, sha256: str) -> Path:
    return store_dir(data_root) / f"{sha256}.npz"


def put(weights: dict[str, np.ndarray], folder: Path) -> tuple[StoredWeights, bool]:
    """Write canonical weights into `folder` as `<sha256>.npz`; (entry, False) if already there."""
    from runner.fileio import write_atomic
    from runner.workload.models.npz import npz_chunks

    chunks = npz_chunks(weights)
    import hashlib

    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    sha = h.hexdigest()
    path = Path(folder) / f"{sha}.npz"
    if path.exists():  # same name = same bytes: nothing to write, nothing overwritten
        size, found = sha256_file(path)
        if found != sha:
            raise ModelError(f"holds different bytes than its name says (sha256 {found})", file=path,
                             fix="the store was edited by hand: move this file away and import again")
        return StoredWeights(path, sha, size), False
    size, written = write_atomic(path, chunks)
    assert written == sha
    return StoredWeights(path, sha, size), True


def find(sha256: str, data_root: Path, hint: str | None, spec_path: Path | None = None) -> StoredWeights:
    """The file whose sha256 is `sha256`: the hint first (relative to data_root), then the store."""
    candidates: list[Path] = []
    if hint is not None:
        p = Path(hint)
        candidates.append(p if p.is_absolute() else Path(data_root) / p)
    candidates.append(store_path(data_root, sha256))
    seen: list[str] = []
    for path in candidates:
        if not path.exists():
            seen.append(f"{path}: absent")
            continue
        if not path.is_file():
            seen.append(f"{path}: not a regular file")
            continue
        size, found = sha256_file(path)
        if found == sha256:
            return StoredWeights(path, found, size)
        seen.append(f"{path}: sha256 {found[:16]}...")
    raise ModelError(f"no weights with sha256 {sha256} ({'; '.join(seen)})", file=spec_path,
                     field="model.pretrained.sha256",
                     fix=f"`runner weights import CHECKPOINT --model ... --out {store_dir(data_root)}` "
                         "or pass the --data-root holding weights/")
