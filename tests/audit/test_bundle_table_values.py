"""Table values an edited bundle may hold (nulls, text that is not JSON, NaN, infinities) through
every reader: a named refusal or a rendering, never an internal error.

Found by an exploratory sweep (639 tampered bundles: each column of each table, its first value
replaced by a null or an odd value of its type, re-hashed into the manifest): `compare` and
`report` crashed on a null run_id in the epochs or latency table and on a grid point
(`params_json`) that is JSON but not an object. The sweep over every runs column with a null
stays here; the other cases are the ones that crashed, and their neighbours.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import make_bundle, rehash
from tests.audit.test_verify import SMALL


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    ensure_registered()
    tmp = tmp_path_factory.mktemp("values")
    return make_bundle(tmp / "a", spec=SMALL), make_bundle(tmp / "b", spec=SMALL)


def with_value(base: Path, work: Path, table: str, column: str, value: Any) -> Path:
    """A copy of `base` whose `table`'s first `column` value is `value`, re-hashed into the manifest."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    rel = f"tables/{table}.parquet"
    t = pq.read_table(work / rel)
    i = t.schema.get_field_index(column)
    values = t.column(i).to_pylist()
    values[0] = value
    t = t.set_column(i, t.schema.field(i), pa.array(values, type=t.schema.field(i).type))
    pq.write_table(t.replace_schema_metadata(pq.read_schema(base / rel).metadata), work / rel)
    rehash(work, rel)
    return work


def no_crash(out, what: str) -> list[str]:
    err = out.err.strip()
    if out.code not in (0, 1, 2) or "internal error" in err or "Traceback" in err:
        return [f"{what}: exit {out.code}: {err[-200:]}"]
    if out.code == 2 and len(err.splitlines()) != 1:
        return [f"{what}: exit 2 in {len(err.splitlines())} lines"]
    return []


@pytest.mark.parametrize("table", ["epochs", "latency", "steps", "runs"])
def test_a_row_naming_no_run_is_refused_by_readers_and_named_by_verify(bundles, tmp_path, cli, monkeypatch, table):
    a, b = bundles
    monkeypatch.chdir(tmp_path)
    work = with_value(b, tmp_path / "m", table, "run_id", None)
    assert no_crash(cli("bundle", "diff", a, work), "diff") == []  # reads the runs table only
    out = cli("compare", work)
    if table != "steps":  # compare reads runs, epochs and latency
        assert out.code == 2 and len(out.err.strip().splitlines()) == 1, out.err
        assert f"{table}.parquet" in out.err and "1 row(s) with no run_id" in out.err
    else:
        assert out.code == 0, out.err
    out = cli("bundle", "verify", work)
    assert out.code == 1 and "row(s) with no run_id" in " ".join(out.out.split()) + out.err


@pytest.mark.parametrize(("column", "value"), [
    ("params_json", "[1, 2]"), ("params_json", "null"), ("params_json", "NaN"), ("params_json", "{not json"),
    ("params_json", "x" * 10_000), ("status", "exploded"), ("framework", "../../etc"), ("lr", math.nan),
    ("mean_images_per_s", math.inf), ("final_test_accuracy", -math.inf), ("repeat", -1), ("seed", 2**62),
])
def test_odd_runs_values_render_or_are_refused(bundles, tmp_path, cli, monkeypatch, column, value):
    a, b = bundles
    monkeypatch.chdir(tmp_path)
    work = with_value(b, tmp_path / "m", "runs", column, value)
    failures = []
    for args in (("compare", work), ("report", work, "--out", tmp_path / "report"), ("bundle", "diff", a, work),
                 ("bundle", "diff", work, a), ("bundle", "verify", work),
                 ("bundle", "publish", work, "--out", tmp_path / "pub")):
        failures += no_crash(cli(*args), " ".join(map(str, args[:2])))
    assert not failures, failures


def test_a_null_in_any_runs_column_is_no_crash(bundles, tmp_path, cli, monkeypatch):
    a, b = bundles
    monkeypatch.chdir(tmp_path)
    failures = []
    for column in pq.read_schema(b / "tables" / "runs.parquet").names:
        work = with_value(b, tmp_path / "m", "runs", column, None)
        for args in (("compare", work), ("bundle", "diff", a, work)):
            failures += no_crash(cli(*args), f"{column}=null: {' '.join(map(str, args[:2]))}")
    assert not failures, failures
