"""`ro-crate-metadata.json`: the bundle described as an RO-Crate 1.1 Process Run Crate (profile 0.5).

https://w3id.org/ro/wfrun/process/0.5. The graph holds:
- the metadata descriptor and the root Dataset (conformsTo the profile, a single value; every
  file in hasPart, the actions in mentions; identifier the bundle digest when given);
- `#runner`, the SoftwareApplication that ran everything, whose softwareRequirements are the
  framework versions the runs used (SoftwareApplication each);
- one ContainerImage per image (additionalType DockerImage, sha256 of its id), and the image
  archives when they are included;
- one CreateAction per run: instrument #runner, object the dataset and the spec, result the
  run's files, startTime/endTime from its events (ISO 8601 with +00:00, the pattern the
  profile's SHACL shapes expect), actionStatus Completed or Failed as the profile's plain string (with the
  reason as `error`), containerImage its image;
- one CreateAction merging the runs into the Parquet tables (its results: the tables).
Every File carries contentSize and sha256, so `runner bundle verify` can check the files a
published copy adds (REPRODUCING.md, image archives) against this document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.bundle.reader import Bundle

CONTEXT = ["https://w3id.org/ro/crate/1.1/context", "https://w3id.org/ro/terms/workflow-run/context"]
CRATE_SPEC = "https://w3id.org/ro/crate/1.1"
PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
DOCKER_IMAGE = "https://w3id.org/ro/terms/workflow-run#DockerImage"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
METADATA_FILE = "ro-crate-metadata.json"
# Vocabulary terms the graph refers to, described as entities of their own.
TERMS = {
    CRATE_SPEC: ("CreativeWork", "RO-Crate 1.1"),
    DOCKER_IMAGE: ("DefinedTerm", "DockerImage"),
}

_FORMATS = {".parquet": "application/vnd.apache.parquet", ".json": "application/json", ".jsonl": "application/jsonl",
            ".yaml": "application/yaml", ".yml": "application/yaml", ".log": "text/plain", ".txt": "text/plain",
            ".md": "text/markdown", ".py": "text/x-python", ".tar": "application/x-tar", ".sig": "application/json",
            ".sha256": "text/plain", ".toml": "application/toml"}


def ref(id_: str) -> dict[str, str]:
    return {"@id": id_}


def _iso(t: float | None) -> str | None:
    """UTC as 2026-01-02T03:04:05+00:00: the form the profile's startTime/endTime pattern accepts."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _iso_text(text: Any) -> str | None:
    """A recorded ...Z timestamp in the same form as _iso."""
    return text[:-1] + "+00:00" if isinstance(text, str) and text.endswith("Z") else text


def run_times(path: Path) -> tuple[float | None, float | None]:
    """(first, last) event time of a run's events.jsonl, reading only its ends."""
    if not path.is_file():
        return None, None
    first = last = None
    with open(path, "rb") as fh:
        for line in fh:
            try:
                first = json.loads(line).get("t")
                break
            except (ValueError, AttributeError):
                continue
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 65536))
        for line in reversed(fh.read().splitlines()):
            try:
                last = json.loads(line).get("t")
                break
            except (ValueError, AttributeError):
                continue
    num = (int, float)
    return (first if isinstance(first, num) else None), (last if isinstance(last, num) else None)


def file_entity(rel: str, size: int, sha256: str, **extra: Any) -> dict[str, Any]:
    entity = {"@id": rel, "@type": "File", "name": Path(rel).name, "contentSize": size, "sha256": sha256}
    fmt = _FORMATS.get(Path(rel).suffix)
    if fmt:
        entity["encodingFormat"] = fmt
    return entity | extra


def _images(bundle: Bundle, facts_images: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """image id -> ContainerImage entity, for every image a run used."""
    out: dict[str, dict[str, Any]] = {}
    runs = bundle.runs.select(["framework", "image_id", "framework_version"]).to_pylist()
    for row in runs:
        image_id = row.get("image_id")
        if not image_id or image_id in out:
            continue
        record = facts_images.get(row.get("framework") or "", {})
        image = record.get("image") if isinstance(record.get("image"), dict) else {}
        tags = [t for t in image.get("repo_tags") or [] if isinstance(t, str)]
        name, _, tag = (tags[0].rpartition(":") if tags and ":" in tags[0] else (image.get("name") or "", "", ""))
        digest = image_id.split(":", 1)[-1]
        entity = {"@id": f"#image-{digest[:12]}", "@type": "ContainerImage", "additionalType": ref(DOCKER_IMAGE),
                  "name": name or image.get("name") or f"{row.get('framework')} image", "sha256": digest,
                  "identifier": image_id}
        if tag:
            entity["tag"] = tag
        out[image_id] = entity
    return out


def build_crate(bundle: Bundle, images_by_framework: dict[str, dict[str, Any]], extra_files: list[dict[str, Any]],
                *, license_id: str | None = None, published: datetime | None = None,
                digest: str | None = None) -> dict[str, Any]:
    """The RO-Crate metadata document of a bundle (plus the `extra_files` entities publishing adds)."""
    m = bundle.manifest
    files = {e["path"]: e for e in m["files"]}
    graph: list[dict[str, Any]] = []
    entities: dict[str, dict[str, Any]] = {}

    def add(entity: dict[str, Any]) -> dict[str, Any]:
        if entity["@id"] not in entities:
            entities[entity["@id"]] = entity
            graph.append(entity)
        return entity

    published = published or datetime.now(UTC)
    root = add({"@id": "./", "@type": "Dataset", "conformsTo": ref(PROFILE),
                "name": f"{m.get('experiment')}: result bundle {bundle.path.name}",
                "description": (f"Result bundle of `runner reproduce` for experiment {m.get('experiment')}: "
                                f"{len(m.get('runs', []))} runs, their events, logs, environment records and "
                                "Parquet tables. REPRODUCING.md says how to re-run it."),
                "datePublished": published.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "dateCreated": m.get("created"), "hasPart": [], "mentions": []})
    if digest:  # the bundle digest: sha256 of the canonical manifest, which hashes every file
        root["identifier"] = digest
    if license_id:
        root["license"] = ref(f"https://spdx.org/licenses/{license_id}")
        add({"@id": root["license"]["@id"], "@type": "CreativeWork", "name": license_id, "identifier": license_id})
    add({"@id": METADATA_FILE, "@type": "CreativeWork", "conformsTo": ref(CRATE_SPEC), "about": ref("./")})
    add({"@id": PROFILE, "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"})

    frameworks = {}
    for row in bundle.runs.select(["framework", "framework_version"]).to_pylist():
        fw, version = row.get("framework"), row.get("framework_version")
        if fw and version and (fw, version) not in frameworks:
            frameworks[(fw, version)] = add({"@id": f"#software-{fw}-{version}", "@type": "SoftwareApplication",
                                             "name": fw, "softwareVersion": version})
    code = (m.get("fingerprint") or {}).get("code") or {}
    runner_app = {"@id": "#runner", "@type": "SoftwareApplication", "name": "runner",
                  "softwareVersion": m.get("runner_version"),
                  "description": "Containerized reproducibility toolkit for comparing deep-learning frameworks; "
                                 f"workload code tree sha256 {code.get('tree_sha256')}",
                  "softwareRequirements": [ref(e["@id"]) for e in frameworks.values()]}
    if "code/" in {p[:5] for p in files}:
        runner_app["hasPart"] = []
    add(runner_app)
    image_entities = {iid: add(e) for iid, e in _images(bundle, images_by_framework).items()}

    for rel, entry in files.items():
        entity = add(file_entity(rel, entry["size"], entry["sha256"]))
        root["hasPart"].append(ref(rel))
        if rel.startswith("code/") and "hasPart" in runner_app:
            runner_app["hasPart"].append(ref(rel))
            entity["description"] = "workload code the runs executed (mounted read-only into each container)"
    mpath = bundle.path / "manifest.json"
    add(file_entity("manifest.json", mpath.stat().st_size, _sha256(mpath),
                    description="every file's size and sha256; signed by manifest.json.sig when present"))
    root["hasPart"].append(ref("manifest.json"))
    for extra in extra_files:
        add(extra)
        root["hasPart"].append(ref(extra["@id"]))

    dataset = (m.get("fingerprint") or {}).get("dataset") or {}
    ds_hash = dataset.get("source_root_sha256") or dataset.get("root_sha256")
    ds_name = str(dataset.get("name") or ((m.get("spec") or {}).get("dataset") or {}).get("name") or "dataset")
    ds_id = f"#dataset-{ds_name}-{(ds_hash or 'unknown')[:16]}"
    add({"@id": ds_id, "@type": "CreativeWork", "name": f"{ds_name} dataset" + (" (synthetic)" if
                                                                                 dataset.get("synthetic") else ""),
         "description": "The training and test data (not included in this crate; identified by the root sha256 "
                        "of its per-file manifest, which `runner reproduce` checks).",
         "identifier": f"sha256:{ds_hash}" if ds_hash else None})
    spec_file = m.get("spec_file") or "spec.yaml"

    run_rows = {r["run_id"]: r for r in bundle.runs.to_pylist()}
    for run in m.get("runs", []):
        rid = run["id"]
        row = run_rows.get(rid, {})
        start, end = run_times(bundle.path / f"runs/{rid}/events.jsonl")
        ok = run.get("status") == "ok"
        action = {"@id": f"#run-{rid}", "@type": "CreateAction",
                  "name": f"{run.get('framework')} run {rid} (sweep {run.get('sweep')}, repeat {run.get('repeat')}, "
                          f"seed {run.get('seed')})",
                  "instrument": ref("#runner"), "object": [ref(ds_id), ref(spec_file)],
                  "result": [ref(f) for f in run.get("files") or [] if f in entities],
                  "description": f"Trains and measures {row.get('model') or 'the model'} with "
                                 f"{run.get('framework')} as the spec's run {rid} says; its events, log and "
                                 "results are the action's results",
                  "actionStatus": COMPLETED if ok else FAILED}
        if start is not None:
            action["startTime"] = _iso(start)
        if end is not None:
            action["endTime"] = _iso(end)
        if not ok:
            action["error"] = run.get("reason") or row.get("failure_reason") or run.get("status")
        if run.get("image_id") in image_entities:
            action["containerImage"] = ref(image_entities[run["image_id"]]["@id"])
        add(action)
        root["mentions"].append(ref(action["@id"]))
    tables = [info["path"] for info in (m.get("tables") or {}).values() if info.get("path") in entities]
    merge = add({"@id": "#merge-tables", "@type": "CreateAction",
                 "name": "merge every run's results into the bundle's Parquet tables",
                 "instrument": ref("#runner"),
                 "object": [ref(f) for r in m.get("runs", []) for f in r.get("files") or []
                            if f in entities and f.endswith("events.jsonl")],
                 "description": "Reads every run's events and writes the Parquet tables under tables/",
                 "result": [ref(t) for t in tables], "startTime": _iso_text(m.get("created")),
                 "endTime": _iso_text(m.get("finalized")), "actionStatus": COMPLETED})
    root["mentions"].append(ref(merge["@id"]))
    for entity in graph:
        for key in [k for k, v in entity.items() if v is None]:
            del entity[key]
    used = referenced_ids(graph)
    for term, (type_, name) in TERMS.items():  # described too, so that every reference resolves in the graph
        if term in used:
            add({"@id": term, "@type": type_, "name": name})
    return {"@context": CONTEXT, "@graph": graph}


def _sha256(path: Path) -> str:
    from runner.audit.verify import hash_file

    return hash_file(path)[1]


def referenced_ids(obj: Any) -> set[str]:
    """Every {"@id": ...} reference inside a JSON-LD value (not the entities' own ids)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        if set(obj) == {"@id"}:
            out.add(obj["@id"])
        else:
            for key, value in obj.items():
                if key != "@id":
                    out |= referenced_ids(value)
    elif isinstance(obj, list):
        for value in obj:
            out |= referenced_ids(value)
    return out


def crate_problems(doc: dict[str, Any]) -> list[str]:
    """The profile's required structure, checked: what a crate lacks, [] when it conforms."""
    problems = []
    if doc.get("@context") != CONTEXT and CONTEXT[0] not in (doc.get("@context") or []):
        problems.append("@context does not name the RO-Crate 1.1 context")
    graph = doc.get("@graph") or []
    ids = {e.get("@id") for e in graph}
    by_id = {e.get("@id"): e for e in graph}
    descriptor = by_id.get(METADATA_FILE, {})
    if (descriptor.get("about") or {}).get("@id") != "./":
        problems.append(f"{METADATA_FILE} descriptor is not about the root dataset")
    root = by_id.get("./", {})
    if root.get("@type") != "Dataset":
        problems.append("no root Dataset ./")
    conforms = root.get("conformsTo")
    if PROFILE not in {c.get("@id") for c in (conforms if isinstance(conforms, list) else [conforms or {}])}:
        problems.append(f"the root dataset does not conform to {PROFILE}")
    for key in ("name", "description", "datePublished"):
        if not root.get(key):
            problems.append(f"the root dataset lacks {key}")
    actions = [e for e in graph if e.get("@type") == "CreateAction"]
    if not actions:
        problems.append("no CreateAction")
    for action in actions:
        for key in ("instrument", "object", "result", "actionStatus"):
            if key not in action:
                problems.append(f"{action['@id']} lacks {key}")
        if action.get("actionStatus") not in (COMPLETED, FAILED):
            problems.append(f"{action['@id']} has an unknown actionStatus")
        if action.get("@id") not in {m.get("@id") for m in root.get("mentions") or []}:
            problems.append(f"{action['@id']} is not mentioned by the root dataset")
    for entity in graph:
        if entity.get("@type") == "ContainerImage" and (entity.get("additionalType") or {}).get("@id") != DOCKER_IMAGE:
            problems.append(f"{entity['@id']} is not typed as a DockerImage")
    dangling = sorted(referenced_ids(graph) - ids)
    if dangling:
        problems.append(f"references to entities not in @graph: {dangling[:5]}")
    return problems
