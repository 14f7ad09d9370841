"""`runner bundle verify`: every byte and every fact of a bundle against its manifest, each problem named.

Checks, all of them, reporting every problem rather than stopping at the first:
- every listed file is there, a regular file (lstat: never a link, FIFO or device), with the
  recorded size and sha256;
- no file is there that the manifest does not list, besides the manifest, its signature, and
  in a published copy only the publication files (PUBLICATION: ro-crate-metadata.json,
  REPRODUCING.md, images/<name>.tar and .tar.sha256), each checked against the sha256 its
  RO-Crate records. A crate entry anywhere else (code/, runs/, `..`, an absolute path) is a
  problem and is never read;
- the manifest has its required fields with the right types, and every run's files are listed;
- the manifest and every listed JSON document whose shape runner.bundle.shapes declares read
  as JSON of that shape (the fields readers walk: a wrong one would stop `diff` or `publish`);
  when the manifest's shape is wrong, the checks that walk it (tables, facts) are skipped;
- every fact the manifest states agrees with the hashed file it comes from (consistency.py);
- every table is Parquet with exactly the declared columns and types, names itself and the
  manifest's schema version, and holds the number of rows the manifest says;
- the bundle digest (`sha256:` + sha256 of the canonical manifest) when one is expected;
- the detached signature (manifest.json.sig) when there is one, or when a key is given.

A bundle that cannot be read at all (no manifest, a manifest that is a link or not JSON, a
newer schema, a path leading outside the bundle) raises BundleError from the reader; one that
can be read but fails gives problems. Hashing reads in 1 MiB chunks into one reused buffer per thread.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.audit.consistency import fact_disagreements
from runner.bundle.reader import (
    KEY_COLUMN,
    MANIFEST,
    bundle_digest,
    key_problem,
    load_json_bytes,
    read_json_document,
    read_manifest,
)
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, declared, may_hold, tables_in
from runner.bundle.shapes import shape_of, shape_problem
from runner.errors import BundleError
from runner.fileio import read_bounded
from runner.fileio import sha256_file as hash_file  # re-exported: publish, tests and benchmarks use this name

CHUNK = 1 << 20
SIGNATURE_FILE = "manifest.json.sig"  # runner.publish.sign.SIGNATURE_FILE (not imported: no crypto here)
CRATE_FILE = "ro-crate-metadata.json"
REPRODUCING = "REPRODUCING.md"
IMAGES_DIR = "images"
MAX_CRATE_BYTES = 64 * 2**20
# What a published copy may add to a bundle, each checked against its sha256 in the crate.
PUBLICATION = re.compile(rf"^(?:{re.escape(REPRODUCING)}|{IMAGES_DIR}/[A-Za-z0-9][A-Za-z0-9._-]*\.tar(?:\.sha256)?)$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "bundle_schema_version": int, "runner_version": str, "created": str, "finalized": str, "experiment": str,
    "spec_sha256": str, "spec_file": str, "spec": dict, "redacted": bool, "runs": list, "tables": dict,
    "files": list, "fingerprint": dict,
}
WALKED = {"spec", "runs", "tables", "fingerprint", "files"}  # sections the checks iterate or dig into
RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "framework": str, "sweep": str, "repeat": int, "seed": int, "status": str, "files": list,
}


@dataclass(frozen=True)
class Problem:
    path: str
    # changed | missing | extra | link | special | schema | manifest | shape | fact | crate | digest | signature
    kind: str
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
    digest: str = ""  # sha256:<hex> of the canonical manifest: the bundle's content address

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{self.path}: intact ({self.files} files, {self.bytes / 1e6:.1f} MB checked), {self.digest}"
        files = len({p.path for p in self.problems})
        return f"{self.path}: {len(self.problems)} problem(s) in {files} file(s); first: {self.problems[0].line()}"


def _check_file(root: Path, entry: dict[str, Any], buffers: dict[int, bytearray]) -> tuple[int, Problem | None]:
    rel = entry["path"]
    problem = _not_regular(root, rel)
    if problem is not None:
        return 0, problem
    full = root / rel
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


def _not_regular(root: Path, rel: str) -> Problem | None:
    """A problem unless `rel` is a regular file (lstat: links, FIFOs and devices are never opened)."""
    try:
        mode = os.lstat(root / rel).st_mode
    except FileNotFoundError:
        return Problem(rel, "missing", "listed but not there")
    except OSError as e:
        return Problem(rel, "missing", f"cannot be examined ({e.strerror or e})")
    if stat.S_ISLNK(mode):
        return Problem(rel, "link", "is a symbolic link; a bundle holds plain files only")
    if not stat.S_ISREG(mode):
        return Problem(rel, "special", "is not a regular file (a folder, FIFO, device or socket); never read")
    return None


def _manifest_problems(manifest: dict[str, Any], listed: set[str]) -> tuple[list[Problem], bool]:
    """(the manifest's own problems, whether the table and fact checks can walk it: the sections they
    walk are there with their types and shape). Past a section of the wrong type or shape the
    checks here stop too."""
    out = []
    wrong, absent = set(), set()
    for name, kind in REQUIRED.items():
        value = manifest.get(name)
        if name not in manifest:
            absent.add(name)
            out.append(Problem(MANIFEST, "manifest", f"lacks the required field `{name}`"))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            wrong.add(name)
            out.append(Problem(MANIFEST, "manifest", f"field `{name}` is {type(value).__name__}, "
                                                     f"expected {getattr(kind, '__name__', kind)}"))
    if wrong & WALKED:
        return out, False  # the rest walks those sections
    if (shape := shape_problem(MANIFEST, manifest)) is not None:
        return [*out, Problem(MANIFEST, "shape", shape)], False
    walkable = not absent & WALKED
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
    version = manifest.get("bundle_schema_version")
    for name in tables_in(version if isinstance(version, int) else BUNDLE_SCHEMA_VERSION):
        if name not in tables:
            out.append(Problem(MANIFEST, "manifest", f"lacks the declared table `{name}`"))
    for name, info in tables.items():
        if info.get("path") not in listed:
            out.append(Problem(MANIFEST, "manifest", f"table {name} ({info.get('path')}) is not among the files"))
    return out, walkable


def _document_problems(root: Path, trusted: set[str]) -> list[Problem]:
    """Each hash-verified JSON document with a declared shape (runner.bundle.shapes) that does not
    read as JSON of that shape: the readers that walk it would refuse the bundle."""
    out = []
    for rel in sorted(p for p in trusted if shape_of(p) is not None):
        try:
            read_json_document(root / rel)
        except BundleError as e:
            out.append(Problem(rel, "shape", e.message))
    return out


def _table_problems(root: Path, manifest: dict[str, Any], bad: set[str]) -> list[Problem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    version = str(manifest.get("bundle_schema_version")).encode()
    manifest_version = manifest.get("bundle_schema_version")
    manifest_version = manifest_version if isinstance(manifest_version, int) else BUNDLE_SCHEMA_VERSION
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
        columns = declared(name, manifest_version)  # an older bundle lacks the columns added since
        if columns is None:
            out.append(Problem(rel, "schema", f"`{name}` is not a declared table"))
            continue
        missing = [f.name for f in columns if f.name not in schema.names]
        extra = [n for n in schema.names if n not in columns.names and not may_hold(name, n, manifest_version)]
        if missing:
            out.append(Problem(rel, "schema", f"lacks the declared columns {missing}"))
        if extra:
            out.append(Problem(rel, "schema", f"has undeclared columns {extra}"))
        for f in columns:
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
        if KEY_COLUMN in schema.names:
            keys = pf.read(columns=[KEY_COLUMN]).column(KEY_COLUMN)
            if problem := key_problem(keys):
                out.append(Problem(rel, "schema", problem))
            if name == "runs":
                run_ids = keys.to_pylist()
    if run_ids is not None:
        listed = [r.get("id") for r in manifest.get("runs") or [] if isinstance(r, dict)]
        if sorted(map(str, run_ids)) != sorted(map(str, listed)):
            rel = (manifest["tables"].get("runs") or {}).get("path", "tables/runs.parquet")
            out.append(Problem(rel, "schema", "its run ids differ from the manifest's runs"))
    return out


def _crate_files(root: Path, digest: str) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Files the RO-Crate of a published copy lists with a sha256 ({path: entity}) and its problems.

    Nothing is read here but the crate itself (a regular file under a byte cap). A root dataset whose
    identifier names another bundle digest than the manifest's is a problem.
    """
    if not os.path.lexists(root / CRATE_FILE):
        return {}, []
    bad = _not_regular(root, CRATE_FILE)
    if bad is not None:
        return {}, [bad]
    try:
        doc = load_json_bytes(read_bounded(root / CRATE_FILE, MAX_CRATE_BYTES, BundleError, what="RO-Crate",
                                           follow_links=False), root / CRATE_FILE)
    except BundleError as e:
        return {}, [Problem(CRATE_FILE, "crate", e.message)]
    graph = doc.get("@graph") if isinstance(doc, dict) else None
    if not isinstance(graph, list):
        return {}, [Problem(CRATE_FILE, "crate", "has no @graph list")]
    out, problems = {}, []
    for e in graph:
        if isinstance(e, dict) and e.get("@id") == "./" and isinstance(e.get("identifier"), str) \
                and e["identifier"].startswith("sha256:") and e["identifier"] != digest:
            problems.append(Problem(CRATE_FILE, "crate", f"names bundle digest {e['identifier']}, the manifest's "
                                                         f"is {digest}"))
        if not isinstance(e, dict) or not isinstance(e.get("@id"), str) or "sha256" not in e:
            continue
        types = e.get("@type")
        if types == "File" or (isinstance(types, list) and "File" in types):
            out[e["@id"]] = e
    return out, problems


def _publication_problems(root: Path, crate: dict[str, dict[str, Any]], listed: set[str],
                          result: VerifyResult) -> set[str]:
    """Check the files a published copy adds against the crate; returns the ones examined."""
    verified = set()
    for rel, entity in sorted(crate.items()):
        if rel in listed or rel == MANIFEST:  # covered by the manifest (and its signature), not by the crate
            continue
        if not PUBLICATION.match(rel):
            result.problems.append(Problem(rel, "crate", f"listed only in {CRATE_FILE}; a published copy may add "
                                                         f"only {REPRODUCING} and {IMAGES_DIR}/*.tar(.sha256) "
                                                         "(not read)"))
            continue
        verified.add(rel)  # examined here, whatever the outcome: not "extra" as well
        problem = _not_regular(root, rel)
        if problem is not None:
            result.problems.append(problem)
            continue
        size, sha = hash_file(root / rel)
        if sha != entity.get("sha256") or size != entity.get("contentSize"):
            result.problems.append(Problem(rel, "changed", "differs from the sha256 in " + CRATE_FILE))
            continue
        result.notes.append(f"{rel}: publication file, checked against {CRATE_FILE} "
                            "(not covered by the manifest or its signature)")
    return verified


def verify_bundle(path: str | Path, public_key: Path | None = None, workers: int | None = None,
                  expect_digest: str | None = None) -> VerifyResult:
    """Verify a finished bundle; raises BundleError only when it cannot be read at all."""
    root = Path(path)
    start = time.perf_counter()
    manifest = read_manifest(root, check_shape=False)  # refuses: not a bundle, a link, newer schema, unsafe paths
    result = VerifyResult(root, digest=bundle_digest(manifest))
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
    crate, crate_problems = _crate_files(root, result.digest)
    result.problems.extend(crate_problems)
    publication = _publication_problems(root, crate, listed, result)
    allowed = {MANIFEST, SIGNATURE_FILE} | ({CRATE_FILE} if os.path.lexists(root / CRATE_FILE) else set())
    for dirpath, dirnames, filenames in os.walk(root):  # never follows links
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            rel = (base / name).relative_to(root).as_posix()
            if rel in listed or rel in publication:
                continue
            if rel in allowed:
                extra = _not_regular(root, rel)
                if extra is not None:
                    result.problems.append(extra)
                continue
            kind = "link" if (base / name).is_symlink() else "extra"
            result.problems.append(Problem(rel, kind, "not listed in the manifest"))
    manifest_problems, walkable = _manifest_problems(manifest, listed)
    result.problems.extend(manifest_problems)
    result.problems.extend(_document_problems(root, listed - bad))
    if walkable:
        result.problems.extend(_table_problems(root, manifest, bad))
        disagreements, notes = fact_disagreements(root, manifest, listed, listed - bad)
        result.problems.extend(Problem(MANIFEST, "fact", f"`{name}` is {detail}") for name, detail in disagreements)
        result.notes.extend(notes)
    else:
        result.notes.append(f"{MANIFEST}: a section of the wrong type or shape: its tables and facts were not checked")
    if expect_digest is not None and expect_digest != result.digest:
        result.problems.append(Problem(MANIFEST, "digest", f"the bundle digest is {result.digest}, "
                                                           f"expected {expect_digest}"))
    sig_present = os.path.lexists(root / SIGNATURE_FILE)
    if sig_present or public_key is not None:
        from runner.publish.sign import check_signature

        check = check_signature(root, public_key)
        result.signature = check.detail
        if not check.ok:
            result.problems.append(Problem(SIGNATURE_FILE, "signature", check.detail))
    result.seconds = time.perf_counter() - start
    return result
