"""NVML fingerprint: a fake pynvml (this machine has no GPU) and the real one (no driver here)."""

from __future__ import annotations

import sys

import pytest

from runner.fingerprint.gpu import cuda_version_text, gpu_fingerprint, gpu_summary
from tests.fingerprint.fake_pynvml import FakeGpu, make_fake_nvml


@pytest.fixture
def fake(monkeypatch):
    """Install a fake pynvml as the module `import pynvml` finds."""
    def install(**kw):
        module = make_fake_nvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module
    return install


def test_two_gpus_every_field(fake):
    nvml = fake(gpus=[FakeGpu(), FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-00000000-0000-0000-0000-000000000001",
                                        serial="222", mig=(1, 1))])
    fp = gpu_fingerprint()
    assert fp["available"] is True
    assert fp["driver_version"] == "550.54.15"
    assert fp["cuda_driver_version"] == "12.4"
    assert fp["count"] == 2 and len(fp["devices"]) == 2
    d0, d1 = fp["devices"]
    assert d0["name"] == "NVIDIA H100 80GB HBM3"
    assert d0["memory_total_bytes"] == 80 * 2**30
    assert d0["compute_capability"] == "9.0"
    assert d0["max_clocks_mhz"] == {"sm": 1980, "memory": 2619, "graphics": 1980}
    assert d0["application_clocks_mhz"] == {"sm": 1755, "memory": 2619}
    assert d0["power_limit_w"] == 700.0 and d0["power_limit_range_w"] == [200.0, 700.0]
    assert d0["persistence_mode"] is True and d0["compute_mode"] == "default"
    assert d0["ecc"] == {"current": True, "pending": True}
    assert d0["pcie"] == {"generation": 5, "width": 16, "max_generation": 5, "max_width": 16}
    assert d0["pci_bus_id"] == "00000000:18:00.0"  # bytes from NVML decoded
    assert d0["mig"] == {"current": False, "pending": False}
    assert d1["mig"] == {"current": True, "pending": True}
    assert d1["uuid"].endswith("0001") and d1["serial"] == "222"  # raw here; redaction hashes them
    assert fp["errors"] == {}
    assert nvml.initialized() == 0  # nvmlShutdown was called
    assert gpu_summary(fp) == {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 2,
                               "gpu_driver_version": "550.54.15", "cuda_driver_version": "12.4"}


def test_unsupported_queries_are_none_and_the_rest_still_reads(fake):
    fake(unsupported={"nvmlDeviceGetEccMode", "nvmlDeviceGetMigMode", "nvmlDeviceGetApplicationsClock",
                      "nvmlDeviceGetSerial", "nvmlDeviceGetPowerManagementLimitConstraints"})
    fp = gpu_fingerprint()
    d = fp["devices"][0]
    assert d["ecc"] is None and d["mig"] is None and d["serial"] is None
    assert d["application_clocks_mhz"] == {"sm": None, "memory": None}
    assert d["power_limit_range_w"] is None
    assert d["name"] == "NVIDIA H100 80GB HBM3" and d["power_limit_w"] == 700.0
    assert fp["errors"] == {}  # not supported is not an error


def test_other_nvml_errors_are_recorded_not_raised(fake):
    from tests.fingerprint.fake_pynvml import NVML_ERROR_NO_PERMISSION

    fake(failing={"nvmlDeviceGetVbiosVersion": NVML_ERROR_NO_PERMISSION})
    fp = gpu_fingerprint()
    assert fp["devices"][0]["vbios_version"] is None
    assert fp["errors"] == {"devices[0].vbios_version": "NVMLError_NoPermission: Insufficient Permissions"}


def test_no_driver_is_a_record(fake):
    nvml = fake(driver=False)
    fp = gpu_fingerprint()
    assert fp == {"available": False, "reason": "no NVIDIA driver: Driver Not Loaded (NVMLError_DriverNotLoaded)"}
    assert nvml.calls == ["nvmlInit"]


def test_no_gpu_is_a_record(fake):
    fake(gpus=[])
    fp = gpu_fingerprint()
    assert fp["available"] is False and "no GPU" in fp["reason"]
    assert gpu_summary(fp)["gpu_count"] == 0


def test_missing_pynvml_is_a_record(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert gpu_fingerprint() == {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}


def test_real_pynvml_without_a_driver():
    """The real nvidia-ml-py on a machine with no NVIDIA driver: a record, never a crash."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    fp = gpu_fingerprint()
    assert fp["available"] is False
    assert fp["reason"].startswith("no NVIDIA driver: ")
    assert gpu_summary(fp) == {"gpu_name": None, "gpu_count": 0, "gpu_driver_version": None,
                               "cuda_driver_version": None}


def test_cuda_version_text():
    assert cuda_version_text(12040) == "12.4"
    assert cuda_version_text(11080) == "11.8"
    assert cuda_version_text(None) is None


def test_fake_finds_a_gpu_by_uuid_as_pynvml_does():
    """The telemetry's GPU filter names GPUs by index or UUID: the fake answers both like pynvml."""
    from tests.fingerprint.fake_pynvml import NVML_ERROR_NOT_FOUND

    uuids = [f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(4)]
    nvml = make_fake_nvml([FakeGpu(uuid=u) for u in uuids])
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByUUID(uuids[3])
    assert nvml.nvmlDeviceGetIndex(handle) == 3 and nvml.nvmlDeviceGetUUID(handle) == uuids[3]
    with pytest.raises(nvml.NVMLError_NotFound) as err:
        nvml.nvmlDeviceGetHandleByUUID("GPU-ffffffff-0000-0000-0000-000000000000")
    assert err.value.value == NVML_ERROR_NOT_FOUND
    nvml.nvmlShutdown()
