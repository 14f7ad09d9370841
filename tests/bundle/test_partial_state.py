"""`--resume` of a partial bundle whose `.state.json` was edited or damaged: one line naming the
state file, before anything is run or written; never a crash at finalize, never a bundle that
fails `bundle verify` (runner.bundle.partial_state).

Found by an exploratory sweep (3,656 states: each field of a real state replaced in turn by null,
a number, text, a list, an object, `a/b` or a path out of the folder, then resumed, completed and
verified): two dozen crashes in resume, add_run and finalize, and bundles that finalized but did
not verify (sizes, the code fingerprint, the environment list, a run's files). The corpus below is
its shallow part; the rest are the cases that crashed and their neighbours.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.bundle import partial_state
from runner.bundle.reader import verify_bundle
from runner.bundle.writer import BundleWriter
from runner.errors import BundleError
from runner.fingerprint.redact import Redaction
from tests.audit.test_bundle_shapes import _set
from tests.bundle.bundle_helpers import make_plan, write_run
from tests.helpers import files_under

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, Any, Path]:
    """A partial bundle holding the first of two runs, its plan, and the second run's out dir."""
    tmp = tmp_path_factory.mktemp("partial")
    plan, text = make_plan(tmp)
    a, b = plan.runs
    write_run(tmp / "a", a)
    write_run(tmp / "b", b)
    writer = BundleWriter.create(tmp / "results", plan, text, Redaction.for_this_machine(), now=NOW, fsync=False)
    writer.add_environment("host", {"cpu": {"model": "x", "flags": ["avx2"]}, "os": {"name": "linux"}})
    writer.add_run(a, status="ok", out_dir=tmp / "a", log_text="epoch 0\n", environment={"engine": "docker"})
    writer.close()
    return writer.partial, plan, tmp / "b"


def copy_with_state(partial: Path, work: Path, state: Any) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    target = work / partial.name
    shutil.copytree(partial, target)
    (target / partial_state.STATE_FILE).write_text(json.dumps(state))
    return target


def resume_and_finish(partial: Path, plan, out_b: Path) -> list[str]:
    """Resume, add what is missing, finalize, verify: the problems of the finished bundle."""
    writer = BundleWriter.resume(partial, Redaction.for_this_machine(), plan, fsync=False)
    for run in plan.runs:
        if run.id not in writer.completed_run_ids:
            out = out_b if run is plan.runs[1] else out_b.parent / "a"
            writer.add_run(run, status="ok", out_dir=out, environment={"engine": "docker"})
    return verify_bundle(writer.finalize())


def _paths(doc: Any, pre: tuple = (), depth: int = 0) -> Iterator[tuple]:
    """Every field to depth 4; of a list, its first item; of the file and summary maps, the first two."""
    if depth > 3:
        return
    if isinstance(doc, dict):
        items = list(doc.items())
        if pre and pre[-1] in ("files", "summary"):
            items = items[:2]
    elif isinstance(doc, list):
        items = list(enumerate(doc))[:1]
    else:
        items = []
    for key, value in items:
        yield (*pre, key)
        yield from _paths(value, (*pre, key), depth + 1)


def test_the_untouched_partial_resumes_into_a_bundle_that_verifies(interrupted, tmp_path):
    partial, plan, out_b = interrupted
    state = json.loads((partial / partial_state.STATE_FILE).read_text())
    assert resume_and_finish(copy_with_state(partial, tmp_path / "w", state), plan, out_b) == []


def test_every_edited_field_is_refused_in_one_line_or_finishes_a_bundle_that_verifies(interrupted, tmp_path):
    partial, plan, out_b = interrupted
    state = json.loads((partial / partial_state.STATE_FILE).read_text())
    failures, refused, cases = [], 0, 0
    for path in _paths(state):
        for value in (None, 7, "x", [], "a/b", "../../escape"):
            cases += 1
            work = copy_with_state(partial, tmp_path / "w", _set(state, path, value))
            try:
                problems = resume_and_finish(work, plan, out_b)
            except BundleError as e:
                refused += 1
                line = e.describe()
                if "\n" in line or ".state.json" not in line and ".partial" not in line:
                    failures.append(f"{path}={value!r}: {line[:200]}")
                continue
            except Exception as e:  # noqa: BLE001 - the corpus reports every crash, not the first
                failures.append(f"{path}={value!r}: crash {type(e).__name__}: {str(e)[:160]}")
                continue
            if problems:
                failures.append(f"{path}={value!r}: finished a bundle that does not verify: {problems[0][:160]}")
    assert not list((tmp_path).glob("**/escape*")) and not (tmp_path.parent / "escape").exists()
    assert cases > 300 and refused > 250, (cases, refused)
    assert not failures, "\n".join(failures[:30])


@pytest.mark.parametrize(("edit", "says"), [
    (lambda s: s | {"name": "../../elsewhere"}, "names the bundle '../../elsewhere'"),
    (lambda s: s | {"runs": {"a/b": next(iter(s["runs"].values()))}}, "runs.a/b"),
    (lambda s: s | {"fragments": {"epochs": {s["plan"][0]["run_id"]: "../../../etc/passwd"}}}, "fragments.epochs"),
    (lambda s: s | {"files": {**s["files"], "../outside": [1, "a" * 64]}}, "unsafe path '../outside'"),
    (lambda s: s | {"files": {**s["files"], "spec.yaml": [1, "a" * 64]}}, "records spec.yaml as a file of 1 bytes"),
    (lambda s: s | {"environment": ["host"]}, "environment lists ['host']"),
    (lambda s: s | {"experiment": "other"}, "experiment 'other'"),
    (lambda s: s | {"code": None}, "code fingerprint"),
    (lambda s: s | {"state_schema": 99}, "another version of runner"),
    (lambda s: [s], "another version of runner"),
])
def test_named_refusals(interrupted, tmp_path, edit, says):
    partial, plan, _ = interrupted
    state = json.loads((partial / partial_state.STATE_FILE).read_text())
    work = copy_with_state(partial, tmp_path / "w", edit(state))
    before = files_under(work)
    with pytest.raises(BundleError) as err:
        BundleWriter.resume(work, Redaction.for_this_machine(), plan, fsync=False)
    assert says in err.value.describe() and "\n" not in err.value.describe()
    assert files_under(work) == before  # nothing written, nothing removed


def test_another_plan_or_redaction_is_refused(interrupted, tmp_path):
    partial, plan, _ = interrupted
    state = json.loads((partial / partial_state.STATE_FILE).read_text())
    edited = copy.deepcopy(state)
    edited["plan"][1]["lr"] = 0.5
    work = copy_with_state(partial, tmp_path / "w", edited)
    with pytest.raises(BundleError, match="planned differently"):
        BundleWriter.resume(work, Redaction.for_this_machine(), plan, fsync=False)
    work = copy_with_state(partial, tmp_path / "w", state)
    with pytest.raises(BundleError, match="redaction on.*without --no-redact"):
        BundleWriter.resume(work, Redaction.for_this_machine(enabled=False), plan, fsync=False)


@pytest.mark.parametrize("kind", ["fifo", "link", "huge", "deep", "nan", "items", "not-utf8"])
def test_hostile_state_files(interrupted, tmp_path, monkeypatch, kind):
    partial, plan, _ = interrupted
    state_text = (partial / partial_state.STATE_FILE).read_text()
    work = copy_with_state(partial, tmp_path / "w", json.loads(state_text))
    path = work / partial_state.STATE_FILE
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)  # read_text() would wait for a writer forever
    elif kind == "link":
        (tmp_path / "elsewhere.json").write_text(state_text)
        path.symlink_to(tmp_path / "elsewhere.json")
    elif kind == "huge":
        monkeypatch.setattr(partial_state, "MAX_STATE_BYTES", len(state_text) - 1)
        path.write_text(state_text)
    elif kind == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "nan":
        path.write_text(state_text.replace('"state_schema": 1', '"state_schema": NaN'))
    elif kind == "items":
        monkeypatch.setattr(partial_state, "MAX_STATE_ITEMS", 100)
        path.write_text(state_text)
    else:
        path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(BundleError) as err:
        BundleWriter.resume(work, Redaction.for_this_machine(), plan, fsync=False)
    assert ".state.json" in err.value.describe() or ".partial" in err.value.describe()


def test_an_edited_state_is_refused_before_the_dataset_or_any_run(interrupted, tmp_path, cli, monkeypatch):
    partial, plan, _ = interrupted
    state = json.loads((partial / partial_state.STATE_FILE).read_text())
    work = copy_with_state(partial, tmp_path / "w", state | {"name": "../../elsewhere"})
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    out = cli("reproduce", plan.spec_path, "--engine", "local", "--resume", work, "--cache", tmp_path / "cache",
              "--results", tmp_path / "results", "--data-root", tmp_path / "data")
    assert out.code == 2 and len(out.err.strip().splitlines()) == 1, out.err
    assert ".state.json" in out.err and "names the bundle" in out.err
    assert files_under(tmp_path) == before  # no dataset prepared, no bundle, nothing in the partial
