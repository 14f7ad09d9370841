"""No secret, host name or user name reaches any file of a bundle (unless --no-redact, and secrets never)."""

from __future__ import annotations

import io
import json
import os
import socket

import pyarrow.parquet as pq
import pytest

from runner.bundle.writer import BundleWriter
from runner.fingerprint.host import host_fingerprint
from runner.fingerprint.redact import Redaction, recorded_environment
from tests.bundle.bundle_helpers import all_files, make_plan, write_run

SECRET = "s3cr3t-value"
HOST = "alice-workstation-7"
USER = "alice-private"
HOME = f"/home/{USER}"


@pytest.fixture
def identity(monkeypatch):
    """This machine, as far as redaction can tell, is HOST, used by USER with HOME, holding a secret."""
    monkeypatch.setattr(socket, "gethostname", lambda: HOST)
    monkeypatch.setattr("platform.node", lambda: HOST)
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    monkeypatch.setenv("USER", USER)
    monkeypatch.setenv("LOGNAME", USER)
    monkeypatch.setenv("HOME", HOME)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


def leaky_bundle(tmp_path, redaction: Redaction):
    """A bundle whose inputs mention the secret, host, user and home everywhere they could."""
    spec_text_extra = f"# written by {USER} on {HOST}\n"
    plan, text = make_plan(tmp_path)
    ok, failed = plan.runs
    write_run(tmp_path / "ok", ok)
    write_run(tmp_path / "failed", failed, end={
        "status": "failed", "reason": "error", "wall_s": 1.0,
        "error": f"FileNotFoundError: {HOME}/data/x.bin (token {SECRET})"})
    (tmp_path / "ok" / "result.json").write_text(json.dumps({"status": "ok", "host": HOST, "cwd": HOME}))
    with open(tmp_path / "ok" / "events.jsonl", "a") as fh:  # a step event carrying text it should not
        fh.write(json.dumps({"type": "step", "t": 1.0, "run_id": ok.id, "epoch": 0, "step": 99, "global_step": 99,
                             "loss": 1.0, "lr": 0.1, "batch_size": 32, "data_time_s": 0.0, "compute_time_s": 0.0,
                             "warmup": False, "note": f"{SECRET} from {USER}@{HOST}"}) + "\n")
    writer = BundleWriter.create(tmp_path / "results", plan, spec_text_extra + text, redaction)
    writer.add_environment("host", host_fingerprint(client=None))
    writer.add_environment("images/pytorch-cpu", {
        "python": "3.11.2", "executable": f"{HOME}/.venv/bin/python",
        "env": dict(os.environ), "packages": ["numpy==2.0.0", f"private-pkg @ file://{HOME}/wheels/p.whl",
                                             f"other @ git+https://{USER}:{SECRET}@example.org/r.git"]})
    for run, out in ((ok, "ok"), (failed, "failed")):
        writer.add_run(run, status="ok", out_dir=tmp_path / out,
                       log_text=f"running as {USER}@{HOST} in {HOME}\nMY_API_TOKEN={SECRET}\n",
                       telemetry=[], telemetry_status={"errors": {"container": 1},
                                                       "last_error": {"container": f"{HOST}: refused"}},
                       environment={"engine": "local", "variables": dict(os.environ),
                                    "recorded": recorded_environment(redaction)})
    return writer.finalize()


def text_of_every_file(path):
    """Each file's bytes, plus the decoded contents of every Parquet table (compression hides bytes)."""
    for f in all_files(path):
        data = f.read_bytes()
        yield f, data
        if f.suffix == ".parquet":
            yield f, json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).encode()


def test_nothing_identifying_in_any_file(tmp_path, identity):
    redaction = Redaction.for_this_machine()
    assert HOST in redaction.hostnames and USER in redaction.usernames and SECRET in redaction.secrets
    path = leaky_bundle(tmp_path, redaction)
    seen = 0
    for f, data in text_of_every_file(path):
        seen += 1
        for needle in (SECRET, HOST, USER):
            assert needle.encode() not in data, f"{needle} in {f.relative_to(path)}"
    assert seen > 20
    # what was scrubbed is replaced by stable labels, not silently dropped
    log = next(path.glob("logs/*.log")).read_text()
    assert f"running as {redaction.label('user', USER)}@{redaction.label('host', HOST)}" in log
    assert "MY_API_TOKEN=<redacted>" in log
    variables = json.loads((path / "environment/variables.json").read_text())
    assert variables["OMP_NUM_THREADS"] == "2"
    assert "MY_API_TOKEN" not in variables and "PATH" not in variables
    freeze = (path / "environment/images/pytorch-cpu.pip-freeze.txt").read_text()
    assert "numpy==2.0.0" in freeze and "<redacted>@example.org" in freeze


def test_no_redact_keeps_identities_but_never_secrets(tmp_path, identity):
    path = leaky_bundle(tmp_path, Redaction.for_this_machine(enabled=False))
    everything = b"".join(data for _, data in text_of_every_file(path))
    assert SECRET.encode() not in everything
    assert HOST.encode() in everything and USER.encode() in everything
    variables = json.loads((path / "environment/variables.json").read_text())
    assert variables["USER"] == USER and "MY_API_TOKEN" not in variables
