"""The dataset a run read: the root hash of its per-file manifest (as `runner data verify` computes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.data.manifest import MANIFEST_NAME, dataset_manifest


def dataset_fingerprint(path: str | Path) -> dict[str, Any]:
    """{root_sha256, files, bytes} of a dataset folder or file (its SHA256SUMS listing left out)."""
    entries, root = dataset_manifest(path, exclude=frozenset({MANIFEST_NAME}))
    return {"root_sha256": root, "files": len(entries), "bytes": sum(size for size, _ in entries.values())}
