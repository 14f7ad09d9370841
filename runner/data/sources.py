"""Find which dataset a path holds and open the right reader for it.

Accepted paths:
* an archive file: recognised by its official md5, else by its official file name;
* a CIFAR folder itself (`cifar-10-batches-py/`, `cifar-100-python/` or any folder with the
  same files);
* a parent folder holding exactly one such folder (e.g. the output of `runner data synth`),
  or, with no folder, exactly one official archive name;
* an ImageNet folder in the ILSVRC-2012 layout (train/<wnid>/..., val/): `imagenet.ImagenetReader`.
"""

from __future__ import annotations

import stat
from pathlib import Path

from runner.data.cifar import LAYOUTS, CifarLayout
from runner.data.files import file_digests, special_kind
from runner.data.imagenet import looks_like_imagenet
from runner.data.reader import DatasetReader
from runner.data.registry import get_dataset
from runner.errors import DatasetError, DatasetRefused


def open_source(path: str | Path, name: str | None = None) -> DatasetReader:
    """A reader for `path`; `name` (a registry key) forces the dataset instead of detecting it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows a link: the path given may be one (to a shared disk)
    except FileNotFoundError:
        raise DatasetError("is a dangling symlink" if path.is_symlink() else "does not exist", file=path) from None
    except OSError as exc:
        raise DatasetError(f"cannot be read: {exc.strerror}", file=path) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise DatasetRefused(f"is {special_kind(mode)}, not a dataset archive or folder", file=path,
                             fix="give the archive file or the dataset folder itself")
    if name is not None:
        info = get_dataset(name)
        if info.layout is not None and path.is_dir():
            path = _pick_in_parent(path, [info.layout]) or path
        return info.open(path)
    if path.is_file():
        return get_dataset(_archive_dataset(path).name).open(path)
    if looks_like_imagenet(path):
        return get_dataset("imagenet").open(path)
    for layout in LAYOUTS.values():
        if all((path / rel).exists() or (path / rel).is_symlink() for rel in layout.required_files):
            return get_dataset(layout.name).open(path)
    picked = _pick_in_parent(path, list(LAYOUTS.values()))
    if picked is not None:
        return open_source(picked)
    raise DatasetError(
        "is not a recognised dataset (expected a CIFAR python-version archive or folder)", file=path,
        fix="pass cifar-10-python.tar.gz, cifar-100-python.tar.gz or their extracted folder")


def _archive_dataset(path: Path) -> CifarLayout:
    for layout in LAYOUTS.values():
        if path.name == layout.archive:
            return layout
    size, _, md5 = file_digests(path)
    for layout in LAYOUTS.values():
        if md5 == layout.archive_md5:
            return layout
    raise DatasetError("is not a known dataset archive", file=path,
                       fix="name it cifar-10-python.tar.gz / cifar-100-python.tar.gz, or pass --name")


def _pick_in_parent(path: Path, layouts: list[CifarLayout]) -> Path | None:
    folders = [path / lay.folder for lay in layouts if (path / lay.folder).is_dir()]
    if len(folders) > 1:
        raise DatasetError("holds more than one dataset folder", file=path,
                           fix="pass the dataset folder itself")
    if folders:
        return folders[0]
    archives = [path / lay.archive for lay in layouts if (path / lay.archive).is_file()]
    if len(archives) == 1:
        return archives[0]
    if len(archives) > 1:
        raise DatasetError("holds more than one dataset archive", file=path, fix="pass the archive itself")
    return None
