"""Telemetry sampler: a real process tree through psutil, GPUs through a fake NVML, error counting."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from runner.telemetry.sampler import TelemetrySampler
from runner.telemetry.schema import SAMPLE_FIELD_NAMES
from runner.telemetry.summary import gpu_energy_j, throttle_counts, throttle_flags
from tests.fingerprint.fake_pynvml import NVML_ERROR_GPU_IS_LOST, FakeGpu, make_fake_nvml

BUSY_WITH_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
block = bytearray(64 * 2**20)  # resident memory the sampler must see
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.time() + 30
while time.time() < end:
    pass
"""


def test_process_tree_of_a_real_subprocess():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_WITH_CHILD])
    try:
        time.sleep(0.5)  # let it allocate and start its child
        sampler = TelemetrySampler(interval_s=0.1, nvml=None, pid=proc.pid, host=False).start()
        assert sampler.sources == ["process"]
        time.sleep(1.2)
        rows = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    assert len(rows) >= 5  # ~12 ticks at 10 Hz plus the final one; fewer if the machine is busy
    assert all(set(r) == set(SAMPLE_FIELD_NAMES) and r["source"] == "process" for r in rows)
    assert rows[0]["cpu_pct"] is None  # psutil needs two readings
    busy = [r["cpu_pct"] for r in rows[2:]]
    assert max(busy) > 10.0  # one core spinning (idle reads ~0; the machine may be busy)
    assert min(r["mem_bytes"] for r in rows) > 64 * 2**20
    assert max(r["processes"] for r in rows) >= 2  # the child is counted
    elapsed = [r["elapsed_s"] for r in rows]
    assert elapsed == sorted(elapsed)
    assert sampler.errors == {} and not sampler._thread.is_alive()
    assert sampler.cost_per_sample_s is not None and sampler.cost_per_sample_s < 0.05


def test_process_that_ends_is_not_an_error():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    sampler = TelemetrySampler(interval_s=0.05, nvml=None, pid=proc.pid).start()
    proc.wait()
    time.sleep(0.3)
    sampler.stop()
    assert sampler.errors == {}


def test_gpus_through_nvml_with_throttling_and_energy():
    gpus = [FakeGpu(energy_mj=[1_000_000, 1_400_000, 2_000_000], power_mw=[300_000, 350_000, 400_000],
                    throttle=[0, 0x20, 0x04 | 0x01]),
            FakeGpu(uuid="GPU-00000000-0000-0000-0000-000000000001", energy_mj=[5_000_000, 5_100_000, 5_200_000])]
    nvml = make_fake_nvml(gpus)
    sampler = TelemetrySampler(interval_s=10.0, gpus=[0, 1], nvml=nvml, host=False)
    sampler.sample_once()
    sampler.sample_once()
    sampler.sample_once()
    rows = sampler.stop()
    assert nvml.initialized() == 0
    assert [r["device"] for r in rows] == [0, 1, 0, 1, 0, 1]
    first = rows[0]
    assert first["gpu_util_pct"] == 87.0 and first["gpu_mem_used_bytes"] == 2 * 2**30
    assert first["power_w"] == 300.0 and first["energy_j"] == 1000.0 and first["temperature_c"] == 45.0
    assert first["sm_clock_mhz"] == 1980.0 and first["throttle_reasons"] == 0
    assert throttle_counts(rows) == {"power": 1, "thermal": 1, "hw_slowdown": 0}
    assert throttle_flags(rows) == ["power", "thermal"]
    assert gpu_energy_j(rows) == pytest.approx((1200.0, "counter"))  # 1000 J + 200 J over both GPUs


def test_unsupported_and_failing_nvml_fields_never_stop_sampling():
    nvml = make_fake_nvml(unsupported={"nvmlDeviceGetTotalEnergyConsumption"},
                          failing={"nvmlDeviceGetPowerUsage": NVML_ERROR_GPU_IS_LOST})
    sampler = TelemetrySampler(interval_s=10.0, gpus=[0], nvml=nvml, host=False)
    for _ in range(3):
        sampler.sample_once()
    rows = sampler.stop()
    assert len(rows) == 3 and all(r["energy_j"] is None and r["power_w"] is None for r in rows)
    assert nvml.calls.count("nvmlDeviceGetTotalEnergyConsumption") == 1  # unsupported: asked once
    assert sampler.errors == {"gpu": 3}  # the failing power reading, each tick
    assert gpu_energy_j(rows) == (None, None)


def test_no_driver_means_no_gpu_source():
    sampler = TelemetrySampler(gpus=[0], nvml=make_fake_nvml(driver=False), host=False)
    assert sampler.sources == [] and "Driver Not Loaded" in sampler.unavailable["gpu"]
    sampler.start()
    sampler.stop()
    assert sampler.samples == [] and sampler.errors == {}


def test_energy_falls_back_to_integrating_power():
    rows = [{"source": "gpu", "device": 0, "elapsed_s": t, "power_w": p, "energy_j": None}
            for t, p in ((0.0, 100.0), (1.0, 200.0), (3.0, 200.0))]
    assert gpu_energy_j(rows) == (150.0 + 400.0, "power_integral")


def test_rate_and_clean_stop():
    sampler = TelemetrySampler(interval_s=0.05, nvml=None, pid=None).start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - t0 < 2.0  # stop does not hang (generous: CI boxes are busy)
    assert 2 <= sampler.ticks <= 13  # ~10 ticks in 0.5 s at 20 Hz plus the final one (a busy box skips some)
    ticks, rows = sampler.ticks, len(sampler.samples)
    sampler.stop()  # a second stop changes nothing
    assert (sampler.ticks, len(sampler.samples)) == (ticks, rows)
    with pytest.raises(ValueError):
        TelemetrySampler(interval_s=0)
