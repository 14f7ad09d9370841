"""GPU readings through NVML: utilisation, memory, power, energy, temperature, SM clock, throttling.

Only the GPUs a run was given are read, named by NVML index or UUID (a run given N GPUs by the
docker engine gets NVML indices 0..N-1: docker's NVIDIA device request with a count sets
NVIDIA_VISIBLE_DEVICES=0,...,N-1). Each row carries the NVML index in `device`, so another
job's GPU on the same host never adds to a run's energy or utilisation.

A query the GPU does not support is asked once, then skipped (None from then on); any other
NVML error leaves the field None for that sample and is counted in `errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.fingerprint.gpu import load_nvml
from runner.telemetry.schema import empty_sample


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no library, no driver, no GPU)."""


class GpuProbe:
    source = "gpu"

    def __init__(self, devices: Sequence[int | str], nvml: Any | None = None) -> None:
        if nvml is None:
            try:
                nvml = load_nvml()
            except ImportError as e:
                raise NvmlUnavailable("nvidia-ml-py (pynvml) is not installed") from e
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            raise NvmlUnavailable(f"no NVIDIA driver: {e}") from e
        if not devices:
            self.close()
            raise NvmlUnavailable("the run was given no GPU")
        try:
            self.handles = [(self._index(d), self._handle(d)) for d in devices]
        except nvml.NVMLError as e:
            self.close()
            raise NvmlUnavailable(f"NVML does not find the run's GPUs {list(devices)}: {e}") from e
        self.errors = 0
        self.last_error: str | None = None
        self._unsupported: set[str] = set()
        self._throttle_fn = ("nvmlDeviceGetCurrentClocksEventReasons"
                             if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
                             else "nvmlDeviceGetCurrentClocksThrottleReasons")

    def _handle(self, device: int | str) -> Any:
        if isinstance(device, str):
            return self.nvml.nvmlDeviceGetHandleByUUID(device)
        return self.nvml.nvmlDeviceGetHandleByIndex(device)

    def _index(self, device: int | str) -> int:
        """The NVML index of a device given by index or UUID (rows carry the index)."""
        if isinstance(device, int):
            return device
        return int(self.nvml.nvmlDeviceGetIndex(self.nvml.nvmlDeviceGetHandleByUUID(device)))

    def _get(self, fn_name: str, *args: Any) -> Any:
        if fn_name in self._unsupported:
            return None
        try:
            return getattr(self.nvml, fn_name)(*args)
        except self.nvml.NVMLError_NotSupported:
            self._unsupported.add(fn_name)
            return None
        except (self.nvml.NVMLError, AttributeError) as e:
            self.errors += 1
            self.last_error = f"{fn_name}: {type(e).__name__}: {e}"
            return None

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]:
        n = self.nvml
        rows = []
        for index, h in self.handles:
            row = empty_sample(t, elapsed_s, self.source)
            util = self._get("nvmlDeviceGetUtilizationRates", h)
            mem = self._get("nvmlDeviceGetMemoryInfo", h)
            power_mw = self._get("nvmlDeviceGetPowerUsage", h)
            energy_mj = self._get("nvmlDeviceGetTotalEnergyConsumption", h)
            temp = self._get("nvmlDeviceGetTemperature", h, n.NVML_TEMPERATURE_GPU)
            sm = self._get("nvmlDeviceGetClockInfo", h, n.NVML_CLOCK_SM)
            row.update(
                device=index,
                gpu_util_pct=None if util is None else float(util.gpu),
                gpu_mem_util_pct=None if util is None else float(util.memory),
                gpu_mem_used_bytes=None if mem is None else int(mem.used),
                gpu_mem_total_bytes=None if mem is None else int(mem.total),
                power_w=None if power_mw is None else power_mw / 1000.0,
                energy_j=None if energy_mj is None else energy_mj / 1000.0,
                temperature_c=None if temp is None else float(temp),
                sm_clock_mhz=None if sm is None else float(sm),
                throttle_reasons=self._get(self._throttle_fn, h),
            )
            rows.append(row)
        return rows

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass
