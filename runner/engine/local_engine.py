"""The local engine: the same workload in a subprocess of the host's Python, no container.

Chosen explicitly, or automatically when no container engine answers, so the main job still
runs on a fresh machine. It is NOT isolated: no image digest, the host's packages, the host's
network. The bundle says so plainly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner.engine.base import STOP_GRACE_S, Launch, Mount, RunOutcome, RunRequest, classify_exit, workload_env
from runner.engine.interpreters import framework_of, python_for
from runner.errors import EngineError


class LocalRun:
    def __init__(self, launch: Launch, proc: subprocess.Popen, log_path: Path,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self._launch, self._proc, self._log_path = launch, proc, log_path
        self._grace = stop_grace_s
        self._started = time.monotonic()
        self._killed: str | None = None

    @property
    def sample_target(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def kill(self, reason: str) -> None:
        """SIGTERM to the run's process group (the workload records run_end "interrupted"),
        SIGKILL if it has not exited after the grace period."""
        self._killed = self._killed or reason
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                self._sigkill(f"did not stop within {self._grace:g} s of SIGTERM: killed (SIGKILL)")
            except KeyboardInterrupt:  # a second Ctrl-C while waiting: do not leave the process behind
                self._sigkill("interrupted again: killed (SIGKILL)")
                raise

    def finish(self) -> RunOutcome:
        try:
            try:
                exit_code = self._proc.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                self._sigkill(f"still running {self._grace:g} s after it should have ended: killed (SIGKILL)")
                exit_code = self._proc.wait(timeout=self._grace)
        except KeyboardInterrupt:
            self.kill("interrupted")
            raise
        except subprocess.TimeoutExpired:
            raise EngineError(f"process {self._proc.pid} of run {self._launch.run_id} did not exit "
                              f"{self._grace:g} s after SIGKILL",
                              fix=f"check it: ps -o stat,cmd -p {self._proc.pid}") from None
        log = self._log_path.read_text(encoding="utf-8", errors="replace")
        self._log_path.unlink(missing_ok=True)
        return RunOutcome(exit_code=exit_code, reason=classify_exit(exit_code, self._killed), log=log,
                          wall_s=time.monotonic() - self._started)

    def _sigkill(self, note: str) -> None:
        self._killed = f"{self._killed}; {note}" if self._killed else note
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass  # the group is gone already: nothing to stop
        except PermissionError as e:
            raise EngineError(f"cannot signal run {self._launch.run_id} (process group {self._proc.pid}): "
                              f"{e.strerror}", fix="check who owns the process") from None


class LocalEngine:
    name = "local"
    isolated = False

    def __init__(self, python: str | None = None, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.python = python or sys.executable
        self.stop_grace_s = stop_grace_s  # SIGTERM -> SIGKILL, and how long finish() waits for an exit

    def describe(self) -> dict:
        return {"kind": "local", "isolated": False, "python": sys.version.split()[0],
                "note": "not isolated: host packages and network; no image digest"}

    def sampler_kwargs(self, target: object) -> dict:
        return {"pid": target}  # the process tree

    def workload_tool(self, image_id: str | None, argv: list[str], code_dir: Path, timeout: float = 600) -> str:
        """stdout of a describe-only workload command (info, models) in the local Python."""
        try:
            proc = run_workload_tool(argv, code_dir, timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EngineError(f"`{' '.join(argv)}` in the local Python failed: {type(e).__name__}: {e}",
                              fix="check the local Python (`runner doctor`)") from None
        if proc.returncode != 0:
            raise EngineError(f"`{' '.join(argv)}` in the local Python exited {proc.returncode}: "
                              f"{' '.join(proc.stderr.split())[-300:]}", fix="check the local Python")
        return proc.stdout

    def remove_leftovers(self, bundle_id: str) -> int:
        return 0  # each run is its own process group, stopped by its job

    def launch(self, request: RunRequest) -> Launch:
        """The host's interpreter (or the framework's own venv) with host paths; the mounts are
        recorded for the reader (nothing is mounted: the run sees the host's filesystem)."""
        weights = None if request.weights_path is None else request.weights_path.resolve()
        images = None if request.images_dir is None else request.images_dir.resolve()
        paths = [(request.code_dir, True), (request.data_dir, True), (request.config_path, True),
                 (request.out_dir, False)] + ([(weights, True)] if weights is not None else []) \
            + ([(images, True)] if images is not None else [])
        env = workload_env(request.threads, str(request.code_dir.resolve()), str(request.out_dir.resolve()))
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        if request.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in request.devices)
        python = python_for(request.framework, self.python)  # MXNet has its own venv (interpreters.py)
        argv = request.argv(str(request.config_path), str(request.data_dir), str(request.out_dir),
                            None if weights is None else str(weights), None if images is None else str(images))
        return Launch(run_id=request.run_id, bundle_id=request.bundle_id, engine=self.name, argv=(python, *argv),
                      env=env, mounts=tuple(Mount(p.resolve(), str(p.resolve()), ro) for p, ro in paths),
                      out_dir=request.out_dir.resolve(), workdir=str(request.out_dir.resolve()),
                      devices=request.devices, limits=request.limits)

    def start(self, request: RunRequest) -> LocalRun:
        return self.run(self.launch(request))

    def run(self, launch: Launch) -> LocalRun:
        log_path = launch.out_dir.parent / f".{launch.run_id}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                list(launch.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(launch.env),
                cwd=launch.workdir, start_new_session=True,  # own process group: Ctrl-C is ours to forward
            )
        return LocalRun(launch, proc, log_path, self.stop_grace_s)


def run_workload_tool(argv: list[str], code_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m runner.workload ...` (a describe-only command: `info`, `models`) in the host's
    Python, with the environment a run gets; `code_dir` holds the `runner` package."""
    env = workload_env(None, str(code_dir), "/tmp") | {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        python = python_for(framework_of(argv), sys.executable)
    except EngineError as e:  # the framework's own venv is missing: a failed command, like any other
        return subprocess.CompletedProcess([*argv], 2, "", e.describe() + "\n")
    return subprocess.run([python, *argv], capture_output=True, text=True, env=env, timeout=timeout)
