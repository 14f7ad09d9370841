"""GPU execution options that also run on a CPU, in real runs: `channels_last` changes the memory
layout, not the numbers, and is recorded; `cuda_graphs` is refused by the run.json reader off cuda."""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import SpecError
from runner.workload.events import read_events
from tests.workload.test_harness_run import FRAMEWORK_MODULE, config, prepared, run_workload  # noqa: F401


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_channels_last_changes_layout_not_losses(prepared, tmp_path, framework):  # noqa: F811
    pytest.importorskip(FRAMEWORK_MODULE[framework])
    runs = {}
    for layout in (False, True):
        cfg = config(framework, train={"channels_last": layout}, measurement={"latency_batch_sizes": []})
        code, err, out = run_workload(cfg, prepared, tmp_path / str(layout))
        assert code == 0, err
        runs[layout] = read_events(out / "events.jsonl")
    losses = {k: np.array([e["loss"] for e in v if e["type"] == "step"]) for k, v in runs.items()}
    # other kernels, same maths: the first step agrees to float32 rounding, eight SGD steps later the
    # summation-order differences have grown to about 1e-5 (measured 1.2e-5 relative)
    np.testing.assert_allclose(losses[True][0], losses[False][0], rtol=1e-6)
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    settings = next(e for e in runs[True] if e["type"] == "run_start")["settings"]
    assert settings["channels_last"] is True
    assert settings["layout"] == ("NCHW, channels_last memory" if framework == "pytorch" else "NHWC")


def test_the_run_json_reader_refuses_cuda_graphs_on_cpu(tmp_path):
    from runner.workload.harness.config import parse_config

    doc = config("pytorch", train={"cuda_graphs": True})
    with pytest.raises(SpecError) as info:
        parse_config(doc, tmp_path / "run.json")
    assert info.value.field == "train.cuda_graphs" and "CPU" in info.value.message
    doc["variant"] = "cuda"
    assert parse_config(doc, tmp_path / "run.json").train.cuda_graphs is True
