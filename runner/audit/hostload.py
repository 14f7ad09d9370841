"""Was a run's machine busy? The likely cause named beside a timing miss, from the runs table.

Each run records (from telemetry, `runner.telemetry.host`) the mean CPU share other processes
used while it ran and the mean steal, both as % of all the host's cores. A run is busy above
the thresholds in `runner.audit.tolerances`. Bundles written before these columns existed
(schema 1) say "host load not recorded".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.audit.tolerances import BUSY_OTHER_PCT, BUSY_STEAL_PCT


@dataclass(frozen=True)
class HostLoad:
    other_pct: float | None  # mean % of all cores other processes used
    steal_pct: float | None  # mean % of CPU time stolen

    @classmethod
    def of(cls, row: dict[str, Any]) -> HostLoad:
        return cls(_pct(row.get("host_other_cpu_mean_pct")), _pct(row.get("host_steal_mean_pct")))

    @property
    def recorded(self) -> bool:
        return self.other_pct is not None or self.steal_pct is not None

    @property
    def busy(self) -> bool:
        return (self.other_pct or 0.0) > BUSY_OTHER_PCT or (self.steal_pct or 0.0) > BUSY_STEAL_PCT

    def words(self) -> str:
        if not self.recorded:
            return "host load not recorded"
        return f"other processes used {_fmt(self.other_pct)} of the CPUs, steal {_fmt(self.steal_pct)}"


def _pct(value: Any) -> float | None:
    """A recorded percentage; anything else (null, NaN, a string in a doctored bundle) counts as not recorded."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _fmt(pct: float | None) -> str:
    return "?" if pct is None else f"{pct:.0f}%"


def likely_cause(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("ORIGINAL", "NEW")) -> str:
    """What host load says about a timing difference between run rows `a` and `b`, in one clause."""
    loads = {name: HostLoad.of(row) for name, row in zip(names, (a, b), strict=True)}
    busy = [name for name, load in loads.items() if load.busy]
    if len(busy) == 2:
        return ("likely cause: both runs' hosts were busy ("
                + "; ".join(f"{name}: {load.words()}" for name, load in loads.items()) + ")")
    if busy:
        return f"likely cause: the {busy[0]} run's host was busy ({loads[busy[0]].words()})"
    missing = [name for name, load in loads.items() if not load.recorded]
    if missing:
        whose = "either run" if len(missing) == 2 else f"the {missing[0]} run"
        return f"host load not recorded for {whose}"
    return "hosts were not busy (" + "; ".join(f"{name}: {load.words()}" for name, load in loads.items()) + ")"
