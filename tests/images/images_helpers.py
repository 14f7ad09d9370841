"""Helpers for the image tests: a writable copy of the catalog, Dockerfiles and lockfiles."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
LOCAL_BASE = "local/debian:bookworm"
LOCAL_BASE_PPC64LE = "local/debian:bookworm-ppc64le"


def copy_images_dir(dest: Path) -> Path:
    """images/ copied under `dest`; returns the copied catalog path."""
    target = dest / "images"
    shutil.copytree(IMAGES, target)
    return target / "images.toml"


def rewrite(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))
