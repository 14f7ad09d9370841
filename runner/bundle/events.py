"""Reading a run's `events.jsonl` into table rows, tolerating a run that was killed mid-write.

A torn last line (no newline, not valid JSON) is dropped and reported as `torn`; an invalid
line elsewhere is skipped and its number reported. The event's kind is its `type` field (the
workload's spelling) or `event`.

Step events are the bulk of a long run (a million lines is ordinary), so they are parsed by
Arrow's JSON reader straight into the `steps` table, and line boundaries are found with one
vectorised scan; only the other events (a few dozen) are parsed into dicts. When Arrow
refuses the file (an invalid line, a field of an unexpected type) every line is parsed one
by one instead: slower, same result.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from runner.bundle.schemas import STEPS

STEP_FIELDS = ("t", "epoch", "step", "global_step", "loss", "lr", "batch_size", "data_time_s", "compute_time_s",
               "warmup")
_PARSE_SCHEMA = pa.schema([
    ("type", pa.string()), ("event", pa.string()), ("run_id", pa.string()), ("t", pa.float64()), ("epoch", pa.int64()),
    ("step", pa.int64()), ("global_step", pa.int64()), ("loss", pa.float64()), ("lr", pa.float64()),
    ("batch_size", pa.int64()), ("data_time_s", pa.float64()), ("compute_time_s", pa.float64()),
    ("warmup", pa.bool_()),
])
_WHITESPACE = frozenset(b" \t\r\n\f\v")
# Fields every step event carries (loss may be null: a non-finite loss is written as null).
_ALWAYS = ("t", "epoch", "step", "global_step", "lr", "batch_size", "data_time_s", "compute_time_s", "warmup")
# A step line as the workload writes it: "type", "run_id" and the 10 step fields as keys (24
# quotes), and two string values, the kind and the run id (4 quotes).
_QUOTES_PER_STEP = 2 * (2 + len(STEP_FIELDS)) + 4


def event_kind(event: dict[str, Any]) -> str | None:
    kind = event.get("type", event.get("event"))
    return kind if isinstance(kind, str) else None


@dataclass
class EventLog:
    """One run's events: the non-step events as dicts, the steps as a table.

    `body` is the file without its torn last line (`torn`); `event_spans` are the byte spans
    in `body` of the lines parsed into `events` (same order), `invalid_spans` those of lines
    that were not a JSON object. Everything else in `body` is step lines and blank lines.
    """

    events: list[dict[str, Any]]
    steps: pa.Table
    body: bytes = field(default=b"", repr=False)
    event_spans: list[tuple[int, int]] = field(default_factory=list, repr=False)
    invalid_spans: list[tuple[int, int]] = field(default_factory=list, repr=False)
    invalid_lines: list[int] = field(default_factory=list)
    torn: bytes | None = field(default=None, repr=False)
    steps_plain: bool = False  # every step line holds only the known keys, numbers and the run id

    @property
    def truncated(self) -> bool:
        return self.torn is not None

    @property
    def skipped_lines(self) -> list[int]:
        """1-based line numbers of lines that were not a JSON object (the torn last line aside)."""
        return self.invalid_lines

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if event_kind(e) == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if event_kind(e) == kind), None)

    def last(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if event_kind(e) == kind), None)


def split_torn(data: bytes) -> tuple[bytes, bytes | None]:
    """(body, torn last line or None). An unterminated last line that parses is completed, not torn."""
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    if not tail.strip():
        return data, None
    try:
        json.loads(tail)
    except ValueError:
        return data[:cut], tail
    return data + b"\n", None


def line_spans(body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, line numbers) of the non-blank lines of a newline-terminated body."""
    if not body:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    arr = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(arr == 0x0A)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    numbers = np.arange(1, len(ends) + 1)
    keep = ends > starts
    starts, ends, numbers = starts[keep], ends[keep], numbers[keep]
    # A line of only whitespace is blank too (rare: checked one by one).
    first = arr[starts]
    suspect = np.flatnonzero(np.isin(first, np.frombuffer(bytes(_WHITESPACE), dtype=np.uint8)))
    if len(suspect):
        blank = [i for i in suspect if not body[starts[i]:ends[i]].strip()]
        if blank:
            keep = np.ones(len(starts), dtype=bool)
            keep[blank] = False
            starts, ends, numbers = starts[keep], ends[keep], numbers[keep]
    return starts, ends, numbers


def _steps_table(table: pa.Table, run_id: str) -> pa.Table:
    cols = [pa.array([run_id], pa.string()).take(np.zeros(table.num_rows, dtype=np.int64))]
    cols += [table.column(name).cast(STEPS.field(name).type) for name in STEP_FIELDS]
    return pa.Table.from_arrays(cols, schema=pa.schema([STEPS.field(n) for n in ("run_id", *STEP_FIELDS)])
                                ).select(STEPS.names).cast(STEPS)


def _fast(body: bytes, run_id: str) -> EventLog:
    starts, ends, _ = line_spans(body)
    table = pj.read_json(io.BytesIO(body), read_options=pj.ReadOptions(block_size=8 << 20),
                         parse_options=pj.ParseOptions(explicit_schema=_PARSE_SCHEMA,
                                                       unexpected_field_behavior="ignore"))
    if table.num_rows != len(starts):
        raise pa.ArrowInvalid("row count differs from line count")
    kind = pc.coalesce(table.column("type"), table.column("event"))
    is_step = pc.fill_null(pc.equal(kind, "step"), False)
    step_rows = table.filter(is_step)
    steps = _steps_table(step_rows, run_id)
    others = pc.indices_nonzero(pc.invert(is_step)).to_numpy()
    events, spans = [], []
    for i in others:
        s, e = int(starts[i]), int(ends[i])
        obj = json.loads(body[s:e])
        if not isinstance(obj, dict):
            raise pa.ArrowInvalid("not an object")
        events.append(obj)
        spans.append((s, e))
    return EventLog(events, steps, body=body, event_spans=spans,
                    steps_plain=_plain_steps(body, step_rows, spans, run_id))


def _plain_steps(body: bytes, rows: pa.Table, spans: list[tuple[int, int]], run_id: str) -> bool:
    """True when the step lines can hold no text: every known field present, the run id as
    expected, and exactly as many quote characters as their keys and two strings need (an
    unknown field or a string anywhere else would add some)."""
    n = rows.num_rows
    if n == 0:
        return True
    if any(rows.column(f).null_count for f in _ALWAYS) or rows.column("run_id").null_count:
        return False
    if not pc.all(pc.equal(rows.column("run_id"), run_id)).as_py():
        return False
    quotes = body.count(b'"') - sum(body.count(b'"', s, e) for s, e in spans)
    return quotes == _QUOTES_PER_STEP * n


def _slow(body: bytes, run_id: str) -> EventLog:
    starts, ends, numbers = line_spans(body)
    log = EventLog([], STEPS.empty_table(), body=body)
    steps = []
    for s, e, n in zip(starts.tolist(), ends.tolist(), numbers.tolist(), strict=True):
        try:
            obj = json.loads(body[s:e])
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            log.invalid_spans.append((s, e))
            log.invalid_lines.append(n)
        elif event_kind(obj) == "step":
            steps.append(obj)
        else:
            log.events.append(obj)
            log.event_spans.append((s, e))
    columns: dict[str, list[Any]] = {"run_id": [run_id] * len(steps)}
    for name in STEP_FIELDS:
        columns[name] = [_coerce(s.get(name), STEPS.field(name).type) for s in steps]
    table = pa.Table.from_pydict(columns, schema=pa.schema([STEPS.field(n) for n in ("run_id", *STEP_FIELDS)]))
    log.steps = table.select(STEPS.names).cast(STEPS)
    return log


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """A JSON value as the column's type, or None when it cannot be (a string where a number goes)."""
    if value is None or isinstance(value, str | dict | list):
        return None
    if pa.types.is_boolean(type_):
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    try:
        return int(value) if pa.types.is_integer(type_) else float(value)
    except (OverflowError, ValueError):
        return None


def parse_events(data: bytes, run_id: str) -> EventLog:
    body, torn = split_torn(data)
    try:
        log = _fast(body, run_id)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        log = _slow(body, run_id)
    log.torn = torn
    return log


def read_events(path: Path, run_id: str) -> EventLog:
    """The events of one run; a missing file is an empty log (the run never started)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return parse_events(b"", run_id)
    return parse_events(data, run_id)
