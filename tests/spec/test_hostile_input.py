"""Hostile spec files: each is refused in one line, exit 2, in under 2 s and 200 MB, nothing written.

Each case runs `runner plan` in its own process (the measurement is the child's own CPU time and
peak RSS from os.wait4, taken by a small wrapper process), so a hang or a memory blow-up is seen as
such, not as a test crash. The
2 s bound is on CPU time: five test suites share two cores here, so wall time is only bounded
loosely (10 s), enough to catch a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import EXPERIMENTS, REPO, files_under

MAX_CPU_S = 2.0
MAX_WALL_S = 10.0
MAX_RSS_BYTES = 200 * 1024 * 1024
MAX_LINE_CHARS = 1000
SMOKE = (EXPERIMENTS / "smoke.yaml").read_text()


def alias_bomb(levels: int) -> str:
    """The classic 'billion laughs': each level is a list of nine aliases to the one before."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _link_to_zero(p: Path) -> None:
    p.symlink_to("/dev/zero")


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    # name: (make the file at the path, text the one line must hold)
    "fifo": (_fifo, "is a FIFO"),
    "link-to-dev-zero": (_link_to_zero, "is a device"),
    "folder": (lambda p: p.mkdir(), "is a folder"),
    "alias-bomb-9-levels": (lambda p: p.write_text(alias_bomb(9)), "YAML an anchor"),
    "nested-100000": (lambda p: p.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n"), "nested more than 32"),
    "list-100000": (lambda p: p.write_text("name: x\nsweeps:\n" + "  - 1\n" * 100_000),
                    "more than 20000 entries"),
    "flow-list-100000": (lambda p: p.write_text("name: [" + "1," * 100_000 + "1]\n"), "more than 20000 entries"),
    "over-1-mb": (lambda p: p.write_text("description: '" + "x" * 1_000_001 + "'\n"), "1000000-byte limit"),
    # user text in the error line is cut short
    "key-200000-chars": (lambda p: p.write_text(SMOKE + "? " + "x" * 200_000 + "\n: 1\n"), "(200000 characters)"),
    "grid-key-200000-chars": (lambda p: p.write_text(SMOKE + "sweeps:\n  - name: a\n    grid:\n      ? "
                                                     + "z" * 200_000 + "\n      : [1]\n"), "(200000 characters)"),
    "freeze-prefix-200000-chars": (lambda p: p.write_text(SMOKE.replace(
        "init: he_normal_fan_out", "init: he_normal_fan_out\n  freeze: [" + "y" * 200_000 + "]")), "model.freeze"),
    "duplicate-key-5000-chars": (lambda p: p.write_text(SMOKE + ("? " + "q" * 5000 + "\n: 1\n") * 2),
                                 "duplicate key"),
    # Python refuses int() of more than 4300 digits: an 'internal error' before
    "int-5000-digits": (lambda p: p.write_text(SMOKE.replace("epochs: 4", "epochs: " + "1" * 5000)),
                        ":19: a number written with 5000 characters"),
    "int-key-5000-digits": (lambda p: p.write_text(SMOKE + "? " + "1" * 5000 + "\n: 1\n"), "a number written"),
}


# Measures the plan in a grandchild started by this small wrapper: on Linux a child's ru_maxrss
# includes the memory of the process it was forked from (the high-water mark is carried over at
# exec), so a child forked straight from a large pytest process would report pytest's size.
_MEASURE = ("import json, os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
            "_, status, ru = os.wait4(p.pid, 0); "
            "open(sys.argv[1], 'w').write(json.dumps([os.waitstatus_to_exitcode(status), "
            "ru.ru_utime + ru.ru_stime, ru.ru_maxrss]))")


def run_plan(spec: Path, cwd: Path, prelude: str = "") -> tuple[int, str, float, float, int]:
    """(exit code, stderr, CPU seconds, wall seconds, peak RSS bytes) of `runner plan SPEC` in a child."""
    out, err, measured = cwd / ".out", cwd / ".err", cwd / ".measured"
    code = prelude + "from runner.cli.main import main; main()"
    with out.open("wb") as o, err.open("wb") as e:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, str(measured), sys.executable, "-c", code,
                                 "plan", str(spec)], cwd=cwd, stdout=o, stderr=e, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        # a hang fails the time assertion instead of the suite
        killer = threading.Timer(30, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        proc.wait()
        killer.cancel()
        wall = time.perf_counter() - t0
    text = err.read_text()
    out.unlink()
    err.unlink()
    if not measured.exists():  # killed by the timer
        return -9, text, wall, wall, 0
    returncode, cpu, maxrss_kib = json.loads(measured.read_text())
    measured.unlink()
    return returncode, text, cpu, wall, maxrss_kib * 1024  # Linux reports KiB


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_spec_is_refused_cheaply(case: str, tmp_path: Path):
    make, expect = CASES[case]
    spec = tmp_path / "in" / "spec.yaml"
    spec.parent.mkdir()
    make(spec)
    work = tmp_path / "work"
    work.mkdir()
    before = files_under(work)
    code, err, cpu, wall, rss = run_plan(spec, work)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(spec) in lines[0] and expect in lines[0], lines[0]
    assert "Traceback" not in err and len(lines[0]) < MAX_LINE_CHARS, lines[0][:300]
    assert files_under(work) == before  # nothing written (no results/)
    assert cpu < MAX_CPU_S and wall < MAX_WALL_S, f"{case}: {cpu:.2f} s CPU, {wall:.2f} s wall"
    assert rss < MAX_RSS_BYTES, f"{case}: {rss / 2**20:.0f} MB"


@pytest.mark.parametrize("case", ["alias-bomb-9-levels", "nested-100000", "list-100000"])
def test_pure_python_scanner_keeps_the_limits(case: str, tmp_path: Path):
    """Without libyaml (PyYAML built without it) the same limits hold, as cheaply."""
    make, _ = CASES[case]
    spec = tmp_path / "spec.yaml"
    make(spec)
    code, err, cpu, wall, rss = run_plan(spec, tmp_path, prelude="import yaml; del yaml.CSafeLoader; ")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert cpu < MAX_CPU_S and wall < MAX_WALL_S and rss < MAX_RSS_BYTES, (cpu, wall, rss)


def test_dev_zero_itself_is_refused(tmp_path: Path):
    code, err, _, wall, _ = run_plan(Path("/dev/zero"), tmp_path)
    assert code == 2 and "is a device" in err and wall < MAX_WALL_S


def test_a_real_spec_still_plans_within_the_same_budget(tmp_path: Path):
    """The budget is not met by refusing everything: the smoke spec plans in it."""
    code, err, cpu, wall, rss = run_plan(EXPERIMENTS / "smoke.yaml", tmp_path)
    assert code == 0, err
    assert cpu < MAX_CPU_S and wall < MAX_WALL_S and rss < MAX_RSS_BYTES
