"""The event stream: strict JSON lines, every event stamped, torn tails tolerated, no overwrite."""

from __future__ import annotations

import json
import math

import pytest

from runner.workload.events import EventWriter, read_events, write_json_atomic


def test_events_are_stamped_flushed_and_strict_json(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, "run-1")
    writer.emit("step", epoch=0, step=0, loss=1.5)
    # Flushed per event: another reader sees it before the writer closes.
    assert json.loads(path.read_text().splitlines()[0])["loss"] == 1.5
    writer.emit("step", epoch=0, step=1, loss=math.nan, extra={"x": [math.inf, 1.0]})
    writer.close()
    events = read_events(path)
    assert [e["type"] for e in events] == ["step", "step"]
    assert all(e["run_id"] == "run-1" and isinstance(e["t"], float) for e in events)
    assert events[1]["loss"] is None and events[1]["extra"] == {"x": [None, 1.0]}
    for line in path.read_text().splitlines():  # no NaN/Infinity tokens anywhere
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_unknown_event_type_is_refused(tmp_path):
    with EventWriter(tmp_path / "events.jsonl", "r") as writer, pytest.raises(ValueError, match="unknown"):
        writer.emit("stepp", epoch=0)


def test_writer_never_overwrites_an_existing_stream(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "run_start"}\n')
    with pytest.raises(FileExistsError):
        EventWriter(path, "r")
    assert path.read_text() == '{"type": "run_start"}\n'


def test_torn_last_line_is_ignored_but_a_torn_middle_is_an_error(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"step","step":0}\n{"type":"step","st')
    assert [e["step"] for e in read_events(path)] == [0]
    path.write_text('{"type":"step","st\n{"type":"step","step":1}\n')
    with pytest.raises(json.JSONDecodeError):
        read_events(path)


def test_write_json_atomic_replaces_in_one_step(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1, "b": math.nan})
    assert json.loads(target.read_text()) == {"a": 1, "b": None}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind
