"""`.state.json` of a partial bundle, read back on `--resume`: bounded, of the shape the writer
wrote, and naming only what its own folder holds.

A partial folder is input like any other (copied from a cluster's scratch, edited, or left by
another runner version): its state names the folder's final name, the run ids that become paths
(`runs/<id>/`, `.fragments/<table>/<id>.parquet`) and the files the manifest will list with
their hashes. Before this check a hand-edited state crashed the resume or the finalize in two
dozen ways (a sweep of 3,656 edited states) and could name a final folder elsewhere.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from runner.bundle.fsutil import PARTIAL_SUFFIX, safe_member
from runner.bundle.reader import load_json_bytes, read_json_document
from runner.bundle.shapes import RunId, shape_problem_of
from runner.errors import BundleError
from runner.fileio import read_bounded

STATE_FILE = ".state.json"
STATE_SCHEMA = 1
FRAGMENTS = ".fragments"
FRAGMENT_TABLES = ("epochs", "steps", "latency", "inference", "telemetry")
ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)?$")
# A 20,000-run sweep (spec.limits.MAX_RUNS) writes about 4 KB and 160 JSON items of state per run.
MAX_STATE_BYTES = 256 * 2**20
MAX_STATE_ITEMS = 16_000_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FIX = "the partial bundle's state was edited or is damaged: start the spec afresh (without --resume)"


class _PlanRow(TypedDict):
    run_id: RunId
    experiment: str
    sweep: str
    framework: str
    repeat: int
    seed: int
    model: str
    dataset: str
    variant: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    params_json: str
    target_accuracy: float | None


class _RunRecord(TypedDict):
    status: Literal["ok", "failed"]
    reason: str | None
    image_id: str | None
    engine: str | None
    files: list[str]
    summary: dict[str, Any]


class _Git(TypedDict, total=False):
    commit: str | None
    branch: str | None


class _Code(TypedDict, total=False):
    tree_sha256: str | None
    runner_version: str | None
    git: _Git | None


class PartialState(TypedDict):
    state_schema: int
    bundle_schema_version: int
    runner_version: str
    created: str
    name: str
    experiment: str
    spec_sha256: str
    spec: dict[str, Any]
    redacted: bool
    plan: list[_PlanRow]
    runs: dict[RunId, _RunRecord]
    environment: list[str]
    files: dict[str, list[int | str]]
    fragments: dict[Literal["epochs", "steps", "latency", "inference", "telemetry"], dict[RunId, str]]
    code: _Code | None


_ADAPTER = TypeAdapter(PartialState)


def read_state(partial: Path) -> dict[str, Any]:
    """The state of `partial` (a `<bundle>.partial` folder), or one BundleError line naming what is wrong."""
    path = partial / STATE_FILE
    data = read_bounded(path, MAX_STATE_BYTES, BundleError, what="partial bundle state", follow_links=False, fix=FIX)
    state = load_json_bytes(data, path, max_items=MAX_STATE_ITEMS)
    if not isinstance(state, dict) or state.get("state_schema") != STATE_SCHEMA:
        raise BundleError("was written by another version of runner", file=path,
                          fix="finish it with the runner version that started it, or start afresh")
    if (problem := shape_problem_of(_ADAPTER, state)) is not None:
        raise BundleError(problem, file=path, fix=FIX)
    if (problem := _consistency_problem(partial, state)) is not None:
        raise BundleError(problem, file=path, fix=FIX)
    return state


def _consistency_problem(partial: Path, state: dict[str, Any]) -> str | None:
    """What the shape cannot say: names, ids and paths that agree with each other and the folder."""
    if state["name"] + PARTIAL_SUFFIX != partial.name:
        return f"names the bundle {state['name'][:80]!r}, but its folder is {partial.name!r}"
    planned = {row["run_id"] for row in state["plan"]}
    if len(planned) != len(state["plan"]):
        return "plans a run id twice"
    for rel, entry in state["files"].items():
        safe_member(partial, rel, partial / STATE_FILE)
        if not (len(entry) == 2 and isinstance(entry[0], int) and entry[0] >= 0 and isinstance(entry[1], str)
                and _SHA256.match(entry[1])):
            return f"files[{rel[:80]!r}] is not [size, sha256]"
    for run_id, record in state["runs"].items():
        if run_id not in planned:
            return f"records run {run_id}, which its plan lacks"
        own = {rel for rel in state["files"] if rel.startswith(f"runs/{run_id}/") or rel == f"logs/{run_id}.log"}
        if set(record["files"]) != own or len(record["files"]) != len(own):
            return (f"runs[{run_id}].files names {len(record['files'])} file(s), "
                    f"the state records {len(own)} of that run")
        summary = record["summary"]
        for field, column in (("status", "status"), ("reason", "failure_reason"), ("image_id", "image_id"),
                              ("engine", "engine")):
            if record[field] != summary.get(column):
                return f"runs[{run_id}].{field} is {record[field]!r}, its summary says {summary.get(column)!r}"
    for table, by_run in state["fragments"].items():
        for run_id, rel in by_run.items():
            if run_id not in planned or rel != f"{FRAGMENTS}/{table}/{run_id}.parquet":
                return f"fragments.{table}[{run_id}] is {rel[:80]!r}, not {FRAGMENTS}/{table}/<a planned run>.parquet"
    for name in state["environment"]:
        if not ENV_NAME.match(name):
            return f"environment names {name[:80]!r}, not an environment document"
    documents = {rel[len("environment/"):-len(".json")] for rel in state["files"]
                 if rel.startswith("environment/") and rel.endswith(".json")} - {"code"}  # code: state["code"]
    if set(state["environment"]) != documents:
        return (f"environment lists {sorted(state['environment'])[:8]}, "
                f"the folder's documents are {sorted(documents)[:8]}")
    if state["spec"].get("name") != state["experiment"] or any(r["experiment"] != state["experiment"]
                                                                 for r in state["plan"]):
        return f"experiment {state['experiment'][:80]!r} is not the name its spec and plan give"
    return _files_problem(partial, state)


def _files_problem(partial: Path, state: dict[str, Any]) -> str | None:
    """Every recorded file is a regular file of its recorded size (its hash is checked by `bundle
    verify` on the finished bundle; re-hashing a large sweep on every resume is not worth it), and
    the code fingerprint is the one `environment/code.json` holds."""
    for rel, (size, _) in state["files"].items():
        try:
            st = (partial / rel).lstat()
        except OSError:
            return f"records {rel[:80]}, which the folder lacks"
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return f"records {rel[:80]} as a file of {size} bytes; the folder holds something else there"
    if "environment/code.json" in state["files"] and \
            read_json_document(partial / "environment" / "code.json") != state["code"]:
        return "its code fingerprint is not the one environment/code.json holds"
    return None

