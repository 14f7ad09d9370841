"""`runner bundle verify`: every byte of a bundle against its manifest, each problem named by file.

Checks, all of them, reporting every problem rather than stopping at the first:
- every listed file is there, a plain file (not a link), with the recorded size and sha256;
- no file is there that the manifest does not list (besides the manifest itself, its
  signature, and in a published copy the files its RO-Crate lists with their own sha256);
- the manifest has its required fields with the right types, and every run's files are listed;
- every table is Parquet with exactly the declared columns and types, names itself and the
  manifest's schema version, and holds the number of rows the manifest says;
- the detached signature (manifest.json.sig) when there is one, or when a key is given.

A bundle that cannot be read at all (no manifest, a newer schema, a path leading outside the
bundle) raises BundleError from the reader; one that can be read but fails gives problems.
Hashing reads in 1 MiB chunks into one reused buffer per thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.bundle.reader import MANIFEST, read_manifest
from runner.bundle.schemas import TABLES

CHUNK = 1 << 20
SIGNATURE_FILE = "manifest.json.sig"  # runner.publish.sign.SIGNATURE_FILE (not imported: no crypto here)
CRATE_FILE = "ro-crate-metadata.json"

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "bundle_schema_version": int, "runner_version": str, "created": str, "finalized": str, "experiment": str,
    "spec_sha256": str, "spec_file": str, "spec": dict, "redacted": bool, "runs": list, "tables": dict,
    "files": list, "fingerprint": dict,
}
RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "framework": str, "sweep": str, "repeat": int, "seed": int, "status": str, "files": list,
}


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # changed | missing | extra | link | schema | manifest | signature
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


@dataclass
class VerifyResult:
    path: Path
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signature: str = "not signed"

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{self.path}: intact ({self.files} files, {self.bytes / 1e6:.1f} MB checked)"
        files = len({p.path for p in self.problems})
        return f"{self.path}: {len(self.problems)} problem(s) in {files} file(s); first: {self.problems[0].line()}"


def hash_file(path: Path, buf: bytearray | None = None) -> tuple[int, str]:
    """(size, sha256) of a file, read in 1 MiB chunks without allocating per chunk."""
    buf = buf if buf is not None else bytearray(CHUNK)
    view = memoryview(buf)
    h, size = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def _check_file(root: Path, entry: dict[str, Any], buffers: dict[int, bytearray]) -> tuple[int, Problem | None]:
    rel = entry["path"]
    full = root / rel
    if full.is_symlink():
        return 0, Problem(rel, "link", "is a symbolic link; a bundle holds plain files only")
    if not full.is_file():
        return 0, Problem(rel, "missing", "listed in the manifest but not there")
    buf = buffers.setdefault(threading.get_ident(), bytearray(CHUNK))
    try:
        size, sha = hash_file(full, buf)
    except OSError as e:
        return 0, Problem(rel, "missing", f"cannot be read ({e.strerror or e})")
    if size != entry["size"]:
        return size, Problem(rel, "changed", f"{size} bytes, the manifest says {entry['size']} "
                                             f"(sha256 {sha[:12]}..., expected {str(entry.get('sha256'))[:12]}...)")
    if sha != entry.get("sha256"):
        return size, Problem(rel, "changed", f"content differs: sha256 {sha[:12]}..., the manifest says "
                                             f"{str(entry.get('sha256'))[:12]}... (same size, {size} bytes)")
    return size, None


def _manifest_problems(manifest: dict[str, Any], listed: set[str]) -> list[Problem]:
    out = []
    for name, kind in REQUIRED.items():
        value = manifest.get(name)
        if name not in manifest:
            out.append(Problem(MANIFEST, "manifest", f"lacks the required field `{name}`"))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            out.append(Problem(MANIFEST, "manifest", f"field `{name}` is {type(value).__name__}, "
                                                     f"expected {getattr(kind, '__name__', kind)}"))
    seen: set[str] = set()
    for entry in manifest.get("files", []):
        if entry["path"] in seen:
            out.append(Problem(MANIFEST, "manifest", f"lists {entry['path']} twice"))
        seen.add(entry["path"])
        sha = entry.get("sha256")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            out.append(Problem(MANIFEST, "manifest", f"the entry for {entry['path']} has no valid sha256"))
    if isinstance(manifest.get("spec_file"), str) and manifest["spec_file"] not in listed:
        out.append(Problem(MANIFEST, "manifest", f"spec_file {manifest['spec_file']} is not among the files"))
    runs = manifest.get("runs") if isinstance(manifest.get("runs"), list) else []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            out.append(Problem(MANIFEST, "manifest", f"runs[{i}] is not an object"))
            continue
        for name, kind in RUN_FIELDS.items():
            if not isinstance(run.get(name), kind) or isinstance(run.get(name), bool):
                out.append(Problem(MANIFEST, "manifest", f"runs[{i}] lacks a valid `{name}`"))
        for rel in run.get("files") or []:
            if rel not in listed:
                out.append(Problem(MANIFEST, "manifest", f"run {run.get('id')} names {rel}, not among the files"))
    tables = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    for name in TABLES:
        if name not in tables:
            out.append(Problem(MANIFEST, "manifest", f"lacks the declared table `{name}`"))
    for name, info in tables.items():
        if info.get("path") not in listed:
            out.append(Problem(MANIFEST, "manifest", f"table {name} ({info.get('path')}) is not among the files"))
    return out


def _table_problems(root: Path, manifest: dict[str, Any], bad: set[str]) -> list[Problem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    version = str(manifest.get("bundle_schema_version")).encode()
    run_ids = None
    for name, info in (manifest.get("tables") or {}).items():
        rel = info.get("path")
        full = root / rel
        if rel in bad or not full.is_file() or full.is_symlink():
            continue  # already reported by file
        try:
            pf = pq.ParquetFile(full)
            schema = pf.schema_arrow
        except (pa.ArrowException, OSError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            out.append(Problem(rel, "schema", f"cannot be read as Parquet ({first})"))
            continue
        declared = TABLES.get(name)
        if declared is None:
            out.append(Problem(rel, "schema", f"`{name}` is not a declared table"))
            continue
        missing = [f.name for f in declared if f.name not in schema.names]
        extra = [n for n in schema.names if n not in declared.names]
        if missing:
            out.append(Problem(rel, "schema", f"lacks the declared columns {missing}"))
        if extra:
            out.append(Problem(rel, "schema", f"has undeclared columns {extra}"))
        for f in declared:
            if f.name in schema.names and not schema.field(f.name).type.equals(f.type):
                out.append(Problem(rel, "schema", f"column {f.name} is {schema.field(f.name).type}, "
                                                  f"declared {f.type}"))
        meta = schema.metadata or {}
        if meta.get(b"table") != name.encode():
            out.append(Problem(rel, "schema", f"says it is table {meta.get(b'table', b'?').decode()!r}, "
                                              f"the manifest says {name!r}"))
        if meta.get(b"bundle_schema_version") != version:
            out.append(Problem(rel, "schema", f"bundle schema {meta.get(b'bundle_schema_version', b'?').decode()}, "
                                              f"the manifest says {version.decode()}"))
        if isinstance(info.get("rows"), int) and pf.metadata.num_rows != info["rows"]:
            out.append(Problem(rel, "schema", f"holds {pf.metadata.num_rows} rows, the manifest says {info['rows']}"))
        if name == "runs" and "run_id" in schema.names:
            run_ids = pf.read(columns=["run_id"]).column("run_id").to_pylist()
    if run_ids is not None:
        listed = [r.get("id") for r in manifest.get("runs") or [] if isinstance(r, dict)]
        if sorted(map(str, run_ids)) != sorted(map(str, listed)):
            rel = (manifest["tables"].get("runs") or {}).get("path", "tables/runs.parquet")
            out.append(Problem(rel, "schema", "its run ids differ from the manifest's runs"))
    return out


def _crate_files(root: Path) -> dict[str, dict[str, Any]]:
    """Files the RO-Crate of a published copy lists with a sha256 ({path: entity}); {} when not published.

    Those the manifest does not list (REPRODUCING.md, image archives) are checked against it.
    """
    crate = root / CRATE_FILE
    if not crate.is_file() or crate.is_symlink():
        return {}
    try:
        graph = json.loads(crate.read_text(encoding="utf-8")).get("@graph", [])
    except (ValueError, AttributeError, UnicodeDecodeError):
        return {}
    out = {}
    for e in graph if isinstance(graph, list) else []:
        if not isinstance(e, dict) or not isinstance(e.get("@id"), str) or "sha256" not in e:
            continue
        types = e.get("@type")
        if types == "File" or (isinstance(types, list) and "File" in types):
            out[e["@id"]] = e
    return out


def verify_bundle(path: str | Path, public_key: Path | None = None, workers: int | None = None) -> VerifyResult:
    """Verify a finished bundle; raises BundleError only when it cannot be read at all."""
    root = Path(path)
    start = time.perf_counter()
    manifest = read_manifest(root)  # refuses: not a bundle, newer schema, unsafe paths
    result = VerifyResult(root)
    entries = manifest["files"]
    listed = {e["path"] for e in entries}
    buffers: dict[int, bytearray] = {}
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda e: _check_file(root, e, buffers), entries))
    bad = set()
    for entry, (size, problem) in zip(entries, outcomes, strict=True):
        result.files += 1
        result.bytes += size
        if problem is not None:
            result.problems.append(problem)
            bad.add(entry["path"])
    publication = _crate_files(root)
    for rel, entity in sorted(publication.items()):
        if rel in listed or rel == MANIFEST:  # the manifest is covered by its signature, not by the crate
            continue
        full = root / rel
        if full.is_file() and not full.is_symlink():
            size, sha = hash_file(full)
            if sha != entity.get("sha256") or size != entity.get("contentSize"):
                result.problems.append(Problem(rel, "changed", "differs from the sha256 in " + CRATE_FILE))
            else:
                result.notes.append(f"{rel}: publication file, checked against {CRATE_FILE} "
                                    "(not covered by the manifest or its signature)")
    allowed = {MANIFEST, SIGNATURE_FILE} | ({CRATE_FILE} if publication else set()) | set(publication)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            rel = (base / name).relative_to(root).as_posix()
            if rel in listed or rel in allowed:
                continue
            kind = "link" if (base / name).is_symlink() else "extra"
            result.problems.append(Problem(rel, kind, "not listed in the manifest"))
    result.problems.extend(_manifest_problems(manifest, listed))
    result.problems.extend(_table_problems(root, manifest, bad))
    sig_present = (root / SIGNATURE_FILE).is_file()
    if sig_present or public_key is not None:
        from runner.publish.sign import check_signature

        check = check_signature(root, public_key)
        result.signature = check.detail
        if not check.ok:
            result.problems.append(Problem(SIGNATURE_FILE, "signature", check.detail))
    result.seconds = time.perf_counter() - start
    return result
