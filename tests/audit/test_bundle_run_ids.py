"""A run id names paths (`runs/<id>/`, `logs/<id>.log`), containers and jobs: a bundle whose ids
are not of the planner's form is refused by every reader and named by `bundle verify`.

Found by an exploratory sweep: a bundle forged consistently (every table, the manifest's runs,
bundle.json, the run's folder and log renamed, every hash redone) with the id `a/b`, `x\\ny`,
`$(id)` or `-rf` verified clean, and a rerun would have taken the id for its own paths.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.bundle.reader import key_problem
from runner.bundle.shapes import shape_problem
from runner.spec.plan import plan_file
from runner.spec.run_id import is_run_id
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import make_bundle, rehash
from tests.audit.test_bundle_table_values import no_crash
from tests.audit.test_verify import SMALL

HOSTILE_IDS = ["a/b", "x\ny", "$(id)", "-rf", "py-0123456789AB", "py-0123456789ab\n", "é" * 3, "p" * 300, ""]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    ensure_registered()
    return make_bundle(tmp_path_factory.mktemp("ids") / "b", spec=SMALL)


def _set_ids(table_path: Path, old: str, new: str) -> None:
    t = pq.read_table(table_path)
    i = t.schema.get_field_index("run_id")
    ids = [new if v == old else v for v in t.column(i).to_pylist()]
    t = t.set_column(i, t.schema.field(i), pa.array(ids, pa.string()))
    pq.write_table(t.replace_schema_metadata(pq.read_schema(table_path).metadata), table_path)


def forged(good: Path, work: Path, new: str) -> Path:
    """A copy of `good` whose first run is renamed `new` everywhere, every hash redone: only
    the id's form is wrong."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(good, work)
    old = pq.read_table(work / "tables" / "runs.parquet").column("run_id")[0].as_py()
    for table in (work / "tables").glob("*.parquet"):
        if "run_id" in pq.read_schema(table).names:
            _set_ids(table, old, new)
    safe = new.replace("/", "_").replace("\n", "_") or "_"  # the folder needs a name the filesystem takes
    shutil.move(work / "runs" / old, work / "runs" / safe)
    shutil.move(work / "logs" / f"{old}.log", work / "logs" / f"{safe}.log")
    for doc in (work / "manifest.json", work / "bundle.json"):
        data = json.loads(doc.read_text())
        for run in data["runs"]:
            if run["id"] == old:
                run["id"] = new
                if "files" in run:
                    run["files"] = [f.replace(old, safe) for f in run["files"]]
        if doc.name == "manifest.json":
            for entry in data["files"]:
                entry["path"] = entry["path"].replace(old, safe)
        doc.write_text(json.dumps(data))
    for entry in json.loads((work / "manifest.json").read_text())["files"]:
        rehash(work, entry["path"])
    return work


def test_planned_ids_have_the_form_readers_check(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL)
    ids = [run.id for run in plan_file(spec).runs]
    assert ids and all(is_run_id(i) for i in ids)


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_id_checks_refuse_every_form_but_the_planners(bad):
    assert not is_run_id(bad)
    assert key_problem(pa.array(["py-0123456789ab", bad])) is not None
    assert shape_problem("manifest.json", {"runs": [{"id": bad}]}) is not None
    assert key_problem(pa.array(["py-0123456789ab", "te-ffffffffffff"])) is None


def test_the_forging_alone_verifies(good, tmp_path, cli):
    """The control: renamed to another well-formed id, the forged copy verifies (so the refusals
    below are the id's form, not a slip of the forging)."""
    out = cli("bundle", "verify", forged(good, tmp_path / "f", "py-0123456789ab"))
    assert out.code == 0, out.out + out.err


@pytest.mark.parametrize("bad", ["a/b", "x\ny", "$(id)", "-rf"])
def test_a_forged_id_is_named_by_verify_and_refused_by_readers(good, tmp_path, cli, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    work = forged(good, tmp_path / "f", bad)
    out = cli("bundle", "verify", work)
    text = " ".join((out.out + out.err).split())
    assert out.code == 1 and "expected a run id" in text, text
    for args in (("compare", work), ("report", work, "--out", tmp_path / "r"), ("bundle", "diff", good, work),
                 ("bundle", "publish", work, "--out", tmp_path / "p"), ("reproduce", work)):
        res = cli(*args)
        assert no_crash(res, args[0]) == [] and res.code in (1, 2), (args, res.err)  # publish: 1, as verify
        assert len(res.err.strip().splitlines()) == 1, (args, res.err)
        assert "run id" in res.err or "does not verify" in res.err, (args, res.err)
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()


def test_an_id_forged_in_one_table_only(good, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "t"
    shutil.copytree(good, work)
    old = pq.read_table(work / "tables" / "runs.parquet").column("run_id")[0].as_py()
    _set_ids(work / "tables" / "epochs.parquet", old, "../x")
    rehash(work, "tables/epochs.parquet")
    out = cli("compare", work)
    assert out.code == 2 and "epochs.parquet" in out.err and "'../x'" in out.err, out.err
    out = cli("bundle", "verify", work)
    assert out.code == 1 and "is not a run id" in " ".join(out.out.split()), out.out
