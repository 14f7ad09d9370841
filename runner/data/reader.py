"""What every dataset reader hands back, and the protocol readers implement.

A reader owns one on-disk source (an archive or a folder). `verify()` proves the bytes are the
expected ones *before* anything is decoded; `read()` verifies again on the bytes it decodes (so a
file swapped between the two calls is caught) and returns validated arrays in one layout:
uint8 NHWC images and int64 labels. CIFAR readers implement this today; an ImageNet folder reader
(train/<wnid>/*.JPEG, val/) can implement the same two methods later without touching callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SourceRecord:
    """How a source was verified; stored in the prepared meta.json (no host paths, only names)."""

    kind: str  # "archive" | "folder"
    name: str  # file or folder name, never the full host path
    verified_by: str  # "official-md5" | "checksum-file" | "official-member-md5" | "manifest"
    official: bool  # True when the bytes match the dataset's published checksums
    root_sha256: str  # root hash of dataset_manifest(source) without SHA256SUMS: what specs pin
    sha256: str | None = None  # archive only: sha256 of the archive file
    md5: str | None = None  # archive only: md5 (the checksum the dataset page publishes)
    files: dict[str, str] = field(default_factory=dict)  # member/relpath -> sha256 of what was decoded

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "verified_by": self.verified_by,
            "official": self.official,
            "root_sha256": self.root_sha256,
            "sha256": self.sha256,
            "md5": self.md5,
            "files": dict(sorted(self.files.items())),
        }


@dataclass(frozen=True)
class RawDataset:
    """Decoded, validated splits in the framework-neutral layout."""

    name: str
    classes: tuple[str, ...]
    train_x: np.ndarray  # uint8 (N, H, W, C)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    source: SourceRecord
    coarse_classes: tuple[str, ...] | None = None  # CIFAR-100 superclasses
    train_y_coarse: np.ndarray | None = None
    test_y_coarse: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more meta.json facts (ImageNet: decode, skipped)


@runtime_checkable
class DatasetReader(Protocol):
    """One dataset source on disk. Implementations must not decode anything in `verify()`."""

    name: str  # registry key, e.g. "cifar10"
    path: Path

    def verify(self) -> SourceRecord:
        """Check the source's bytes against its checksums; raise DatasetError naming the file."""
        ...

    def read(self) -> RawDataset:
        """Verify, decode safely and validate; raise DatasetError naming the file."""
        ...
