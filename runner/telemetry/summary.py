"""Reading telemetry back: throttling flags, energy and host load of a run.

NVML's throttle (clocks event) reasons are a bitmask; the bits are part of NVML's ABI:
    0x04 SW power cap, 0x80 HW power brake            -> "power"
    0x20 SW thermal slowdown, 0x40 HW thermal slowdown -> "thermal"
    0x08 HW slowdown (thermal or power, board-level)   -> "hw_slowdown"
Idle (0x01), application clocks (0x02), sync boost (0x10) and display (0x100) are not
throttling that distorts a measurement and are not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

THROTTLE_BITS = {"power": 0x04 | 0x80, "thermal": 0x20 | 0x40, "hw_slowdown": 0x08}


def throttle_counts(samples: Iterable[dict[str, Any]]) -> dict[str, int]:
    """For each flag, the number of GPU samples that show it."""
    counts = dict.fromkeys(THROTTLE_BITS, 0)
    for row in samples:
        reasons = row.get("throttle_reasons")
        if row.get("source") != "gpu" or not reasons:
            continue
        for flag, bits in THROTTLE_BITS.items():
            if reasons & bits:
                counts[flag] += 1
    return counts


def throttle_flags(samples: Iterable[dict[str, Any]]) -> list[str]:
    """The throttling a run's samples show, e.g. ["power", "thermal"]; [] when none."""
    return sorted(flag for flag, n in throttle_counts(samples).items() if n)


def gpu_energy_j(samples: Iterable[dict[str, Any]]) -> tuple[float | None, str | None]:
    """Energy the GPUs used over the samples, and how it was measured.

    From the total-energy counter (last - first, per device) when every device has one;
    otherwise by integrating power over time (trapezoids); (None, None) without GPU rows.
    """
    per_device: dict[int, list[dict[str, Any]]] = {}
    for row in samples:
        if row.get("source") == "gpu":
            per_device.setdefault(row.get("device") or 0, []).append(row)
    if not per_device:
        return None, None
    counters = [[r["energy_j"] for r in rows if r.get("energy_j") is not None] for rows in per_device.values()]
    if all(len(c) >= 2 for c in counters):
        return sum(c[-1] - c[0] for c in counters), "counter"
    total, any_power = 0.0, False
    for rows in per_device.values():
        points = [(r["elapsed_s"], r["power_w"]) for r in rows if r.get("power_w") is not None]
        for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
            total += (t1 - t0) * (p0 + p1) / 2
            any_power = True
    return (total, "power_integral") if any_power else (None, None)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def host_load_summary(samples: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """The runs-table columns of a run's host load: other processes' CPU (mean, max) and steal (mean, max).

    All are % of all the host's cores; None where no host row recorded the figure.
    """
    host = [r for r in samples if r.get("source") == "host"]
    other = [r["other_cpu_pct"] for r in host if r.get("other_cpu_pct") is not None]
    steal = [r["host_steal_pct"] for r in host if r.get("host_steal_pct") is not None]
    return {"host_other_cpu_mean_pct": _mean(other), "host_other_cpu_max_pct": max(other, default=None),
            "host_steal_mean_pct": _mean(steal), "host_steal_max_pct": max(steal, default=None)}
