"""The cluster case in full: a NON-root user with rootless podman and no Docker submits a spec to
the real Slurm cluster with `--ship-images`, and the compute node, whose podman storage lacks the
image, loads it from the archive on the shared filesystem and runs it rootless inside the job.

The login node and the compute node are one machine here, so their podman storages are made to
differ the way they do on a cluster: the user's runner (a venv of its own on the "shared"
filesystem, as a cluster user would install it) submits with XDG_DATA_HOME and XDG_RUNTIME_DIR
pointing at a "login node" podman storage that holds the imported image (rootless podman 4.3 does
not read CONTAINERS_STORAGE_CONF); the job runs with `--export=NONE`, so the node's podman uses
the user's default storage, which does not hold it.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reproduce.test_podman_rootless import USER, _as_user
from tests.reproduce.test_podman_rootless_reproduce import export_for_user, user_bundle_run, user_workdir

pytestmark = [pytest.mark.slurm, pytest.mark.podman, pytest.mark.docker, pytest.mark.slow]


def _user_venv(work: Path) -> Path:
    """A venv of the user's (no pip) whose .pth puts the copied runner and its dependencies on the path:
    the batch script runs this Python on the node, with no environment from the submitting shell."""
    venv = work / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "runner-user.pth").write_text(f"{work / 'code'}\n{work / 'site'}\n")
    return venv / "bin" / "python"


def test_a_rootless_user_ships_the_image_to_a_node_that_lacks_it(cpu_images):
    work = user_workdir("runner-rootless-slurm-")
    image_id = cpu_images["pytorch"]
    login = {"XDG_DATA_HOME": str(work / "login-data"), "XDG_RUNTIME_DIR": str(work / "login-run")}
    for folder in login.values():
        Path(folder).mkdir(mode=0o700)
    try:
        python = _user_venv(work)
        archive = export_for_user(work)  # the folder is the user's from here on

        def as_user(*argv: str, login_storage: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
            env = login if login_storage else {}
            return subprocess.run(_as_user(*argv, env=env), cwd=work, capture_output=True, text=True,
                                  timeout=timeout)

        imported = as_user(str(python), "-m", "runner.cli", "images", "import", str(archive), "--engine", "podman")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        archive.unlink()
        as_user("podman", "rmi", "--force", image_id, login_storage=False)  # the node's storage lacks it
        assert as_user("podman", "image", "exists", image_id, login_storage=False).returncode != 0

        proc = as_user(str(python), "-m", "runner.cli", "reproduce", "spec.yaml", "--engine", "podman",
                       "--executor", "slurm", "--ship-images", "--cache", str(work / "cache"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "archive for the nodes written" in proc.stdout, proc.stdout

        bundle, run = user_bundle_run(work)
        assert run["image_id"] == image_id and run["engine"] == "podman"
        (env,) = (json.loads(p.read_text())["environment"] for p in (bundle / "runs").glob("*/environment.json"))
        assert env["executor"] == "slurm" and env["slurm_state"] == "COMPLETED"
        image = env["node"]["image"]
        assert image["source"] == "archive" and image["id"] == image_id and image["load_s"] > 0
        assert env["node"]["slurm"]["job_id"]
        engine = json.loads((bundle / "environment" / "engine.json").read_text())
        assert engine["rootless"] is True
        assert as_user("podman", "image", "exists", image_id, login_storage=False).returncode == 0  # loaded
        user = pwd.getpwnam(USER)
        assert {p.stat().st_uid for p in [bundle, *bundle.rglob("*")]} == {user.pw_uid}
    finally:
        for storage in (True, False):
            subprocess.run(_as_user("podman", "rmi", "--force", image_id, env=login if storage else {}),
                           capture_output=True, timeout=300)
        shutil.rmtree(work, ignore_errors=True)
