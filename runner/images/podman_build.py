"""Building and running throwaway containers with podman's CLI, for the image pipeline where podman
runs and no Docker engine does (runner.images.podman_store.PodmanStore).

`podman build` (buildah inside) takes the same Dockerfiles and build context as Docker's classic
builder; the options that make the two builds the same recipe:
- `--format docker`: a Docker image config (labels, env, the architecture) as Docker writes it, so
  the image exports as a docker-archive whose ID is podman's and Docker loads it unchanged;
- `--network none` for the framework layer (pip offline, from the build context), podman's default
  network for the system layer (apt reaches Debian's archive), as Docker's bridge;
- `--pull=never`: the base and system layer are podman's own; nothing is fetched behind our back;
- `--layers` (podman's default, said anyway): unchanged steps come from podman's layer cache, so an
  unchanged rebuild gives the same image ID (checked here);
- `--iidfile`: the image ID, written by podman itself, rather than parsed from its output.
buildah adds one label of its own (`io.buildah.version`); the labels runner judges are ours.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import EngineError, ImageError
from runner.images.containers import CommandResult

if TYPE_CHECKING:
    from runner.engine.podman_engine import PodmanEngine

Log = Callable[[str], None]
BUILD_TIMEOUT_S = 3600
# podman's progress lines; the others (a RUN step's own output) are what explain a failure
_PROGRESS = ("STEP ", "--> ", "COMMIT", "Successfully tagged", "[Warning] one or more build args")


def build_argv(engine: PodmanEngine, context: Path, iidfile: Path, *, buildargs: dict[str, str], network: bool,
               platform: str, nocache: bool) -> list[str]:
    """The `podman build` command line (argv, no shell: build arguments are never parsed by one)."""
    argv = [engine.podman, "build", "--file", str(context / "Dockerfile"), "--format", "docker", "--pull=never",
            "--layers", "--force-rm", "--platform", platform, "--iidfile", str(iidfile)]
    if not network:
        argv += ["--network", "none"]
    if nocache:
        argv.append("--no-cache")
    for key, value in buildargs.items():
        argv += ["--build-arg", f"{key}={value}"]
    return [*argv, str(context)]


def podman_build(engine: PodmanEngine, what: str, context: Path, *, buildargs: dict[str, str], network: bool,
                 platform: str, nocache: bool = False, log: Log = lambda _line: None,
                 timeout: float = BUILD_TIMEOUT_S) -> str:
    """Run one `podman build`, streaming its output to `log`; returns the image ID (sha256:...)."""
    from runner.engine.podman_engine import INSTALL_FIX, work_dir

    recent: deque[str] = deque(maxlen=3)
    with tempfile.TemporaryDirectory(prefix="iid-", dir=work_dir()) as tmp:
        iidfile = Path(tmp) / "iid"
        argv = build_argv(engine, context, iidfile, buildargs=buildargs, network=network, platform=platform,
                          nocache=nocache)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, errors="replace", cwd=work_dir())
        except FileNotFoundError:
            raise ImageError(f"podman is not installed ({engine.podman})", fix=INSTALL_FIX) from None
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                if line.strip():
                    log(line)
                    if not line.startswith(_PROGRESS):
                        recent.append(" ".join(line.split())[:200])
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise ImageError(f"building {what} with podman did not end within {timeout:g} s",
                             fix="read the build output above; nothing was tagged")
        if code != 0:
            said = " | ".join(recent) or f"podman build exited {code}"
            raise ImageError(f"building {what} with podman failed: {said}",
                             fix="read the build output above; nothing was tagged")
        image_id = iidfile.read_text().strip() if iidfile.is_file() else ""
    if not image_id:
        raise ImageError(f"podman reported no image id for {what}", fix="read the build output above")
    return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def podman_run(engine: PodmanEngine, image: str, argv: list[str], *, network: bool = False, timeout: float = 1800,
               environment: dict[str, str] | None = None) -> CommandResult:
    """Run `argv` in a throwaway podman container of `image` (entrypoint cleared, removed after);
    never raises on a non-zero exit. The container gets open-file and process limits below the
    host's, as the podman engine's runs do (rootful podman's defaults are refused where the host
    lacks CAP_SYS_RESOURCE)."""
    from runner.engine.podman_engine import _ulimits

    name = f"runner-cmd-{uuid.uuid4().hex[:12]}"
    opts = ["--rm", "--name", name, "--pull", "never", "--entrypoint", "", *_ulimits(None)]
    if not network:
        opts += ["--network", "none"]
    for key, value in (environment or {}).items():
        opts += ["--env", f"{key}={value}"]
    try:
        proc = engine.cli("run", *opts, image, *argv, check=False, timeout=timeout)
    except EngineError:  # it did not answer in time: the container may still be there
        engine.cli("rm", "--force", name, check=False)
        raise
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)
