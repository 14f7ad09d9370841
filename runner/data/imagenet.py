"""ImageNet folders in the ILSVRC-2012 layout: the index of images and labels, and the reader.

    ROOT/train/<wnid>/*.JPEG                       one folder per class (wnid = n + 8 digits)
    ROOT/val/<wnid>/*.JPEG                         val in class folders, or
    ROOT/val/*.JPEG + ROOT/LOC_val_solution.csv    val flat, labelled by Kaggle's ILSVRC file

Class index = position of the wnid in the sorted list of train's class folders (what
torchvision's ImageFolder and Keras' image_dataset_from_directory do). The flat-val label
file supported is `LOC_val_solution.csv` (`ImageId,PredictionString`, the wnid is the first
word of PredictionString): it names wnids directly. `ILSVRC2012_validation_ground_truth.txt`
is not supported: its numbers are ILSVRC2012_IDs whose mapping to wnids sits in the devkit's
`meta.mat`, a MATLAB file the standard library cannot read.

Bad input (docs/data.md, "ImageNet"): a symlink or special file anywhere is refused (one line,
by the manifest walk); a label file naming a missing image or an unknown wnid, a val class
unknown to train, no class at all: one line naming the file. Counted, reported skips (kept in
`ImagenetIndex.skipped`, printed by `data verify`, recorded in the prepared meta.json): an empty
class folder (the class keeps its index, so labels stay those of the full dataset), a file in
a class folder not named .JPEG/.jpg/.jpeg, a flat-val image the label file does not list.
Files that are named .JPEG but are not decodable JPEGs are skipped when decoded (decode.py).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from runner.data.files import read_regular_file
from runner.data.manifest import MANIFEST_NAME, _walk_stat, dataset_manifest, verify_folder_manifest
from runner.data.reader import RawDataset, SourceRecord
from runner.errors import DatasetError

WNID = re.compile(r"n\d{8}")
LABEL_FILE = "LOC_val_solution.csv"
IMAGE_SUFFIXES = (".jpeg", ".jpg")
_MAX_LABEL_BYTES = 64 << 20  # the official file is 2.1 MB for 50,000 images


@dataclass(frozen=True)
class Skip:
    path: str  # relative to the dataset root
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class ImagenetIndex:
    root: Path
    classes: tuple[str, ...]  # sorted wnids
    train: tuple[tuple[str, int], ...]  # (relpath, label), sorted by relpath
    val: tuple[tuple[str, int], ...]
    val_layout: str  # "class-folders" | "flat+LOC_val_solution.csv"
    skipped: tuple[Skip, ...] = field(default=())


def looks_like_imagenet(path: Path) -> bool:
    train = path / "train"
    if not (train.is_dir() and (path / "val").is_dir()):
        return False
    return any(WNID.fullmatch(p.name) and p.is_dir() for p in train.iterdir())


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def scan(root: str | Path) -> ImagenetIndex:
    """Walk ROOT (refusing links and special files) and build the index (see module docstring)."""
    root = Path(root).resolve()
    if not looks_like_imagenet(root):
        raise DatasetError("is not an ImageNet folder (needs train/<wnid>/ and val/)", file=root,
                           fix="pass the folder holding train/ and val/ (ILSVRC-2012 layout)")
    files = [rel for rel, _, _ in _walk_stat(root, root, "")]
    skipped: list[Skip] = []
    by_class: dict[str, list[str]] = {}
    for d in sorted(p.name for p in (root / "train").iterdir() if p.is_dir()):
        if not WNID.fullmatch(d):
            raise DatasetError("is not a wnid class folder (n + 8 digits)", file=root / "train" / d,
                               fix="train/ holds one folder per class, named by its wnid")
        by_class[d] = []
    val_files: list[str] = []
    other_top: list[str] = []
    for rel in files:
        parts = rel.split("/")
        if parts[0] == "train" and len(parts) == 3 and parts[1] in by_class:
            if _is_image(parts[2]):
                by_class[parts[1]].append(rel)
            else:
                skipped.append(Skip(rel, "not named .JPEG"))
        elif parts[0] == "val":
            val_files.append(rel)
        elif len(parts) == 1:
            other_top.append(rel)
        else:
            skipped.append(Skip(rel, "outside train/<wnid>/ and val/"))
    classes = tuple(by_class)
    if not classes:
        raise DatasetError("has no class folders under train/", file=root / "train")
    label = {wnid: i for i, wnid in enumerate(classes)}
    for wnid, imgs in by_class.items():
        if not imgs:
            skipped.append(Skip(f"train/{wnid}", "empty class folder (the class keeps its index)"))
    train = tuple((rel, label[rel.split("/")[1]]) for rel in sorted(r for imgs in by_class.values() for r in imgs))
    nested = [r for r in val_files if r.count("/") == 2]
    flat = [r for r in val_files if r.count("/") == 1]
    if nested and flat:
        raise DatasetError("mixes class folders and flat images", file=root / "val",
                           fix="use one val layout: val/<wnid>/*.JPEG, or val/*.JPEG with LOC_val_solution.csv")
    if nested or not flat:
        val, layout = _val_folders(root, nested, label, skipped), "class-folders"
    else:
        val, layout = _val_flat(root, flat, label, skipped), f"flat+{LABEL_FILE}"
    return ImagenetIndex(root, classes, train, val, layout, tuple(skipped))


def _val_folders(root: Path, nested: list[str], label: dict[str, int], skipped: list[Skip]) -> tuple:
    out = []
    for rel in sorted(nested):
        wnid = rel.split("/")[1]
        if wnid not in label:
            raise DatasetError(f"is a val class {wnid!r} that train/ does not have", file=root / "val" / wnid,
                               fix="val classes must be train's class folders")
        if _is_image(rel):
            out.append((rel, label[wnid]))
        else:
            skipped.append(Skip(rel, "not named .JPEG"))
    return tuple(out)


def _label_file(root: Path) -> Path:
    for candidate in (root / LABEL_FILE, root / "val" / LABEL_FILE):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    raise DatasetError(f"holds flat images but no {LABEL_FILE}", file=root / "val",
                       fix=f"put Kaggle's {LABEL_FILE} beside train/ and val/, or sort val/ into class folders")


def _val_flat(root: Path, flat: list[str], label: dict[str, int], skipped: list[Skip]) -> tuple:
    path = _label_file(root)
    text = read_regular_file(path, _MAX_LABEL_BYTES, "label file").decode("utf-8", errors="replace")
    present = {Path(r).stem: r for r in flat if _is_image(r)}
    named: dict[str, int] = {}
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
        raise DatasetError("is not LOC_val_solution.csv (first line must be ImageId,PredictionString)",
                           file=path, line=1)
    for lineno, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[1].split():
            raise DatasetError("needs ImageId,PredictionString", file=path, line=lineno)
        image, wnid = row[0].strip(), row[1].split()[0]
        if wnid not in label:
            raise DatasetError(f"labels {image} with {wnid!r}, which train/ does not have", file=path, line=lineno)
        if image not in present:
            raise DatasetError(f"names {image}, which val/ does not hold", file=path, line=lineno,
                               fix="restore the image, or use the label file that belongs to this val/")
        if image in named:
            raise DatasetError(f"names {image} twice", file=path, line=lineno)
        named[image] = label[wnid]
    for rel in sorted(flat):
        stem = Path(rel).stem
        if not _is_image(rel):
            skipped.append(Skip(rel, "not named .JPEG"))
        elif stem not in named:
            skipped.append(Skip(rel, f"not listed in {LABEL_FILE}"))
    return tuple(sorted((present[s], y) for s, y in named.items()))


class ImagenetReader:
    """DatasetReader for an ImageNet folder. `read()` decodes at `size` (prepared shards)."""

    name = "imagenet"

    def __init__(self, path: Path, size: int = 224, cache_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.size = size
        self.cache_dir = cache_dir

    def index(self) -> ImagenetIndex:
        return scan(self.path)

    def verify(self) -> SourceRecord:
        root = self.path.resolve()
        if (root / MANIFEST_NAME).is_file():
            _, root_hash = verify_folder_manifest(root)
            by = "manifest"
        else:
            _, root_hash = dataset_manifest(root, exclude=frozenset({MANIFEST_NAME}), cache_dir=self.cache_dir)
            by = "root-hash"
        self.index()  # the layout's one-line errors before anything is decoded
        return SourceRecord(kind="folder", name=root.name, verified_by=by, official=False, root_sha256=root_hash)

    def write_prepared(self, folder: Path) -> dict:
        """Verify, then decode every image at `size` straight into the (staging) folder's .npy
        files (imagenet_prepare.write_shards: streamed, bounded memory); the meta.json written."""
        from runner.data.imagenet_prepare import check_size, write_shards

        check_size(self.size)
        record = self.verify()
        return write_shards(self.index(), self.size, record, folder)

    def read(self) -> RawDataset:
        """The decoded arrays in memory (the DatasetReader protocol): for small datasets only;
        `prepare` streams to disk through `write_prepared` instead."""
        import tempfile

        import numpy as np

        from runner.data.prepared import load_prepared

        with tempfile.TemporaryDirectory(prefix="runner-imagenet-") as tmp:
            meta = self.write_prepared(Path(tmp))
            p = load_prepared(tmp, mmap=False, verify="sizes")
            arrays = {k: np.array(getattr(p, k)) for k in ("train_x", "train_y", "test_x", "test_y")}
        source = SourceRecord(**{k: v for k, v in meta["source"].items()})
        return RawDataset(name="imagenet", classes=tuple(meta["classes"]), source=source,
                          extra={"decode": meta["decode"], "skipped": meta["skipped"]}, **arrays)
