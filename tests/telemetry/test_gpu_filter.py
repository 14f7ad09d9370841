"""NVML telemetry reads only the GPUs a run was given (a fake NVML with 4 GPUs, the run has 1)."""

from __future__ import annotations

import pytest

from runner.telemetry.sampler import TelemetrySampler
from runner.telemetry.summary import gpu_energy_j, throttle_flags
from tests.fingerprint.fake_pynvml import FakeGpu, make_fake_nvml

UUIDS = [f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(4)]


def four_gpus() -> list[FakeGpu]:
    """GPU 2 is the run's; the others belong to other jobs (busy, hot, throttled, drawing energy)."""
    other = dict(energy_mj=[1_000_000, 9_000_000], throttle=[0x20, 0x20], util=(100, 90))
    return [FakeGpu(uuid=UUIDS[0], **other), FakeGpu(uuid=UUIDS[1], **other),
            FakeGpu(uuid=UUIDS[2], energy_mj=[1_000_000, 1_050_000], throttle=[0, 0], util=(55, 20)),
            FakeGpu(uuid=UUIDS[3], **other)]


def sample_twice(**kw) -> list[dict]:
    sampler = TelemetrySampler(interval_s=10.0, host=False, **kw)
    sampler.sample_once()
    sampler.sample_once()
    return sampler.stop()


@pytest.mark.parametrize("device", [2, UUIDS[2]], ids=["index", "uuid"])
def test_only_the_runs_gpu_is_sampled(device):
    rows = sample_twice(gpus=[device], nvml=make_fake_nvml(four_gpus()))
    assert [r["device"] for r in rows] == [2, 2]  # the NVML index, also when named by UUID
    assert {r["gpu_util_pct"] for r in rows} == {55.0}
    assert gpu_energy_j(rows) == pytest.approx((50.0, "counter"))  # not 8050 J (+ 3 x 8000 J of other jobs)
    assert throttle_flags(rows) == []  # the other GPUs' thermal throttling is not the run's


def test_a_run_without_gpus_reads_no_gpu():
    nvml = make_fake_nvml(four_gpus())
    rows = sample_twice(gpus=(), nvml=nvml)
    assert rows == [] and nvml.calls == []


def test_a_gpu_the_host_lacks_is_unavailable_not_a_crash():
    sampler = TelemetrySampler(gpus=[5], nvml=make_fake_nvml(four_gpus()), host=False)
    assert sampler.sources == [] and "[5]" in sampler.unavailable["gpu"]
