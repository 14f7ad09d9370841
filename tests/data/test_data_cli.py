"""`runner data` through typer's CliRunner (the sub-app) and through the real entry point."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from runner.cli.data import app
from runner.errors import CheckFailed, DatasetError, UsageError

runner = CliRunner()


def test_synth_verify_prepare_verify(tmp_path):
    out = tmp_path / "syn"
    r = runner.invoke(app, ["synth", "--like", "cifar10", "--out", str(out), "--train", "25", "--test", "5",
                            "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "synthetic cifar10: 25 train / 5 test" in r.output
    r = runner.invoke(app, ["verify", str(out / "cifar-10-python.tar.gz"), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["dataset"] == "cifar10" and rec["verified_by"] == "checksum-file" and not rec["official"]
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code == 0 and "verified by manifest" in r.output and "root sha256" in r.output
    r = runner.invoke(app, ["prepare", str(out), "--out", str(tmp_path / "prep")])
    assert r.exit_code == 0, r.output
    assert "25 train / 5 test" in r.output
    r = runner.invoke(app, ["verify", str(tmp_path / "prep"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["kind"] == "prepared"


def test_errors_propagate_as_runner_errors(tmp_path):
    r = runner.invoke(app, ["verify", str(tmp_path / "missing")])
    assert isinstance(r.exception, DatasetError)
    r = runner.invoke(app, ["prepare", str(tmp_path), "--out", str(tmp_path / "p")])
    assert isinstance(r.exception, DatasetError) and "not a recognised dataset" in str(r.exception)
    r = runner.invoke(app, ["fetch", "cifar10", "--sha256", "0" * 64])
    assert isinstance(r.exception, UsageError)


def test_verify_of_a_corrupt_dataset_is_a_failed_check(synth10):
    data = synth10.archive.read_bytes()
    synth10.archive.write_bytes(data[:-100])
    r = runner.invoke(app, ["verify", str(synth10.archive)])
    assert isinstance(r.exception, CheckFailed) and r.exception.exit_code == 1
    assert "does not match the sha256" in str(r.exception)


def test_manifest_write_then_verify_a_folder(synth10):
    (synth10.folder / "SHA256SUMS").unlink()
    r = runner.invoke(app, ["manifest", str(synth10.folder), "--write"])
    assert r.exit_code == 0, r.output
    assert f"root sha256 {synth10.manifest_root}" in r.output
    r = runner.invoke(app, ["manifest", str(synth10.folder), "--write"])
    assert isinstance(r.exception, DatasetError)  # never overwritten
    r = runner.invoke(app, ["verify", str(synth10.folder), "--json"])
    assert json.loads(r.output)["root_sha256"] == synth10.manifest_root


def test_fetch_from_a_local_mirror(synth10_master, tmp_path):
    import hashlib

    from tests.data.range_server import RangeServer

    server = RangeServer(synth10_master.archive.read_bytes())
    try:
        sha = hashlib.sha256(server.payload).hexdigest()
        r = runner.invoke(app, ["fetch", "cifar10", "--dest", str(tmp_path), "--url", server.url, "--sha256", sha])
    finally:
        server.close()
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cifar-10-python.tar.gz").read_bytes() == server.payload
    assert "checksum verified" in r.output  # after the (rich) progress bar


@pytest.mark.parametrize("args,code,needle", [
    (["verify", "/nonexistent/x"], 2, "does not exist"),
    (["synth", "--like", "cifar10", "--classes", "3", "--out", "x"], 2, "--classes"),
    (["synth", "imagenet", "--like", "imagenet", "--out", "x"], 2, "DATASET"),
    (["synth", "imagenet", "--train", "5", "--out", "x"], 2, "--train"),
])
def test_exit_codes_through_the_entry_point(cli, args, code, needle):
    res = cli("data", *args)
    assert res.code == code
    assert needle in res.err and res.err.count("\n") <= 1 or needle in res.out


def test_corrupt_dataset_exits_1_with_one_line(cli, synth10):
    synth10.checksum_file.write_text(f"{'0' * 64}  cifar-10-python.tar.gz\n")
    res = cli("data", "verify", synth10.archive)
    assert res.code == 1 and res.err.startswith("error: ") and res.err.count("\n") == 1
