"""`--engine auto` (the spec's default): Docker when it answers, else podman when it answers (a
cluster node where Docker is not allowed: the runs stay isolated), else the local Python; each
fallback said on the console. The chain with stand-ins here, and with the real podman while
DOCKER_HOST points at nothing (the whole reproduction under `auto`: tests/reproduce/test_podman_alone.py)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from runner.engine import docker_client
from runner.engine.docker_engine import DockerEngine
from runner.engine.local_engine import LocalEngine
from runner.engine.podman_engine import PodmanEngine
from runner.errors import EngineError
from runner.reproduce.session import _select_engine


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise EngineError("no container engine answers at unix:///nowhere", fix="start dockerd")

    monkeypatch.setattr(docker_client, "connect", refuse)


def _podman_answers(monkeypatch: pytest.MonkeyPatch, info: dict | None = None) -> list[PodmanEngine]:
    made: list[PodmanEngine] = []
    monkeypatch.setattr(PodmanEngine, "info", lambda self: {"store": {"graphDriverName": "overlay"}}
                        if info is None else info)

    def connect(cls, *a, **k):
        made.append(cls("/usr/bin/podman"))
        return made[-1]

    monkeypatch.setattr(PodmanEngine, "connect", classmethod(connect))
    return made


def _podman_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(cls, *a, **k):
        raise EngineError("podman is not installed (not on PATH)", field="--engine")

    monkeypatch.setattr(PodmanEngine, "connect", classmethod(connect))


def test_auto_prefers_docker_when_it_answers(monkeypatch):
    monkeypatch.setattr(docker_client, "connect", lambda *a, **k: object())
    _podman_answers(monkeypatch)
    console, out = _console()
    engine = _select_engine("auto", console)
    assert isinstance(engine, DockerEngine) and out.getvalue() == ""


def test_auto_takes_podman_where_docker_does_not_answer(monkeypatch):
    _no_docker(monkeypatch)
    made = _podman_answers(monkeypatch)
    console, out = _console()
    engine = _select_engine("auto", console)
    assert engine is made[0] and engine.isolated and engine.docker is None  # images: podman's own storage
    said = out.getvalue()
    assert "no Docker engine answers: podman runs the images" in said and "NOT isolated" not in said


def test_auto_falls_back_to_the_local_python_when_neither_answers(monkeypatch):
    _no_docker(monkeypatch)
    _podman_absent(monkeypatch)
    console, out = _console()
    engine = _select_engine("auto", console)
    assert isinstance(engine, LocalEngine) and not engine.isolated
    assert "NOT isolated" in out.getvalue()


def test_auto_passes_over_a_podman_that_cannot_open_its_storage(monkeypatch):
    """`podman version` answers, `podman info` does not (say a rootless user without subordinate
    ids): every run would fail in it, so auto goes on to the local Python and says why."""
    _no_docker(monkeypatch)
    _podman_answers(monkeypatch, info={})
    console, out = _console()
    engine = _select_engine("auto", console)
    assert isinstance(engine, LocalEngine)
    assert "`podman info` fails" in out.getvalue() and "NOT isolated" in out.getvalue()


def test_a_named_engine_never_falls_back(monkeypatch):
    _no_docker(monkeypatch)
    _podman_answers(monkeypatch)
    with pytest.raises(EngineError, match="no container engine answers"):
        _select_engine("docker", _console()[0])
    _podman_absent(monkeypatch)
    with pytest.raises(EngineError, match="podman is not installed"):
        _select_engine("podman", _console()[0])


@pytest.mark.podman
def test_auto_finds_the_real_podman_where_docker_is_unreachable(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    console, out = _console()
    engine = _select_engine("auto", console)
    assert isinstance(engine, PodmanEngine) and engine.version().get("Version")
    assert "no Docker engine answers" in out.getvalue()
