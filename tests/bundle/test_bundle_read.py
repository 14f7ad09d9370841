"""read_bundle refuses what it cannot trust, with one line each."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from runner.bundle.reader import read_bundle, verify_bundle
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION
from runner.bundle.writer import BundleWriter
from runner.errors import BundleError
from runner.fingerprint.redact import Redaction
from tests.bundle.bundle_helpers import make_plan, write_run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pristine")
    plan, text = make_plan(tmp)
    for run in plan.runs:
        write_run(tmp / run.id, run)
    writer = BundleWriter.create(tmp / "results", plan, text, Redaction.for_this_machine())
    for run in plan.runs:
        writer.add_run(run, status="ok", out_dir=tmp / run.id)
    return writer.finalize()


@pytest.fixture
def bundle(pristine, tmp_path):
    """A fresh copy of one finished bundle, for each test to damage."""
    return Path(shutil.copytree(pristine, tmp_path / pristine.name, symlinks=True))


def edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def refusal(path, match: str) -> BundleError:
    with pytest.raises(BundleError, match=match) as info:
        read_bundle(path)
    line = info.value.describe()
    assert "\n" not in line and "Traceback" not in line
    return info.value


def test_reads_back(bundle):
    b = read_bundle(bundle)
    assert b.runs.num_rows == 2 and b.schema_version == BUNDLE_SCHEMA_VERSION
    assert set(read_bundle(bundle, tables=["runs"]).tables) == {"runs"}
    assert b.file("spec.yaml").is_file()


def test_a_newer_schema_is_refused(bundle):
    edit_manifest(bundle, lambda m: m.update(bundle_schema_version=99))
    err = refusal(bundle, "newer than this runner reads")
    assert err.fix == "upgrade runner to read it"


def test_a_truncated_table_is_refused(bundle):
    steps = bundle / "tables/steps.parquet"
    data = steps.read_bytes()
    steps.write_bytes(data[: len(data) // 2])
    refusal(bundle, "truncated or modified")
    # the same, with the manifest agreeing on the size: Parquet itself refuses it
    edit_manifest(bundle, lambda m: [f.update(size=len(data) // 2) for f in m["files"]
                                     if f["path"] == "tables/steps.parquet"])
    refusal(bundle, "cannot be read as Parquet")
    assert any("tables/steps.parquet" in p for p in verify_bundle(bundle))


def test_path_traversal_is_refused(bundle):
    edit_manifest(bundle, lambda m: m["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0"}))
    refusal(bundle, "unsafe path")


def test_absolute_table_path_is_refused(bundle):
    edit_manifest(bundle, lambda m: m["tables"]["runs"].update(path="/etc/passwd"))
    refusal(bundle, "unsafe path")


def test_a_link_leading_outside_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.symlink(outside, bundle / "environment/link.json")
    edit_manifest(bundle, lambda m: m["files"].append({"path": "environment/link.json", "size": 1, "sha256": "0"}))
    refusal(bundle, "leads outside the bundle")


def test_partial_and_missing_manifest(tmp_path):
    partial = tmp_path / "20260101T000000Z-abcd.partial"
    partial.mkdir()
    err = refusal(partial, "not a finished bundle")
    assert "--resume" in err.fix
    refusal(tmp_path / "nope", "is not a bundle folder")


def test_garbled_manifest(bundle):
    (bundle / "manifest.json").write_text("{not json")
    refusal(bundle, "not valid JSON")


def test_verify_finds_changed_and_unlisted_files(bundle):
    assert verify_bundle(bundle) == []
    log = next(bundle.glob("logs/*.log"))
    log.write_text(log.read_text() + "x")
    (bundle / "extra.txt").write_text("?")
    problems = verify_bundle(bundle)
    assert any(p.startswith(f"logs/{log.name}: changed:") for p in problems)
    assert "extra.txt: extra: not listed in the manifest" in problems
