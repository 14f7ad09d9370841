"""Canonical weights on disk: a plain .npz (no pickle), written atomically, never overwritten."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from runner.errors import ModelError


def save_npz(path: str | Path, weights: dict[str, np.ndarray]) -> None:
    path = Path(path)
    if path.exists():
        raise ModelError("refusing to overwrite existing weights", file=path, fix="choose a new file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **weights)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ModelError("weights file not found", file=path, fix="check the path") from None
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ModelError(f"not a readable .npz of weights ({e})", file=path,
                         fix="canonical weights are a numpy .npz written by runner") from None
