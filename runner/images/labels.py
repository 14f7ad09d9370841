"""The labels every built image carries: OCI annotations plus what `verify` and `list` compare.

`org.opencontainers.image.created` is left out on purpose: a timestamp would make two builds of
the same inputs differ in their labels (the engine records its own creation time anyway).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from runner.images.catalog import CatalogEntry
from runner.images.lockfile import Lockfile
from runner.images.platform import BaseImage

PREFIX = "io.runner."
IMAGE = PREFIX + "image"
FRAMEWORK = PREFIX + "framework"
FRAMEWORK_VERSION = PREFIX + "framework_version"
VARIANT = PREFIX + "variant"
LOCK_SHA256 = PREFIX + "lock_sha256"
CATALOG_ENTRY = PREFIX + "catalog_entry"
RECIPE_SHA256 = PREFIX + "recipe_sha256"
BASE_ID_LABEL = PREFIX + "base_id"  # the engine's ID of the base the image was built on
BUILDER_LABEL = PREFIX + "builder"  # "docker 20.10.24" / "podman 4.3.1": who built it (its ID depends on that)
SYSTEM_DOCKERFILE = "system/Dockerfile"


def recipe_sha256(entry: CatalogEntry) -> str:
    """sha256 of the Dockerfiles an image is built from (system layer + framework layer)."""
    h = hashlib.sha256()
    for path in (entry.catalog_path.parent / SYSTEM_DOCKERFILE, entry.dockerfile):
        h.update(path.read_bytes() if path.is_file() else b"")
        h.update(b"\0")
    return h.hexdigest()


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def source_revision(repo: Path) -> str | None:
    """The commit the catalog's checkout is at, or None outside a git checkout."""
    return _git(repo, "rev-parse", "HEAD")


def source_url(repo: Path) -> str | None:
    """The checkout's `origin` remote, when it has one."""
    return _git(repo, "config", "--get", "remote.origin.url")


def identity_labels(entry: CatalogEntry, lock: Lockfile) -> dict[str, str]:
    """The labels that say which catalog entry and lockfile an image was built from."""
    return {
        IMAGE: entry.name,
        FRAMEWORK: entry.framework,
        FRAMEWORK_VERSION: entry.framework_version,
        VARIANT: entry.variant,
        LOCK_SHA256: lock.sha256,
        CATALOG_ENTRY: entry.sha256,
        RECIPE_SHA256: recipe_sha256(entry),
    }


def image_labels(entry: CatalogEntry, lock: Lockfile, base: BaseImage, builder: str | None = None) -> dict[str, str]:
    """All labels of a build of `entry` from `lock` on `base` (by `builder`, when said)."""
    repo = entry.catalog_path.parent
    labels = {
        "org.opencontainers.image.title": f"runner {entry.name}",
        "org.opencontainers.image.version": entry.framework_version,
        "org.opencontainers.image.revision": source_revision(repo) or "unknown",
        "org.opencontainers.image.base.name": base.reference,
        **identity_labels(entry, lock),
        PREFIX + "platform": entry.platform,
        PREFIX + "python": entry.python,
        BASE_ID_LABEL: base.source_id,
    }
    if builder:
        labels[BUILDER_LABEL] = builder
    url = source_url(repo)
    if url:
        labels["org.opencontainers.image.source"] = url
    return labels
