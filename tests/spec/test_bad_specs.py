"""The malformed-spec corpus: each gets exit 2, one line naming the problem, no traceback, no files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import files_under

BAD = sorted((Path(__file__).parent.parent / "specs" / "bad").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    return first.removeprefix("# expect:").strip() if first.startswith("# expect:") else ""


def test_corpus_is_large_enough():
    assert len(BAD) >= 25


@pytest.mark.parametrize("spec", BAD, ids=lambda p: p.stem)
def test_bad_spec_is_refused_in_one_line(spec: Path, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    result = cli("plan", spec)
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(spec) in line  # names the file
    assert "Traceback" not in result.err + result.out
    assert "fix:" in line
    expect = _expected(spec)
    if expect:
        assert expect in line, f"expected {expect!r} in {line!r}"
    assert files_under(tmp_path) == before  # nothing written


def test_debug_flag_shows_traceback(cli):
    result = cli("--debug", "plan", BAD[0])
    assert result.code == 2
    assert "Traceback" in result.err
