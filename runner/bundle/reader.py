"""Reading a result bundle back, refusing what cannot be trusted, each refusal one line.

`read_bundle` checks that the bundle is finished (has a manifest), was written with a
schema this runner reads (a newer one is refused), that every path the manifest names stays
inside the bundle, that every listed file is there with its recorded size, and that each
table reads as Parquet with the declared columns, and that each JSON document has the shape its
readers rely on (runner.bundle.shapes). `verify_bundle` also re-hashes every file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runner.bundle.fsutil import PARTIAL_SUFFIX, safe_member
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, declared
from runner.bundle.shapes import shape_problem
from runner.errors import BundleError, RunnerError
from runner.fileio import canonical_sha256, read_bounded
from runner.spec.run_id import RUN_ID_FORM, RUN_ID_PATTERN, shown_id

MANIFEST = "manifest.json"
FACTS_FILE = "bundle.json"  # schema 2+: every manifest field but `files`, itself listed (hashed) in `files`
FACTS_SINCE = 2  # the bundle schema that introduced FACTS_FILE
MAX_MANIFEST_BYTES = 16 * 2**20  # ~100,000 file entries
MAX_JSON_ITEMS = 1_000_000  # separators and containers: bounds what json.loads may build (< 100 MB)
MAX_DOC_BYTES = 64 * 2**20  # any other JSON document of a bundle (environment, runs/<id>/*.json)
SHAPE_FIX = "the bundle is corrupt or was edited: restore it from a good copy"
KEY_COLUMN = "run_id"  # every row of every table names its run


def key_problem(keys: pa.ChunkedArray | pa.Array) -> str | None:
    """What is wrong with a table's run_id column, or None: a row that names no run (null) cannot
    be placed; an id not of the planner's form (spec.run_id) would be built into paths and names."""
    if n := keys.null_count:
        return f"has {n} row(s) with no {KEY_COLUMN}"
    if not pa.types.is_string(keys.type) or not len(keys):
        return None
    bad = pc.invert(pc.match_substring_regex(keys, RUN_ID_PATTERN))
    if n := pc.sum(bad).as_py():
        return (f"has {n} row(s) whose {KEY_COLUMN} is not a run id ({RUN_ID_FORM}), "
                f"first {shown_id(keys.filter(bad)[0].as_py())}")
    return None


def check_keyed(table: pa.Table, path: Path, name: str) -> pa.Table:
    """The table, refused when a row's run_id is null or not a run id (key_problem)."""
    if KEY_COLUMN in table.schema.names and (problem := key_problem(table.column(KEY_COLUMN))):
        raise BundleError(problem, file=path, field=name, fix=SHAPE_FIX)
    return table


def bundle_digest(manifest: dict[str, Any]) -> str:
    """The bundle's content address: sha256 over its canonical manifest (which hashes every file)."""
    return "sha256:" + canonical_sha256(manifest)


def manifest_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """What FACTS_FILE holds: the manifest without its file list."""
    return {k: v for k, v in manifest.items() if k != "files"}


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


def read_manifest(path: str | Path, *, check_entries: bool = True, check_shape: bool = True) -> dict[str, Any]:
    """manifest.json of a finished bundle, refused when missing, not JSON, too new or malformed.

    check_entries=False skips the per-file checks (each entry's shape, paths inside the bundle):
    for readers that touch only a few of the files and check those themselves (report/load.py).
    check_shape=False skips the sections' shapes (runner.bundle.shapes): for `bundle verify`,
    which lists a wrong shape among its problems instead of refusing the bundle.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError("is not a bundle folder", file=root, fix="give the folder `runner reproduce` printed")
    mpath = root / MANIFEST
    if not mpath.is_file() and not mpath.is_symlink():
        fix = ("it is an interrupted bundle: resume it with --resume, or remove it"
               if root.name.endswith(PARTIAL_SUFFIX) else "give a finished bundle folder")
        raise BundleError("has no manifest.json (not a finished bundle)", file=root, fix=fix)
    # lstat-level: a link (to another bundle's manifest, or anywhere) is refused, never followed
    data = read_bounded(mpath, MAX_MANIFEST_BYTES, BundleError, what="manifest", follow_links=False,
                        fix="a bundle's manifest.json is a plain file; restore the bundle from a good copy")
    manifest = load_json_bytes(data, mpath)
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
    if check_shape and (problem := shape_problem(MANIFEST, manifest)) is not None:
        raise BundleError(problem, file=mpath, fix=SHAPE_FIX)
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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json_bytes(data: bytes, path: Path, error: type[RunnerError] = BundleError,
                    max_items: int = MAX_JSON_ITEMS) -> Any:
    """JSON from a bundle file: NaN/Infinity, nesting too deep to parse and more items than a bundle
    document holds (counted on the bytes before parsing: memory stays bounded) are one-line refusals."""
    items = sum(data.count(c) for c in (b",", b":", b"[", b"{"))
    if items > max_items:
        raise error(f"holds about {items:,} JSON items, more than the {max_items:,} a bundle document may",
                    file=path, fix="the bundle is corrupt or not a runner bundle")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise error("nests JSON too deeply to be a bundle document", file=path, fix="the bundle is corrupt") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"is not valid JSON ({str(e)[:120]})", file=path, fix="the bundle is corrupt") from None


def read_json_document(path: Path, max_bytes: int = MAX_DOC_BYTES, shaped: bool = True) -> Any:
    """A JSON document of a bundle: a regular file (not a link), at most `max_bytes`, parsed with
    load_json_bytes's bounds and, `shaped`, of the shape runner.bundle.shapes declares for its
    path; anything else is one BundleError line."""
    doc = load_json_bytes(read_bounded(path, max_bytes, BundleError, what="bundle document", follow_links=False),
                          path)
    if shaped and (problem := shape_problem(path, doc)) is not None:
        raise BundleError(problem, file=path, fix=SHAPE_FIX)
    return doc


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


def _read_table(root: Path, name: str, rel: str, version: int = BUNDLE_SCHEMA_VERSION) -> pa.Table:
    full = root / rel
    try:
        table = pq.read_table(full)
    except (pa.ArrowException, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"cannot be read as Parquet (truncated or corrupt: {first})", file=full,
                          fix="restore the bundle from a good copy") from None
    columns = declared(name, version)  # an older bundle lacks the columns added since
    if columns is not None:
        missing = [f.name for f in columns if f.name not in table.schema.names]
        if missing:
            raise BundleError(f"lacks the declared columns {missing}", file=full, field=name)
        for f in columns:
            if not table.schema.field(f.name).type.equals(f.type):
                raise BundleError(f"column {f.name} is {table.schema.field(f.name).type}, declared {f.type}",
                                  file=full, field=name)
    return check_keyed(table, full, name)


def read_bundle(path: str | Path, tables: list[str] | None = None) -> Bundle:
    """The manifest and the tables (all, or those named) of a finished bundle."""
    root = Path(path)
    manifest = read_manifest(root)
    _check_files(root, manifest)
    wanted = manifest["tables"] if tables is None else {n: manifest["tables"][n] for n in tables
                                                        if n in manifest["tables"]}
    version = manifest["bundle_schema_version"]
    loaded = {name: _read_table(root, name, info["path"], version) for name, info in wanted.items()}
    return Bundle(root, manifest, loaded)


def verify_bundle(path: str | Path) -> list[str]:
    """Every problem `runner bundle verify` finds, one line each; [] when intact (runner.audit.verify)."""
    from runner.audit.verify import verify_bundle as full_verify

    return [p.line() for p in full_verify(path).problems]
