"""The declared schema of a telemetry sample: one row per (time, source, device).

The bundle turns this into its `telemetry` Parquet table (adding `run_id`); units are stored
in each field's metadata there. `source` is "gpu" (NVML, one row per device), "container"
(the Docker engine's stats) or "process" (the local process tree, through psutil).
"""

from __future__ import annotations

from typing import NamedTuple


class SampleField(NamedTuple):
    name: str
    type: str  # pyarrow type name: float64, int64, int32, string
    unit: str
    description: str


SAMPLE_FIELDS: tuple[SampleField, ...] = (
    SampleField("t", "float64", "s", "wall-clock time of the reading (Unix seconds)"),
    SampleField("elapsed_s", "float64", "s", "seconds since the sampler started"),
    SampleField("source", "string", "", "gpu | container | process"),
    SampleField("device", "int32", "", "GPU index (gpu rows only)"),
    SampleField("gpu_util_pct", "float64", "%", "GPU busy time over the driver's last sample period"),
    SampleField("gpu_mem_util_pct", "float64", "%", "GPU memory-controller busy time"),
    SampleField("gpu_mem_used_bytes", "int64", "bytes", "GPU memory in use"),
    SampleField("gpu_mem_total_bytes", "int64", "bytes", "GPU memory in total"),
    SampleField("power_w", "float64", "W", "GPU board power draw"),
    SampleField("energy_j", "float64", "J", "GPU total energy counter since the driver loaded"),
    SampleField("temperature_c", "float64", "degC", "GPU core temperature"),
    SampleField("sm_clock_mhz", "float64", "MHz", "SM clock"),
    SampleField("throttle_reasons", "int64", "bitmask", "NVML clocks event (throttle) reasons"),
    SampleField("cpu_pct", "float64", "%", "CPU use of the container or process tree; 100 = one core"),
    SampleField("mem_bytes", "int64", "bytes", "memory of the container (less page cache) or process tree (RSS)"),
    SampleField("mem_limit_bytes", "int64", "bytes", "container memory limit"),
    SampleField("processes", "int32", "count", "processes in the tree (process rows only)"),
)
SAMPLE_FIELD_NAMES = tuple(f.name for f in SAMPLE_FIELDS)


def empty_sample(t: float, elapsed_s: float, source: str) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(SAMPLE_FIELD_NAMES)
    row.update(t=t, elapsed_s=elapsed_s, source=source)
    return row
