"""A small stand-in for the `pynvml` module, for machines without an NVIDIA GPU.

It follows the real module's contract where our code depends on it: `NVMLError(value)`
returns the subclass registered for that error code (`NVMLError_NotSupported`, ...), every
query raises `NVMLError_Uninitialized` before `nvmlInit()`, handles come from
`nvmlDeviceGetHandleByIndex`, and results have the real shapes (structures with
`.total/.used`, `[current, pending]` lists, milliwatts, millijoules, an int CUDA version).
Which queries are unsupported or failing, and the readings over time, are configurable.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15

_NAMES = {
    NVML_ERROR_UNINITIALIZED: ("Uninitialized", "Uninitialized"),
    NVML_ERROR_NOT_SUPPORTED: ("NotSupported", "Not Supported"),
    NVML_ERROR_NO_PERMISSION: ("NoPermission", "Insufficient Permissions"),
    NVML_ERROR_NOT_FOUND: ("NotFound", "Not Found"),
    NVML_ERROR_DRIVER_NOT_LOADED: ("DriverNotLoaded", "Driver Not Loaded"),
    NVML_ERROR_LIBRARY_NOT_FOUND: ("LibraryNotFound", "NVML Shared Library Not Found"),
    NVML_ERROR_GPU_IS_LOST: ("GpuIsLost", "GPU is lost"),
}


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-8c1f3f6e-6d0b-4b7a-9f1e-0123456789ab"
    serial: str = "1650923012345"
    memory_total: int = 80 * 2**30
    memory_used: int = 2 * 2**30
    power_limit_mw: int = 700_000
    # readings returned in turn by successive samples (the last one repeats)
    power_mw: list[int] = field(default_factory=lambda: [300_000])
    energy_mj: list[int] = field(default_factory=lambda: [1_000_000])
    temperature: list[int] = field(default_factory=lambda: [45])
    throttle: list[int] = field(default_factory=lambda: [0])
    util: tuple[int, int] = (87, 40)
    sm_clock: int = 1980
    mig: tuple[int, int] = (0, 0)
    ecc: tuple[int, int] = (1, 1)
    reads: int = 0


class _Struct:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def make_fake_nvml(gpus: list[FakeGpu] | None = None, *, driver: bool = True,
                   unsupported: set[str] | frozenset[str] = frozenset(),
                   failing: dict[str, int] | None = None) -> types.ModuleType:
    """A pynvml-like module. unsupported: function names raising NotSupported; failing: name -> error code."""
    m = types.ModuleType("pynvml")
    gpus = [FakeGpu()] if gpus is None else gpus
    failing = failing or {}
    state = {"init": 0}

    class NVMLError(Exception):
        _valClassMapping: dict[int, type] = {}

        def __new__(cls, value: int):
            if cls is NVMLError:
                cls = NVMLError._valClassMapping.get(value, cls)
            obj = Exception.__new__(cls)
            obj.value = value
            return obj

        def __init__(self, value: int) -> None:
            super().__init__(value)

        def __str__(self) -> str:
            return _NAMES.get(self.value, ("", f"NVML Error with code {self.value}"))[1]

    m.NVMLError = NVMLError
    for code, (suffix, _) in _NAMES.items():
        def new(cls, *args, _code=code):
            return NVMLError.__new__(cls, _code)
        sub = type(f"NVMLError_{suffix}", (NVMLError,), {"__new__": new})
        setattr(m, sub.__name__, sub)
        NVMLError._valClassMapping[code] = sub

    m.NVML_TEMPERATURE_GPU = 0
    m.NVML_CLOCK_GRAPHICS, m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 0, 1, 2
    m.calls = []  # every function called, by name (tests check what was asked)

    def api(fn):
        def wrapper(*args):
            name = fn.__name__
            m.calls.append(name)
            if name not in ("nvmlInit", "nvmlShutdown") and not state["init"]:
                raise NVMLError(NVML_ERROR_UNINITIALIZED)
            if name in unsupported:
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            if name in failing:
                raise NVMLError(failing[name])
            return fn(*args)
        wrapper.__name__ = fn.__name__
        setattr(m, fn.__name__, wrapper)
        return wrapper

    def gpu(handle: Any) -> FakeGpu:
        if not isinstance(handle, _Struct) or handle.index >= len(gpus):
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpus[handle.index]

    def turn(values: list[int], g: FakeGpu) -> int:
        return values[min(g.reads, len(values) - 1)]

    @api
    def nvmlInit():
        if not driver:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        state["init"] += 1

    @api
    def nvmlShutdown():
        if not state["init"]:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        state["init"] -= 1

    m.initialized = lambda: state["init"]

    @api
    def nvmlSystemGetDriverVersion():
        return "550.54.15"

    @api
    def nvmlSystemGetCudaDriverVersion():
        return 12040

    @api
    def nvmlSystemGetNVMLVersion():
        return "12.550.54.15"

    @api
    def nvmlDeviceGetCount():
        return len(gpus)

    @api
    def nvmlDeviceGetHandleByIndex(index):
        if not 0 <= index < len(gpus):
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return _Struct(index=index)

    @api
    def nvmlDeviceGetHandleByUUID(uuid):
        for index, g in enumerate(gpus):
            if g.uuid == uuid:
                return _Struct(index=index)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    @api
    def nvmlDeviceGetIndex(h):
        gpu(h)
        return h.index

    @api
    def nvmlDeviceGetName(h):
        return gpu(h).name

    @api
    def nvmlDeviceGetUUID(h):
        return gpu(h).uuid

    @api
    def nvmlDeviceGetSerial(h):
        return gpu(h).serial

    @api
    def nvmlDeviceGetPciInfo(h):
        return _Struct(busId=f"00000000:{0x18 + h.index:02X}:00.0".encode())

    @api
    def nvmlDeviceGetMemoryInfo(h, version=None):
        g = gpu(h)
        return _Struct(total=g.memory_total, used=g.memory_used, free=g.memory_total - g.memory_used)

    @api
    def nvmlDeviceGetCudaComputeCapability(h):
        gpu(h)
        return (9, 0)

    @api
    def nvmlDeviceGetVbiosVersion(h):
        gpu(h)
        return "96.00.74.00.01"

    @api
    def nvmlDeviceGetMaxClockInfo(h, clock):
        gpu(h)
        return {0: 1980, 1: 1980, 2: 2619}[clock]

    @api
    def nvmlDeviceGetApplicationsClock(h, clock):
        gpu(h)
        return {0: 1755, 1: 1755, 2: 2619}[clock]

    @api
    def nvmlDeviceGetClockInfo(h, clock):
        return gpu(h).sm_clock if clock == 1 else 2619

    @api
    def nvmlDeviceGetPowerManagementLimit(h):
        return gpu(h).power_limit_mw

    @api
    def nvmlDeviceGetPowerManagementDefaultLimit(h):
        return gpu(h).power_limit_mw

    @api
    def nvmlDeviceGetEnforcedPowerLimit(h):
        return gpu(h).power_limit_mw

    @api
    def nvmlDeviceGetPowerManagementLimitConstraints(h):
        return [200_000, gpu(h).power_limit_mw]

    @api
    def nvmlDeviceGetPersistenceMode(h):
        gpu(h)
        return 1

    @api
    def nvmlDeviceGetComputeMode(h):
        gpu(h)
        return 0

    @api
    def nvmlDeviceGetEccMode(h):
        return list(gpu(h).ecc)

    @api
    def nvmlDeviceGetMigMode(h):
        return list(gpu(h).mig)

    @api
    def nvmlDeviceGetCurrPcieLinkGeneration(h):
        gpu(h)
        return 5

    @api
    def nvmlDeviceGetCurrPcieLinkWidth(h):
        gpu(h)
        return 16

    @api
    def nvmlDeviceGetMaxPcieLinkGeneration(h):
        gpu(h)
        return 5

    @api
    def nvmlDeviceGetMaxPcieLinkWidth(h):
        gpu(h)
        return 16

    @api
    def nvmlDeviceGetUtilizationRates(h):
        g = gpu(h)
        return _Struct(gpu=g.util[0], memory=g.util[1])

    @api
    def nvmlDeviceGetPowerUsage(h):
        g = gpu(h)
        return turn(g.power_mw, g)

    @api
    def nvmlDeviceGetTotalEnergyConsumption(h):
        g = gpu(h)
        return turn(g.energy_mj, g)

    @api
    def nvmlDeviceGetTemperature(h, sensor):
        g = gpu(h)
        return turn(g.temperature, g)

    @api
    def nvmlDeviceGetCurrentClocksEventReasons(h):
        g = gpu(h)
        value = turn(g.throttle, g)
        g.reads += 1  # the last reading of a sample: advance every series
        return value

    return m
