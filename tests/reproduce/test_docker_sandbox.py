"""The docker engine's sandbox, probed from inside by a stand-in workload.

The probe replaces `runner.workload` in the mounted code folder and reports what it could do:
write the dataset, reach the network, run as root, write the root filesystem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.engine.base import RunRequest
from runner.engine.docker_engine import LABEL_BUNDLE, DockerEngine

pytestmark = pytest.mark.docker

PROBE = r'''
import json, os, socket, sys
out = sys.argv[sys.argv.index("--out") + 1]
data = sys.argv[sys.argv.index("--data") + 1]
report = {"uid": os.getuid(), "gid": os.getgid()}
def attempt(name, fn):
    try:
        fn(); report[name] = "allowed"
    except OSError as e:
        report[name] = f"refused: {e.__class__.__name__}"
attempt("write_dataset", lambda: open(os.path.join(data, "x"), "w").write("x"))
attempt("write_code", lambda: open("/opt/runner/x", "w").write("x"))
attempt("write_rootfs", lambda: open("/etc/x", "w").write("x"))
attempt("write_tmp", lambda: open("/tmp/x", "w").write("x"))
def connect():
    s = socket.create_connection(("1.1.1.1", 53), timeout=3); s.close()
attempt("network", connect)
report["interfaces"] = sorted(os.listdir("/sys/class/net"))
report["env"] = sorted(os.environ)
open(os.path.join(out, "probe.json"), "w").write(json.dumps(report))
'''


def _code(tmp: Path) -> Path:
    code = tmp / "code"
    (code / "runner" / "workload").mkdir(parents=True)
    (code / "runner" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__main__.py").write_text(PROBE)
    return code


def test_workload_is_sandboxed(docker_client, cpu_images, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET_TOKEN", "never-inside")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_x.npy").write_bytes(b"\x93NUMPY")
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "run.json"
    config.write_text("{}")
    for p in (tmp_path, data, out):
        os.chmod(p, 0o755)
    request = RunRequest(run_id="probe", bundle_id="test-sandbox", framework="pytorch", variant="cpu",
                         config_path=config, data_dir=data, out_dir=out, code_dir=_code(tmp_path),
                         image_id=cpu_images["pytorch"], memory="512m", cpus=1)
    engine = DockerEngine(docker_client)
    handle = engine.start(request)
    outcome = handle.finish()
    assert outcome.ok, outcome.log
    report = json.loads((out / "probe.json").read_text())
    assert report["uid"] != 0 and report["gid"] != 0
    assert report["write_dataset"].startswith("refused")
    assert report["write_code"].startswith("refused")
    assert report["write_rootfs"].startswith("refused")
    assert report["write_tmp"] == "allowed"
    assert report["network"].startswith("refused")
    assert report["interfaces"] == ["lo"]
    assert "MY_SECRET_TOKEN" not in report["env"]
    assert not (data / "x").exists()
    # the container is gone, and output files belong to the host user
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_BUNDLE}=test-sandbox"}) == []
    assert (out / "probe.json").stat().st_uid == os.getuid()
