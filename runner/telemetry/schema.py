"""The declared schema of a telemetry sample: one row per (time, source, device).

The bundle turns this into its `telemetry` Parquet table (adding `run_id`); units are stored
in each field's metadata there. `source` is "gpu" (NVML, one row per device the run was
given), "container" (the Docker engine's stats), "process" (the local process tree, through
psutil) or "host" (the whole machine's CPU load, `runner.telemetry.host`).
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
    SampleField("source", "string", "", "gpu | container | process | host"),
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
    SampleField("host_cpus", "int32", "cores", "logical CPUs of the host (host rows only)"),
    SampleField("host_cpu_pct", "float64", "%", "host CPU busy since the last reading, all processes, steal "
                "excluded; % of all cores (100 = every core busy)"),
    SampleField("host_steal_pct", "float64", "%", "CPU time the hypervisor gave to other guests; % of all cores"),
    SampleField("host_load_1m", "float64", "processes", "host load average over 1 minute"),
    SampleField("other_cpu_pct", "float64", "%", "host busy less the run's own CPU use (container or process "
                "tree): what other processes used; % of all cores"),
)
SAMPLE_FIELD_NAMES = tuple(f.name for f in SAMPLE_FIELDS)


def empty_sample(t: float, elapsed_s: float, source: str) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(SAMPLE_FIELD_NAMES)
    row.update(t=t, elapsed_s=elapsed_s, source=source)
    return row
