"""Every fact manifest.json states, re-derived from the bundle's hashed files.

The manifest's file list is covered by the sha256 of each file; its other facts (runs and
their outcome, experiment, times, spec, fingerprint summary, table rows) are checked here:
- against `bundle.json` (bundle schema 2+): the writer's copy of every manifest field but
  `files`, itself a listed, hashed file;
- against the files they summarise, whatever the schema: `tables/runs.parquet` (each run's
  framework, sweep, repeat, seed, status, reason, image, engine; experiment, spec hash,
  runner version, code tree hash), `runs/<id>/environment.json` (image, engine), the run's
  files under `runs/<id>/` and `logs/`, `environment/*.json` (the fingerprint summary).

Only files whose hash already verified are read (`trusted`), each as a regular file under
a byte cap. Each disagreement is (manifest field, detail); the caller makes it a problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runner.bundle.reader import FACTS_FILE, FACTS_SINCE, MANIFEST, manifest_facts, read_json_document
from runner.errors import BundleError

RUN_COLUMNS = {"framework": "framework", "sweep": "sweep", "repeat": "repeat", "seed": "seed",
               "status": "status", "reason": "failure_reason", "image_id": "image_id", "engine": "engine"}
TOP_COLUMNS = {"experiment": "experiment", "spec_sha256": "spec_sha256", "runner_version": "runner_version"}
UNCOVERED_V1 = ("created", "finalized", "redacted", "spec")
_ENV_DOC = re.compile(r"^environment/([a-z0-9_-]+(?:/[a-z0-9_.-]+)?)\.json$")

Disagreement = tuple[str, str]  # (manifest field, what differs)


def _doc(root: Path, rel: str) -> Any:
    """A listed document; one of the wrong shape raises (verify reports shapes on their own)."""
    return read_json_document(root / rel)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _against_facts_file(root: Path, manifest: dict[str, Any], trusted: set[str]) -> list[Disagreement]:
    if FACTS_FILE not in trusted:
        return []  # missing or changed: reported by the file checks
    try:
        facts = read_json_document(root / FACTS_FILE, shaped=False)  # compared field by field, any shape
    except BundleError as e:
        return [("files", f"{FACTS_FILE} {e.message}")]
    if not isinstance(facts, dict):
        return [("files", f"{FACTS_FILE} is not a JSON object")]
    stated = manifest_facts(manifest)
    out = []
    for key in sorted(set(stated) | set(facts)):
        a, b = stated.get(key), facts.get(key)
        if a == b:
            continue
        if key == "runs" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for ra, rb in zip(a, b, strict=True):
                if not (isinstance(ra, dict) and isinstance(rb, dict)):
                    out.append(("runs", f"an entry differs from {FACTS_FILE}"))
                    continue
                for name in sorted(set(ra) | set(rb)):
                    if ra.get(name) != rb.get(name):
                        out.append((f"runs[{rb.get('id')}].{name}", f"{_show(ra.get(name))}, {FACTS_FILE} says "
                                                                    f"{_show(rb.get(name))}"))
        else:
            out += [(name, f"{_show(x)}, {FACTS_FILE} says {_show(y)}") for name, x, y in _leaf_diffs(key, a, b)]
    return out


def _leaf_diffs(name: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """The innermost fields where two JSON values differ, as dotted names; [] when equal."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
                for d in _leaf_diffs(f"{name}.{k}", a.get(k), b.get(k))]
    return [(name, a, b)]


def _runs_rows(root: Path, manifest: dict[str, Any], trusted: set[str]) -> dict[str, dict[str, Any]] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = ((manifest.get("tables") or {}).get("runs") or {}).get("path")
    if rel not in trusted:
        return None
    columns = ["run_id", *RUN_COLUMNS.values(), *TOP_COLUMNS.values(), "code_tree_sha256"]
    try:
        pf = pq.ParquetFile(root / rel)
        names = set(pf.schema_arrow.names)
        rows = pf.read(columns=[c for c in columns if c in names]).to_pylist()
    except (pa.ArrowException, OSError):
        return None  # reported by the table checks
    return {str(r.get("run_id")): r for r in rows}


def _is_only(value: Any, seen: set[Any]) -> bool:
    """Whether the table's values `seen` are exactly the manifest's `value` (which, in an edited
    manifest, may be a list or an object: never equal, and never hashed)."""
    return isinstance(value, (str, int, float, bool, type(None))) and seen == {value}


def _against_runs_table(manifest: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[Disagreement]:
    out = []
    for run in manifest.get("runs") or []:
        if not isinstance(run, dict) or str(run.get("id")) not in rows:
            continue  # a run missing from the table is reported by the table checks
        row = rows[str(run["id"])]
        for name, column in RUN_COLUMNS.items():
            if column not in row or (name == "reason" and run.get("status") == "not_run"):
                continue  # a not_run row states why in words the manifest does not repeat
            if run.get(name) != row[column]:
                out.append((f"runs[{run['id']}].{name}", f"{_show(run.get(name))}, tables/runs.parquet says "
                                                         f"{_show(row[column])}"))
    expected = dict(TOP_COLUMNS)
    code = ((manifest.get("fingerprint") or {}).get("code") or {}) if isinstance(manifest.get("fingerprint"),
                                                                                  dict) else {}
    for name, column in expected.items():
        seen = {r[column] for r in rows.values() if column in r}
        if seen and not _is_only(manifest.get(name), seen):
            out.append((name, f"{_show(manifest.get(name))}, tables/runs.parquet says {_show(sorted(map(str, seen)))}"))
    seen = {r["code_tree_sha256"] for r in rows.values() if "code_tree_sha256" in r}
    if seen and isinstance(code, dict) and not _is_only(code.get("tree_sha256"), seen):
        out.append(("fingerprint.code.tree_sha256", f"{_show(code.get('tree_sha256'))}, tables/runs.parquet says "
                                                    f"{_show(sorted(map(str, seen)))}"))
    return out


def _against_run_files(root: Path, manifest: dict[str, Any], listed: set[str],
                       trusted: set[str]) -> list[Disagreement]:
    out = []
    for run in manifest.get("runs") or []:
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            continue
        rid = run["id"]
        own = {p for p in listed if p.startswith(f"runs/{rid}/")} | ({f"logs/{rid}.log"} & listed)
        files = run.get("files") if isinstance(run.get("files"), list) else []
        if set(map(str, files)) != own:
            out.append((f"runs[{rid}].files", f"names {len(files)} file(s), the bundle holds {len(own)} of this run"))
        env_rel = f"runs/{rid}/environment.json"
        if env_rel not in trusted:
            continue
        try:
            doc = read_json_document(root / env_rel, shaped=False)  # its two fields are checked here
        except BundleError:
            continue  # verify's document pass names what is wrong with it
        if not isinstance(doc, dict):
            continue
        env = doc.get("environment") if isinstance(doc.get("environment"), dict) else {}
        for name, value in (("image_id", doc.get("image_id")), ("engine", env.get("engine"))):
            if run.get(name) != value:
                out.append((f"runs[{rid}].{name}", f"{_show(run.get(name))}, {env_rel} says {_show(value)}"))
    return out


def _against_environment(root: Path, manifest: dict[str, Any], listed: set[str],
                         trusted: set[str]) -> list[Disagreement]:
    from runner.fingerprint.gpu import gpu_summary
    from runner.fingerprint.host import host_summary

    fp = manifest.get("fingerprint")
    if not isinstance(fp, dict):
        return []  # reported by the manifest checks
    out = []

    def doc(name: str) -> dict[str, Any] | None:
        rel = f"environment/{name}.json"
        if rel not in listed:
            return {}
        if rel not in trusted:
            return None  # changed or missing: reported by the file checks
        try:
            value = _doc(root, rel)
        except BundleError:
            return None
        return value if isinstance(value, dict) else {}

    names = sorted(m.group(1) for p in listed if (m := _ENV_DOC.match(p)) and m.group(1) != "code")
    derived: dict[str, Any] = {"environment": names}
    if (host := doc("host")) is not None:
        derived["host"] = host_summary(host)
    if (gpu := doc("gpu")) is not None:
        derived["gpu"] = gpu_summary(gpu)
    if (code := doc("code")) is not None:
        derived["code"] = {"tree_sha256": code.get("tree_sha256"), "git": code.get("git"),
                           "runner_version": code.get("runner_version")}
    if (dataset := doc("dataset")) is not None:
        derived["dataset"] = dataset or None
    for key, value in derived.items():
        out += [(name, f"{_show(x)}, environment/ says {_show(y)}")
                for name, x, y in _leaf_diffs(f"fingerprint.{key}", fp.get(key), value)]
    return out


def fact_disagreements(root: Path, manifest: dict[str, Any], listed: set[str],
                       trusted: set[str]) -> tuple[list[Disagreement], list[str]]:
    """(every manifest fact that its hashed source contradicts, notes on facts no hash covers)."""
    out: list[Disagreement] = []
    notes: list[str] = []
    version = manifest.get("bundle_schema_version")
    if isinstance(version, int) and version >= FACTS_SINCE:
        if FACTS_FILE not in listed:
            out.append(("files", f"bundle schema {version} lists no {FACTS_FILE}, which holds the manifest's facts"))
        out += _against_facts_file(root, manifest, trusted)
    else:
        notes.append(f"{MANIFEST}: bundle schema {version} predates {FACTS_FILE}: {', '.join(UNCOVERED_V1)} are "
                     "covered by no file hash (only by the bundle digest or a signature)")
    spec = manifest.get("spec")
    if isinstance(spec, dict) and "name" in spec and spec.get("name") != manifest.get("experiment"):
        out.append(("experiment", f"{_show(manifest.get('experiment'))}, the spec's name is {_show(spec.get('name'))}"))
    rows = _runs_rows(root, manifest, trusted)
    if rows is not None:
        out += _against_runs_table(manifest, rows)
    out += _against_run_files(root, manifest, listed, trusted)
    out += _against_environment(root, manifest, listed, trusted)
    return out, notes
