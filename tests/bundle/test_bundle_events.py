"""Reading events.jsonl: torn and invalid lines, both spellings of the kind, fast and slow paths agree."""

from __future__ import annotations

import json

import pytest

from runner.bundle.events import _slow, parse_events, read_events, split_torn
from runner.bundle.summary import outcome

START = {"type": "run_start", "t": 1.0, "run_id": "r", "build": {"cuda": None}, "devices": [{"name": "cpu"}]}
END = {"type": "run_end", "t": 9.0, "run_id": "r", "status": "ok", "reason": None, "error": None, "wall_s": 8.0}


def step(i, **kw):
    return {"type": "step", "t": 2.0 + i, "run_id": "r", "epoch": 0, "step": i, "global_step": i,
            "loss": 2.0 - i / 10, "lr": 0.1, "batch_size": 32, "data_time_s": 0.01, "compute_time_s": 0.1,
            "warmup": i < 1} | kw


def jsonl(*events) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)


def test_a_whole_file():
    log = parse_events(jsonl(START, step(0), step(1), {"type": "epoch", "epoch": 0}, END), "r")
    assert [e["type"] for e in log.events] == ["run_start", "epoch", "run_end"]
    assert log.events[0]["devices"] == [{"name": "cpu"}]  # other events keep their whole structure
    assert log.steps.column("loss").to_pylist() == [2.0, 1.9]
    assert log.steps.column("run_id").to_pylist() == ["r", "r"]
    assert not log.truncated and log.skipped_lines == []


def test_a_torn_last_line_is_dropped_and_kept_aside():
    data = jsonl(START, step(0), step(1))
    log = parse_events(data + b'{"type":"step","t":3.0,"ep', "r")
    assert log.truncated and log.torn == b'{"type":"step","t":3.0,"ep'
    assert log.steps.num_rows == 2 and log.last("run_end") is None
    status, reason, _ = outcome(log, "ok", None)
    assert status == "failed" and "without run_end" in reason and "torn" in reason


def test_an_unterminated_but_complete_last_line_is_kept():
    data = jsonl(START, step(0)) + json.dumps(END).encode()
    log = parse_events(data, "r")
    assert not log.truncated and log.last("run_end")["status"] == "ok"
    assert split_torn(b"") == (b"", None)


def test_invalid_lines_in_the_middle_are_skipped_and_counted():
    data = jsonl(START, step(0)) + b"garbage\n[1,2]\n\n   \n" + jsonl(step(1), END)
    log = parse_events(data, "r")
    assert log.skipped_lines == [3, 4]
    assert log.steps.num_rows == 2 and len(log.events) == 2


def test_the_brief_spelling_event_and_odd_values():
    data = jsonl({"event": "run_start", "t": 1}, {"event": "step", "epoch": 0, "step": 0, "loss": None},
                 step(1, loss="not a number"), step(2, warmup="yes"))
    log = parse_events(data, "r")  # Arrow refuses the strings: the slow path reads what it can
    assert [e.get("event") for e in log.events] == ["run_start"]
    assert log.steps.column("loss").to_pylist() == [None, None, 1.8]
    assert log.steps.column("warmup").to_pylist() == [None, False, None]


@pytest.mark.parametrize("extra", [b"", b"\n\n", b" \n"])
def test_fast_and_slow_paths_agree(extra):
    data = jsonl(START, *(step(i) for i in range(50))) + extra + jsonl(step(50, loss=None), END)
    fast = parse_events(data, "r")
    slow = _slow(split_torn(data)[0], "r")
    assert fast.steps.equals(slow.steps)
    assert fast.events == slow.events and fast.event_spans == slow.event_spans


def test_a_missing_file_is_an_empty_log(tmp_path):
    log = read_events(tmp_path / "none.jsonl", "r")
    assert log.events == [] and log.steps.num_rows == 0
    assert outcome(log, "failed", "image missing") == (
        "failed", "image missing; no events were recorded (the workload did not start)", None)


def test_outcomes():
    ok = parse_events(jsonl(START, END), "r")
    assert outcome(ok, "ok", None) == ("ok", None, None)
    assert outcome(ok, "failed", "time limit 600 s") == ("failed", "time limit 600 s", None)
    failed = parse_events(jsonl(START, END | {"status": "failed", "reason": "diverged", "error": "nan"}), "r")
    assert outcome(failed, "ok", None) == ("failed", "diverged", "nan")


def test_plain_step_lines_are_recognised():
    assert parse_events(jsonl(START, step(0), step(1, loss=None), END), "r").steps_plain is True
    for odd in (step(1, note="text"), step(1, extra=5), step(1, run_id="other")):
        assert parse_events(jsonl(START, step(0), odd, END), "r").steps_plain is False, odd
    assert parse_events(jsonl(START, {k: v for k, v in step(1).items() if k != "lr"}), "r").steps_plain is False
