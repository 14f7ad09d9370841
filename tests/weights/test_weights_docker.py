"""In a real container (the PyTorch CPU image): the pinned weights are bind-mounted READ-ONLY at
/weights/pretrained.npz and the run starts from them."""

from __future__ import annotations

import json
import time

import pytest

from runner.workload.models.npz import save_npz
from tests.helpers import REPO
from tests.reproduce.conftest import cpu_images, docker_client  # noqa: F401 - fixtures
from tests.weights.conftest import tiny_spec

pytestmark = pytest.mark.docker


def test_weights_mount_is_read_only_and_used(cpu_images, canonical, tmp_path):  # noqa: F811
    from runner.data import prepare, write_synthetic
    from runner.engine.base import RunRequest
    from runner.engine.docker_client import connect
    from runner.engine.docker_engine import WEIGHTS_MOUNT, DockerEngine
    from runner.reproduce.session import write_run_config
    from runner.spec.plan import plan_file

    weights = tmp_path / "w.npz"
    sha = save_npz(weights, canonical)
    (run,) = plan_file(tiny_spec(tmp_path, sha, frameworks="[pytorch]")).runs
    synth = write_synthetic("cifar10", tmp_path / "synth", train=128, test=64, seed=1)
    prepare(synth.folder, tmp_path / "prepared")
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    config = write_run_config(run, tmp_path / "run")
    request = RunRequest(run_id=run.id, bundle_id="weights-test", framework="pytorch", variant="cpu",
                         config_path=config, data_dir=tmp_path / "prepared", out_dir=out, code_dir=REPO,
                         image_id=cpu_images["pytorch"], threads=1, memory="2g", weights_path=weights)
    handle = DockerEngine(connect()).start(request)
    deadline = time.monotonic() + 300
    while handle.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    mounts = {m["Destination"]: m for m in handle.sample_target.attrs["Mounts"]}
    outcome = handle.finish()
    assert outcome.ok, outcome.log[-2000:]
    assert mounts[WEIGHTS_MOUNT]["RW"] is False and mounts[WEIGHTS_MOUNT]["Source"] == str(weights.resolve())
    start = next(json.loads(line) for line in (out / "events.jsonl").open() if '"run_start"' in line)
    assert start["weights"]["sha256"] == sha and start["weights"]["path"] == WEIGHTS_MOUNT
    assert start["weights"]["loaded"] == 19 and start["weights"]["kept_init"] == ["fc3.weight", "fc3.bias"]
