"""The event stream a run writes as it goes (`events.jsonl`), and reading it back.

One JSON object per line, written and flushed as it happens, fsync'd at epoch boundaries and
at the end, so a run killed at any point leaves every event it completed. Every event carries
`type`, `t` (time.time()) and `run_id`. Non-finite floats (a diverged loss) are written as
null: the file stays strict JSON that any reader accepts.

Event types and their fields (docs/workload.md has the full schema):
    run_start, compile, step, epoch, eval, target_reached, latency, memory, run_end
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"

EVENT_TYPES = (
    "run_start", "compile", "step", "epoch", "eval", "target_reached", "latency", "inference", "memory", "run_end",
)


def _finite(value: Any) -> Any:
    """Replace NaN/inf anywhere in a JSON-able value by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class EventWriter:
    """Append-only writer of one run's events; `sync()` makes what was written durable."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        # "x": a run never appends to, or overwrites, another run's events.
        self._fh: TextIO | None = open(self.path, "x", encoding="utf-8")  # noqa: SIM115

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        event = {"type": type_, "t": time.time(), "run_id": self.run_id, **_finite(fields)}
        if self._fh is None:
            raise RuntimeError("event writer is closed")
        self._fh.write(json.dumps(event, allow_nan=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        return event

    def sync(self) -> None:
        """Flush and fsync: called at epoch boundaries and at the end of the run."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a stream; a torn last line (killed mid-write) is ignored."""
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # only the unterminated last line may be torn
                break
            raise
    return events


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync, then rename over it in one step."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_finite(obj), fh, indent=1, sort_keys=True, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
