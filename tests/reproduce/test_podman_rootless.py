"""The podman engine run by a NON-root user (rootless podman, as on clusters without Docker).

Without podman: which limits hold where (rootful; rootless on cgroup v1; rootless on v2 with or
without delegated controllers), the rootless options (--userns=keep-id, the host user, no pids
limit podman would ignore), and the refusal of a limit podman would ignore: by `run()` before
anything starts, and by the session before anything is written (one line, exit 2).

Against the real rootless podman: the tests run as root, so they run the engine AS the user
`runner-rootless` (made here and by .ci/provision.sh) with the system python3 and a copy of the
`runner` package it can read. A run through PodmanEngine.run() executes a shell probe in a small
Debian image (the runner images are not needed for the sandbox): the user's own uid inside, /out
written and readable by the user after, data/code/config read-only, no network, CapEff 0;
describe() says rootless, the cgroup version and which limits hold; memory and cpus are refused
where rootless podman would ignore them (this machine: cgroup v1, where it ignores all limits).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.engine.podman_engine import PodmanEngine, PodmanHost, sandbox_options
from runner.engine.sandbox import container_user
from runner.errors import EngineError
from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE
from tests.reproduce.test_podman_sandbox import _request

USER = "runner-rootless"
ROOTLESS_IMAGE = "runner-test/debian-rootless:bookworm"
BASE_LABEL = "io.runner.test.base"
BUNDLE = "test-podman-rootless"
V1 = PodmanHost(rootless=True, cgroups="v1")

# Run inside by bash (the Debian base has no python): one `key=value` line per fact, into /out.
PROBE = r"""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
try() { if ( eval "$2" ) 2>/dev/null; then echo "$1=allowed"; else echo "$1=refused"; fi; }
{
  echo "uid=$(id -u)"; echo "gid=$(id -g)"
  try write_data 'echo x > /data/x'; try write_code 'echo x > /opt/runner/x'
  try write_config 'echo x > /run/runner.json'; try write_rootfs 'echo x > /x'; try write_tmp 'echo x > /tmp/x'
  try network 'exec 3<>/dev/tcp/192.0.2.1/80'
  echo "interfaces=$(awk -F: 'NR > 2 {gsub(/ /, "", $1); print $1}' /proc/net/dev | sort | xargs)"
  grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d ' \t' | sed 's/:/=/'
  echo "mounts_ro=$(awk '$2 ~ /^(\/|\/data|\/opt\/runner|\/run\/runner.json|\/out)$/ \
    && $4 ~ /(^|,)ro(,|$)/ {print $2}' /proc/self/mounts | sort | xargs)"
  echo "nproc=$(awk '/Max processes/ {print $3}' /proc/self/limits)"
} > /out/probe.txt
"""

# Run as the rootless user by the system python3: the engine's own run, describe and refusals.
SCRIPT = r'''
import dataclasses, json, os, sys
from pathlib import Path
from types import SimpleNamespace

from runner.engine.base import RunRequest
from runner.engine.podman_engine import PodmanEngine
from runner.errors import EngineError

work, image, probe, bundle = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
engine = PodmanEngine.connect()
data, out, config = work / "data", work / "out", work / "run.json"
data.mkdir()
(data / "train_x.npy").write_bytes(b"\x93NUMPY")
out.mkdir()
config.write_text("{}")
request = RunRequest(run_id="rootless", bundle_id=bundle, framework="pytorch", variant="cpu", config_path=config,
                     data_dir=data, out_dir=out, code_dir=work / "code", image_id=image)
launch = dataclasses.replace(engine.launch(request), argv=("/bin/bash", "-c", probe))
outcome = engine.run(launch).finish()
probe_file = out / "probe.txt"
result = {"uid": os.getuid(), "gid": os.getgid(), "describe": engine.describe(),
          "outcome": {"ok": outcome.ok, "exit_code": outcome.exit_code, "reason": outcome.reason, "log": outcome.log},
          "probe": probe_file.read_text(), "probe_owner": probe_file.stat().st_uid, "refused": {}}
for name, value in (("memory", "512m"), ("cpus", 1.0)):
    limited = dataclasses.replace(launch, limits=dataclasses.replace(launch.limits, **{name: value}))
    try:
        result["refused"][name] = f"ran: {engine.run(limited).finish().ok}"
    except EngineError as e:
        result["refused"][name] = e.describe()
plan = SimpleNamespace(spec_path=work / "spec.yaml",
                       runs=[SimpleNamespace(resolved={"resources": {"cpus": None, "memory": "2g"}})])
try:
    engine.check_limits(plan)
    result["plan_check"] = "accepted"
except EngineError as e:
    result["plan_check"] = e.describe()
result["out_after"] = sorted(p.name for p in out.iterdir())
result["left"] = engine.cli("ps", "--all", "--quiet", "--filter", f"label=io.runner.bundle={bundle}").stdout.split()
print(json.dumps(result))
'''


# -- without podman -----------------------------------------------------------------------------

def test_which_limits_podman_enforces():
    assert all(PodmanHost(rootless=False, cgroups="v1").enforced(k) for k in ("memory", "cpus", "pids"))
    assert not any(V1.enforced(k) for k in ("memory", "cpus", "pids"))
    v2 = PodmanHost(rootless=True, cgroups="v2", controllers=("memory", "pids"))
    assert [v2.enforced(k) for k in ("memory", "cpus", "pids")] == [True, False, True]
    assert "cpu cgroup controller is not delegated" in v2.why_not("cpus")
    info = {"host": {"security": {"rootless": True}, "cgroupVersion": "v2", "cgroupControllers": ["cpu"]}}
    assert PodmanHost.from_info(info) == PodmanHost(rootless=True, cgroups="v2", controllers=("cpu",))


def test_rootless_options_keep_the_host_user_and_drop_the_ignored_pids_limit(tmp_path):
    launch = PodmanEngine(host=V1).launch(_request(tmp_path, "sha256:" + "1" * 64))
    opts = sandbox_options(launch, V1)
    pairs = {(a, b) for a, b in zip(opts, opts[1:], strict=False)}
    uid, gid = container_user()
    assert "--userns=keep-id" in opts and ("--user", f"{uid}:{gid}") in pairs
    assert {("--network", "none"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges")} <= pairs
    assert "--read-only" in opts and "--pids-limit" not in opts
    assert any(a == "--ulimit" and b.startswith("nproc=") for a, b in pairs)  # the process cap that stays
    rootful = sandbox_options(launch)
    assert "--userns=keep-id" not in rootful
    assert ("--pids-limit", "4096") in set(zip(rootful, rootful[1:], strict=False))


def test_run_refuses_a_limit_podman_would_ignore_before_anything_starts(tmp_path):
    engine = PodmanEngine("/nonexistent/podman", host=V1)  # any podman call would fail with "not installed"
    launch = engine.launch(_request(tmp_path, "sha256:" + "1" * 64, memory="512m"))
    with pytest.raises(EngineError) as e:
        engine.run(launch)
    line = e.value.describe()
    assert line.startswith("resources.memory: podman here cannot enforce resources.memory (512m)")
    assert "cgroup v1 ignores resource limits" in line and "Delegate=yes" in line
    assert "--engine docker" in line and "--engine local" in line
    assert list(launch.out_dir.iterdir()) == []


def test_the_plan_check_names_the_spec_field():
    plan = SimpleNamespace(spec_path=Path("s.yaml"), runs=[
        SimpleNamespace(resolved={"resources": {"cpus": None, "memory": None}}),
        SimpleNamespace(resolved={"resources": {"cpus": 2.0, "memory": None}})])
    with pytest.raises(EngineError) as e:
        PodmanEngine(host=V1).check_limits(plan)
    assert e.value.field == "resources.cpus" and e.value.describe().startswith("s.yaml: resources.cpus: ")
    PodmanEngine(host=PodmanHost(rootless=False, cgroups="v1")).check_limits(plan)  # rootful: all hold


def test_reproduce_refuses_it_before_anything_is_written(cli, tmp_path, monkeypatch):
    import runner.reproduce.session as session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "_select_engine", lambda choice, console: PodmanEngine(host=V1))
    result = cli("reproduce", str(REPO / "tests" / "specs" / "tiny.yaml"), "--engine", "podman")
    assert result.code == 2 and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "tiny.yaml: resources.memory: podman here cannot enforce resources.memory (2g)" in result.err
    assert list(tmp_path.iterdir()) == []


# -- the real rootless podman -------------------------------------------------------------------

def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300, **kw)


def _as_user(*argv: str, env: dict[str, str] | None = None, **kw) -> list[str]:
    """argv run as the rootless user with a clean environment (runuser keeps root's otherwise)."""
    home = pwd.getpwnam(USER).pw_dir
    clean = {"HOME": home, "USER": USER, "LOGNAME": USER, "PATH": "/usr/local/bin:/usr/bin:/bin"} | (env or {})
    return ["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in clean.items()], *argv]


def _ensure_user() -> None:
    """The rootless user with subordinate id ranges (as .ci/provision.sh makes it)."""
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        _run(["useradd", "--create-home", USER])
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if not any(line.startswith(f"{USER}:") for line in Path(path).read_text().splitlines()):
            _run(["usermod", flag, "1065536-1131071", USER])


def _rootless_image() -> str:
    """The Debian base re-imported from a container export: a base made from mktemp's 0700 folder
    has `/` 0700, which rootless podman's vfs storage keeps (no non-root user could run in it).
    Made once per base (a label names it), then loaded into the user's podman storage."""
    base = _run(["docker", "image", "inspect", "-f", "{{.Id}}", LOCAL_BASE]).stdout.strip()
    have = subprocess.run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{BASE_LABEL}"}}}}',
                           ROOTLESS_IMAGE], capture_output=True, text=True)
    if have.stdout.strip() != base:
        container = _run(["docker", "create", base, "/bin/true"]).stdout.strip()
        try:
            export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
            _run(["docker", "import", "--change", f"LABEL {BASE_LABEL}={base}", "--change",
                  "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", "-", ROOTLESS_IMAGE], stdin=export.stdout)
            assert export.wait() == 0
        finally:
            _run(["docker", "rm", container])
    image = _run(["docker", "image", "inspect", "-f", "{{.Id}}", ROOTLESS_IMAGE]).stdout.strip()
    if subprocess.run(_as_user("podman", "image", "exists", image), capture_output=True).returncode != 0:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        _run(_as_user("podman", "load"), stdin=save.stdout)
        assert save.wait() == 0
    return image


@pytest.fixture(scope="module")
def rootless_work() -> Iterator[Path]:
    """A folder the user owns (pytest's tmp folders are root's, 0700), with a copy of `runner`."""
    if os.geteuid() != 0:
        pytest.skip("runs the engine as another user: needs root (runuser)")
    _ensure_user()
    work = Path(tempfile.mkdtemp(prefix="runner-rootless-"))
    try:
        shutil.copytree(REPO / "runner", work / "code" / "runner", ignore=shutil.ignore_patterns("__pycache__"))
        _run(["chown", "-R", f"{USER}:{USER}", str(work)])
        work.chmod(0o755)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def rootless(rootless_work: Path) -> dict:
    """One rootless session of the engine: a probe run, describe(), the refusals (as the user)."""
    image = _rootless_image()
    script = rootless_work / "rootless_engine.py"
    script.write_text(SCRIPT)
    env = {"PYTHONPATH": str(rootless_work / "code"), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(_as_user("/usr/bin/python3", str(script), str(rootless_work), image, PROBE, BUNDLE,
                                   env=env), capture_output=True, text=True, timeout=300, cwd=rootless_work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["report"] = dict(line.split("=", 1) for line in result["probe"].splitlines())
    return result


def _cgroups_here() -> str:
    return "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"


@pytest.mark.podman
@pytest.mark.docker
def test_a_rootless_run_is_the_host_user_in_the_same_sandbox(rootless, rootless_work):
    user = pwd.getpwnam(USER)
    assert rootless["uid"] == user.pw_uid != 0
    assert rootless["outcome"]["ok"], rootless["outcome"]
    report = rootless["report"]
    assert (report["uid"], report["gid"]) == (str(user.pw_uid), str(user.pw_gid))  # keep-id: the user itself
    for target in ("write_data", "write_code", "write_config", "write_rootfs"):
        assert report[target] == "refused", target
    assert report["write_tmp"] == "allowed"
    assert report["network"] == "refused" and report["interfaces"] == "lo"
    assert report["CapEff"] == "0000000000000000" and report["NoNewPrivs"] == "1"
    assert report["mounts_ro"] == "/ /data /opt/runner /run/runner.json"
    assert 0 < int(report["nproc"]) <= 4096  # the process cap left where no pids cgroup limit holds
    # /out is the user's: written as it inside, read by it after (the script read probe.txt), nothing chowned
    assert rootless["probe_owner"] == user.pw_uid == (rootless_work / "out" / "probe.txt").stat().st_uid
    assert not (rootless_work / "data" / "x").exists()
    assert rootless["left"] == []  # every container removed


@pytest.mark.podman
@pytest.mark.docker
def test_describe_says_rootless_and_which_limits_hold(rootless):
    doc = rootless["describe"]
    assert doc["kind"] == "podman" and doc["rootless"] is True and doc["cgroups"] == _cgroups_here()
    assert doc["user"] == "the host user (--userns=keep-id)"
    host = PodmanHost(rootless=True, cgroups=doc["cgroups"], controllers=tuple(doc["cgroup_controllers"]))
    assert doc["limits_enforced"] == {k: host.enforced(k) for k in ("memory", "cpus", "pids")}
    if _cgroups_here() == "v1":  # this machine: rootless podman ignores every limit
        assert doc["limits_enforced"] == {"memory": False, "cpus": False, "pids": False}
    assert ("pids_limit" in doc) is (not doc["limits_enforced"]["pids"])


@pytest.mark.podman
@pytest.mark.docker
def test_rootless_limits_it_would_ignore_are_refused(rootless):
    enforced = rootless["describe"]["limits_enforced"]
    for name, shown in (("memory", "512m"), ("cpus", "1.0")):
        said = rootless["refused"][name]
        if enforced[name]:
            assert said == "ran: True"
            continue
        assert said.startswith(f"resources.{name}: podman here cannot enforce resources.{name} ({shown})"), said
        assert "(fix: run podman as root" in said and len(said.splitlines()) == 1
    if not enforced["memory"]:
        assert "spec.yaml: resources.memory: podman here cannot enforce" in rootless["plan_check"]
    assert rootless["out_after"] == ["probe.txt"]  # a refused run wrote nothing


@pytest.mark.podman
def test_rootful_podman_enforces_every_limit():
    doc = PodmanEngine.connect().describe()
    assert doc["rootless"] is (os.geteuid() != 0)
    if not doc["rootless"]:
        assert doc["limits_enforced"] == {"memory": True, "cpus": True, "pids": True} and "pids_limit" not in doc
