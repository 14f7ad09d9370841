"""Reading a result bundle back, refusing what cannot be trusted, each refusal one line.

`read_bundle` checks that the bundle is finished (has a manifest), was written with a
schema this runner reads (a newer one is refused), that every path the manifest names stays
inside the bundle, that every listed file is there with its recorded size, and that each
table reads as Parquet with the declared columns. `verify_bundle` also re-hashes every file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runner.bundle.fsutil import PARTIAL_SUFFIX, safe_member, sha256_file
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, TABLES
from runner.errors import BundleError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def schema_version(self) -> int:
        return int(self.manifest["bundle_schema_version"])

    @property
    def runs(self) -> pa.Table:
        return self.tables["runs"]

    def file(self, rel: str) -> Path:
        """A file of the bundle by its relative path (refusing paths that leave the bundle)."""
        return safe_member(self.path, rel, self.path / MANIFEST)


def read_manifest(path: str | Path, *, check_entries: bool = True) -> dict[str, Any]:
    """manifest.json of a finished bundle, refused when missing, not JSON, too new or malformed.

    check_entries=False skips the per-file checks (each entry's shape, paths inside the bundle):
    for readers that touch only a few of the files and check those themselves (report/load.py).
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError("is not a bundle folder", file=root, fix="give the folder `runner reproduce` printed")
    mpath = root / MANIFEST
    if not mpath.is_file():
        fix = ("it is an interrupted bundle: resume it with --resume, or remove it"
               if root.name.endswith(PARTIAL_SUFFIX) else "give a finished bundle folder")
        raise BundleError("has no manifest.json (not a finished bundle)", file=root, fix=fix)
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError("is too large to be a manifest", file=mpath)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"is not valid JSON ({e})", file=mpath, fix="the bundle is corrupt") from None
    if not isinstance(manifest, dict):
        raise BundleError("is not a JSON object", file=mpath)
    version = manifest.get("bundle_schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError("has no valid bundle_schema_version", file=mpath, field="bundle_schema_version")
    if version > BUNDLE_SCHEMA_VERSION:
        raise BundleError(f"was written with bundle schema {version}, newer than this runner reads "
                          f"({BUNDLE_SCHEMA_VERSION})", file=mpath, field="bundle_schema_version",
                          fix="upgrade runner to read it")
    files = manifest.get("files")
    tables = manifest.get("tables")
    if not isinstance(files, list) or not isinstance(tables, dict):
        raise BundleError("lacks its `files` list or `tables` map", file=mpath, fix="the bundle is corrupt")
    if not check_entries:
        return manifest
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
            raise BundleError(f"has a malformed files entry {entry!r}", file=mpath, field="files")
        safe_member(root, entry.get("path"), mpath)
    for name, info in tables.items():
        if not isinstance(info, dict):
            raise BundleError(f"has a malformed tables entry for {name!r}", file=mpath, field="tables")
        safe_member(root, info.get("path"), mpath)
    return manifest


def _check_files(root: Path, manifest: dict[str, Any]) -> None:
    mpath = root / MANIFEST
    for entry in manifest["files"]:
        full = root / entry["path"]
        if not full.is_file():
            raise BundleError(f"lists {entry['path']}, which is missing", file=mpath, fix="the bundle is incomplete")
        size = full.stat().st_size
        if size != entry["size"]:
            raise BundleError(f"is {size} bytes, the manifest says {entry['size']} (truncated or modified)",
                              file=full, fix="restore the bundle from a good copy")


def _read_table(root: Path, name: str, rel: str) -> pa.Table:
    full = root / rel
    try:
        table = pq.read_table(full)
    except (pa.ArrowException, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"cannot be read as Parquet (truncated or corrupt: {first})", file=full,
                          fix="restore the bundle from a good copy") from None
    declared = TABLES.get(name)
    if declared is not None:
        missing = [f.name for f in declared if f.name not in table.schema.names]
        if missing:
            raise BundleError(f"lacks the declared columns {missing}", file=full, field=name)
        for f in declared:
            if not table.schema.field(f.name).type.equals(f.type):
                raise BundleError(f"column {f.name} is {table.schema.field(f.name).type}, declared {f.type}",
                                  file=full, field=name)
    return table


def read_bundle(path: str | Path, tables: list[str] | None = None) -> Bundle:
    """The manifest and the tables (all, or those named) of a finished bundle."""
    root = Path(path)
    manifest = read_manifest(root)
    _check_files(root, manifest)
    wanted = manifest["tables"] if tables is None else {n: manifest["tables"][n] for n in tables
                                                        if n in manifest["tables"]}
    loaded = {name: _read_table(root, name, info["path"]) for name, info in wanted.items()}
    return Bundle(root, manifest, loaded)


def verify_bundle(path: str | Path) -> list[str]:
    """Problems found by re-hashing every listed file and looking for unlisted ones; [] when intact."""
    root = Path(path)
    manifest = read_manifest(root)
    problems = []
    listed = set()
    for entry in manifest["files"]:
        rel = entry["path"]
        listed.add(rel)
        full = root / rel
        if not full.is_file():
            problems.append(f"{rel}: missing")
            continue
        size, sha = sha256_file(full)
        if size != entry["size"] or sha != entry.get("sha256"):
            problems.append(f"{rel}: content differs from the manifest (size {size}, sha256 {sha[:12]}...)")
    for full in sorted(root.rglob("*")):
        rel = full.relative_to(root).as_posix()
        if (full.is_file() or full.is_symlink()) and rel not in listed and rel != MANIFEST:
            problems.append(f"{rel}: not listed in the manifest")
    return problems
