"""Reading a run's `events.jsonl` into table rows, tolerating a run that was killed mid-write.

A torn last line (no newline, not valid JSON) is dropped and reported as `truncated`; an
invalid line elsewhere is skipped and its number reported. The event's kind is its `type`
field (the workload's spelling) or `event`.

Step events are the bulk of a long run (a million lines is ordinary), so they are parsed by
Arrow's JSON reader straight into the `steps` table; every other event is parsed into a dict.
When Arrow refuses the file (an invalid line, a field of an unexpected type) every line is
parsed one by one instead: slower, same result.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from runner.bundle.schemas import STEPS

STEP_FIELDS = ("t", "epoch", "step", "global_step", "loss", "lr", "batch_size", "data_time_s", "compute_time_s",
               "warmup")
_PARSE_SCHEMA = pa.schema([
    ("type", pa.string()), ("event", pa.string()), ("t", pa.float64()), ("epoch", pa.int64()),
    ("step", pa.int64()), ("global_step", pa.int64()), ("loss", pa.float64()), ("lr", pa.float64()),
    ("batch_size", pa.int64()), ("data_time_s", pa.float64()), ("compute_time_s", pa.float64()),
    ("warmup", pa.bool_()),
])


def event_kind(event: dict[str, Any]) -> str | None:
    kind = event.get("type", event.get("event"))
    return kind if isinstance(kind, str) else None


@dataclass
class EventLog:
    """One run's events: the non-step events as dicts, the steps as a table.

    `lines` are the file's non-blank lines (the torn last one, if any, is `torn`), and
    `line_kinds` says what each is: "step", "event" (parsed into `events`) or "invalid".
    """

    events: list[dict[str, Any]]
    steps: pa.Table
    lines: list[bytes] = field(default_factory=list, repr=False)
    line_kinds: list[str] = field(default_factory=list, repr=False)
    torn: bytes | None = field(default=None, repr=False)

    @property
    def truncated(self) -> bool:
        return self.torn is not None

    @property
    def skipped_lines(self) -> list[int]:
        """1-based numbers (among non-blank lines) of lines that were not a JSON object."""
        return [i for i, kind in enumerate(self.line_kinds, start=1) if kind == "invalid"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if event_kind(e) == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if event_kind(e) == kind), None)

    def last(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if event_kind(e) == kind), None)


def split_lines(data: bytes) -> tuple[list[bytes], bytes | None]:
    """Non-blank lines, and the torn final line if there was one (dropped from the lines)."""
    lines = data.split(b"\n")
    torn = None
    if lines and lines[-1].strip():
        # No final newline: a complete object that was not terminated is kept, a torn one dropped.
        try:
            json.loads(lines[-1])
        except ValueError:
            torn = lines.pop()
    return [ln for ln in lines if ln.strip()], torn


def _steps_table(table: pa.Table, run_id: str) -> pa.Table:
    cols = [pa.array([run_id] * table.num_rows, pa.string())] if table.num_rows else [pa.array([], pa.string())]
    cols += [table.column(name).cast(STEPS.field(name).type) for name in STEP_FIELDS]
    return pa.Table.from_arrays(cols, schema=pa.schema([STEPS.field(n) for n in ("run_id", *STEP_FIELDS)])
                                ).select(STEPS.names).cast(STEPS)


def _fast(lines: list[bytes], run_id: str) -> EventLog:
    table = pj.read_json(io.BytesIO(b"\n".join(lines)),
                         parse_options=pj.ParseOptions(explicit_schema=_PARSE_SCHEMA,
                                                       unexpected_field_behavior="ignore"))
    if table.num_rows != len(lines):
        raise pa.ArrowInvalid("row count differs from line count")
    kind = pc.coalesce(table.column("type"), table.column("event"))
    is_step = pc.fill_null(pc.equal(kind, "step"), False)
    steps = _steps_table(table.filter(is_step), run_id)
    kinds = ["step" if step else "event" for step in is_step.to_pylist()]
    events = []
    for line, k in zip(lines, kinds, strict=True):
        if k == "event":
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise pa.ArrowInvalid("not an object")
            events.append(obj)
    return EventLog(events, steps, lines=lines, line_kinds=kinds)


def _slow(lines: list[bytes], run_id: str) -> EventLog:
    events, steps, kinds = [], [], []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            kinds.append("invalid")
        elif event_kind(obj) == "step":
            steps.append(obj)
            kinds.append("step")
        else:
            events.append(obj)
            kinds.append("event")
    columns: dict[str, list[Any]] = {"run_id": [run_id] * len(steps)}
    for name in STEP_FIELDS:
        columns[name] = [_coerce(s.get(name), STEPS.field(name).type) for s in steps]
    table = pa.Table.from_pydict(columns, schema=pa.schema([STEPS.field(n) for n in ("run_id", *STEP_FIELDS)]))
    return EventLog(events, table.select(STEPS.names).cast(STEPS), lines=lines, line_kinds=kinds)


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """A JSON value as the column's type, or None when it cannot be (a string where a number goes)."""
    if value is None:
        return None
    try:
        if pa.types.is_boolean(type_):
            return value if isinstance(value, bool) else None
        if pa.types.is_integer(type_):
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if pa.types.is_floating(type_):
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    except (OverflowError, ValueError):
        return None
    return value


def parse_events(data: bytes, run_id: str) -> EventLog:
    lines, torn = split_lines(data)
    try:
        log = _fast(lines, run_id)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        log = _slow(lines, run_id)
    log.torn = torn
    return log


def read_events(path: Path, run_id: str) -> EventLog:
    """The events of one run; a missing file is an empty log (the run never started)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return parse_events(b"", run_id)
    return parse_events(data, run_id)
