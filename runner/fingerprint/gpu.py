"""The NVIDIA GPUs of the host, through NVML (`pynvml` from nvidia-ml-py).

No driver, no library or no GPU is a record, `{"available": False, "reason": ...}`, never an
error. Each query is guarded on its own: a query the GPU does not support gives None (and a
query that fails for another reason gives None plus an entry in `errors`), so one missing
feature never hides the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def load_nvml() -> Any:
    """The pynvml module (imported lazily: it is only needed where GPUs are asked about)."""
    return importlib.import_module("pynvml")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def cuda_version_text(value: int | None) -> str | None:
    """NVML's integer CUDA version (12040) as text ("12.4")."""
    if value is None:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


class NvmlQuery:
    """Calls NVML functions by name; unsupported -> None, other NVML errors -> None + `errors`."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.errors: dict[str, str] = {}
        self._not_supported = getattr(nvml, "NVMLError_NotSupported", ())

    def __call__(self, field: str, fn_name: str, *args: Any) -> Any:
        fn = getattr(self.nvml, fn_name, None)
        if fn is None:
            self.errors[field] = f"{fn_name} not in this pynvml"
            return None
        try:
            return _text(fn(*args))
        except self._not_supported:
            return None
        except self.nvml.NVMLError as e:
            self.errors[field] = f"{type(e).__name__}: {e}"
            return None


def _pair(values: Any, convert: Any = bool) -> dict[str, Any] | None:
    """NVML's [current, pending] pairs (ECC, MIG) as a dict."""
    if values is None:
        return None
    current, pending = values
    return {"current": convert(current), "pending": convert(pending)}


def device_record(q: NvmlQuery, nvml: Any, index: int) -> dict[str, Any]:
    handle = q(f"devices[{index}].handle", "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return {"index": index, "name": None}
    p = f"devices[{index}]."
    mem = q(p + "memory", "nvmlDeviceGetMemoryInfo", handle)
    cc = q(p + "compute_capability", "nvmlDeviceGetCudaComputeCapability", handle)
    pci = q(p + "pci", "nvmlDeviceGetPciInfo", handle)
    limits = q(p + "power_limit_range_w", "nvmlDeviceGetPowerManagementLimitConstraints", handle)
    persistence = q(p + "persistence_mode", "nvmlDeviceGetPersistenceMode", handle)
    compute = q(p + "compute_mode", "nvmlDeviceGetComputeMode", handle)
    clock = {"sm": nvml.NVML_CLOCK_SM, "memory": nvml.NVML_CLOCK_MEM, "graphics": nvml.NVML_CLOCK_GRAPHICS}
    return {
        "index": index,
        "name": q(p + "name", "nvmlDeviceGetName", handle),
        "uuid": q(p + "uuid", "nvmlDeviceGetUUID", handle),
        "serial": q(p + "serial", "nvmlDeviceGetSerial", handle),
        "pci_bus_id": _text(getattr(pci, "busId", None)) if pci is not None else None,
        "memory_total_bytes": getattr(mem, "total", None),
        "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        "vbios_version": q(p + "vbios_version", "nvmlDeviceGetVbiosVersion", handle),
        "max_clocks_mhz": {k: q(f"{p}max_clocks_mhz.{k}", "nvmlDeviceGetMaxClockInfo", handle, v)
                           for k, v in clock.items()},
        "application_clocks_mhz": {k: q(f"{p}application_clocks_mhz.{k}", "nvmlDeviceGetApplicationsClock",
                                        handle, v) for k, v in clock.items() if k != "graphics"},
        "power_limit_w": _watts(q(p + "power_limit_w", "nvmlDeviceGetPowerManagementLimit", handle)),
        "default_power_limit_w": _watts(q(p + "default_power_limit_w",
                                          "nvmlDeviceGetPowerManagementDefaultLimit", handle)),
        "enforced_power_limit_w": _watts(q(p + "enforced_power_limit_w", "nvmlDeviceGetEnforcedPowerLimit",
                                           handle)),
        "power_limit_range_w": [_watts(limits[0]), _watts(limits[1])] if limits else None,
        "persistence_mode": None if persistence is None else bool(persistence),
        "compute_mode": None if compute is None else COMPUTE_MODES.get(compute, str(compute)),
        "ecc": _pair(q(p + "ecc", "nvmlDeviceGetEccMode", handle)),
        "mig": _pair(q(p + "mig", "nvmlDeviceGetMigMode", handle)),
        "pcie": {
            "generation": q(p + "pcie.generation", "nvmlDeviceGetCurrPcieLinkGeneration", handle),
            "width": q(p + "pcie.width", "nvmlDeviceGetCurrPcieLinkWidth", handle),
            "max_generation": q(p + "pcie.max_generation", "nvmlDeviceGetMaxPcieLinkGeneration", handle),
            "max_width": q(p + "pcie.max_width", "nvmlDeviceGetMaxPcieLinkWidth", handle),
        },
    }


def gpu_fingerprint(nvml: Any | None = None) -> dict[str, Any]:
    """Driver, CUDA driver version and every device's configuration; `available: False` without NVML."""
    if nvml is None:
        try:
            nvml = load_nvml()
        except ImportError:
            return {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        return {"available": False, "reason": f"no NVIDIA driver: {e} ({type(e).__name__})"}
    try:
        q = NvmlQuery(nvml)
        count = q("count", "nvmlDeviceGetCount")
        record: dict[str, Any] = {
            "available": True,
            "driver_version": q("driver_version", "nvmlSystemGetDriverVersion"),
            "cuda_driver_version": cuda_version_text(q("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")),
            "nvml_version": q("nvml_version", "nvmlSystemGetNVMLVersion"),
            "count": count,
            "devices": [device_record(q, nvml, i) for i in range(count or 0)],
        }
        if not count:
            record.update(available=False, reason="the NVIDIA driver reports no GPU")
        record["errors"] = q.errors
        return record
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def gpu_summary(fp: dict[str, Any]) -> dict[str, Any]:
    """The few GPU facts repeated on every results row."""
    if not fp.get("available"):
        return {"gpu_name": None, "gpu_count": 0, "gpu_driver_version": None, "cuda_driver_version": None}
    names = list(dict.fromkeys(d.get("name") or "?" for d in fp.get("devices", [])))
    return {"gpu_name": ", ".join(names) or None, "gpu_count": fp.get("count") or 0,
            "gpu_driver_version": fp.get("driver_version"), "cuda_driver_version": fp.get("cuda_driver_version")}
