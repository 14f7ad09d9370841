"""The podman engine against the real podman: the Docker engine's sandbox, option for option
(probed from inside by a stand-in workload, and compared with Docker's), stops and time limits
that leave no container, an image podman lacks as a failed outcome. The option list itself is
checked without podman."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from runner.engine.base import RunRequest
from runner.engine.docker_engine import LABEL_BUNDLE, DockerEngine
from runner.engine.podman_engine import PodmanEngine, sandbox_options
from runner.errors import EngineError
from runner.reproduce.session import execute_run
from tests.reproduce.test_docker_sandbox import PROBE

# what the Docker probe reports, plus the process's own limits: capabilities, no_new_privs, pids, files
PROBE_LIMITS = PROBE + r'''
attempt("write_var_tmp", lambda: open("/var/tmp/x", "w").write("x"))  # podman mounts a tmpfs here unless told not to
attempt("write_run", lambda: open("/run/x", "w").write("x"))
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
report["cap_eff"] = status["CapEff"].strip()
report["no_new_privs"] = status["NoNewPrivs"].strip()
for p in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
    if os.path.exists(p):
        report["pids_max"] = open(p).read().strip()
report["mounts_ro"] = sorted(line.split()[1] for line in open("/proc/self/mounts")
                             if line.split()[1] in ("/", "/data", "/opt/runner", "/run/runner.json", "/out")
                             and "ro" in line.split()[3].split(","))
open(os.path.join(out, "probe.json"), "w").write(json.dumps(report))
'''
SLEEPER = "import time\ntime.sleep(600)\n"


def _code(tmp: Path, main: str) -> Path:
    code = tmp / "code"
    (code / "runner" / "workload").mkdir(parents=True)
    (code / "runner" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__init__.py").write_text("")
    (code / "runner" / "workload" / "__main__.py").write_text(main)
    return code


def _request(tmp: Path, image_id: str, main: str = PROBE_LIMITS, run_id: str = "probe", memory: str = "512m",
             **kw) -> RunRequest:
    data, out = tmp / "data", tmp / "out"
    data.mkdir(parents=True)
    (data / "train_x.npy").write_bytes(b"\x93NUMPY")
    out.mkdir()
    config = tmp / "run.json"
    config.write_text("{}")
    for p in (tmp, data, out):
        os.chmod(p, 0o755)
    return RunRequest(run_id=run_id, bundle_id="test-podman-sandbox", framework="pytorch", variant="cpu",
                      config_path=config, data_dir=data, out_dir=out, code_dir=_code(tmp, main),
                      image_id=image_id, memory=memory, cpus=1, **kw)


def _left(bundle_id: str = "test-podman-sandbox") -> list[str]:
    proc = subprocess.run(["podman", "ps", "--all", "--quiet", "--filter", f"label={LABEL_BUNDLE}={bundle_id}"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_options_mirror_the_docker_lockdown(tmp_path):
    """Every isolation option the Docker engine sets has its podman flag (no podman needed)."""
    launch = PodmanEngine().launch(_request(tmp_path, "sha256:" + "1" * 64))
    opts = sandbox_options(launch)
    pairs = {(a, b) for a, b in zip(opts, opts[1:], strict=False)}
    assert {("--network", "none"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges"),
            ("--pids-limit", "4096"), ("--memory", "512m"), ("--cpus", "1"), ("--shm-size", "1g")} <= pairs
    assert "--read-only" in opts and "--read-only-tmpfs=false" in opts
    assert ("--tmpfs", "/tmp:rw,size=1g,mode=1777") in pairs
    user = opts[opts.index("--user") + 1]
    assert not user.startswith("0:")
    volumes = [opts[i + 1] for i, a in enumerate(opts) if a == "--volume"]
    assert sorted(v.rsplit(":", 2)[1:] for v in volumes) == [
        ["/data", "ro"], ["/opt/runner", "ro"], ["/out", "rw"], ["/run/runner.json", "ro"]]
    assert not any(a.startswith("MY_") for a in opts)


def test_a_path_podman_cannot_mount_is_refused(tmp_path):
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(EngineError, match="cannot bind-mount"):
        sandbox_options(PodmanEngine().launch(_request(odd, "sha256:" + "1" * 64)))


@pytest.mark.podman
def test_workload_is_sandboxed_in_podman(podman_engine, podman_images, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET_TOKEN", "never-inside")
    request = _request(tmp_path, podman_images["pytorch"])
    outcome = podman_engine.start(request).finish()
    assert outcome.ok, outcome.log
    report = json.loads((request.out_dir / "probe.json").read_text())
    assert report["uid"] != 0 and report["gid"] != 0
    assert report["write_dataset"].startswith("refused") and report["write_code"].startswith("refused")
    assert report["write_rootfs"].startswith("refused") and report["write_tmp"] == "allowed"
    assert report["write_var_tmp"].startswith("refused") and report["write_run"].startswith("refused")
    assert report["network"].startswith("refused") and report["interfaces"] == ["lo"]
    assert "MY_SECRET_TOKEN" not in report["env"]
    assert report["cap_eff"] == "0000000000000000" and report["no_new_privs"] == "1"
    assert report["pids_max"] == "4096"
    assert report["mounts_ro"] == ["/", "/data", "/opt/runner", "/run/runner.json"]
    assert not (request.data_dir / "x").exists()
    assert _left() == []  # removed
    assert (request.out_dir / "probe.json").stat().st_uid == os.getuid()


@pytest.mark.podman
@pytest.mark.docker
def test_podman_and_docker_sandboxes_agree(podman_engine, podman_images, docker_client, cpu_images, tmp_path):
    reports = {}
    for name, engine in (("podman", podman_engine), ("docker", DockerEngine(docker_client))):
        request = _request(tmp_path / name, cpu_images["pytorch"])
        outcome = engine.start(request).finish()
        assert outcome.ok, (name, outcome.log)
        reports[name] = json.loads((request.out_dir / "probe.json").read_text())
    assert reports["podman"] == reports["docker"]


@pytest.mark.podman
def test_time_limit_stops_and_removes_the_container(podman_engine, podman_images, tmp_path):
    engine = PodmanEngine(podman_engine.podman, stop_grace_s=2)
    request = _request(tmp_path, podman_images["pytorch"], main=SLEEPER, time_limit_s=3)
    t0 = time.monotonic()
    outcome, samples, status = execute_run(engine, request, lambda e: None)
    assert time.monotonic() - t0 < 3 + 2 + 20
    assert not outcome.ok and outcome.reason.startswith("time limit (3 s)")
    # the sleeper is PID 1 with no SIGTERM handler, so the kernel drops SIGTERM (as under Docker):
    # SIGKILL after the grace period, and the reason says so
    assert outcome.exit_code == 137 and "did not stop within 2 s of SIGTERM: killed (SIGKILL)" in outcome.reason
    assert _left() == []


@pytest.mark.podman
def test_an_image_podman_lacks_is_a_failed_outcome(podman_engine, tmp_path):
    request = _request(tmp_path, "sha256:" + "0" * 64)
    outcome, samples, _ = execute_run(podman_engine, request, lambda e: None)
    assert not outcome.ok and outcome.reason.startswith("the engine could not start the run: ")
    assert "not in podman's storage" in outcome.reason
    assert _left() == []


@pytest.mark.parametrize("flag", ["--cache", "--results"])
def test_a_folder_no_container_can_mount_is_one_line_and_nothing_written(cli, tmp_path, monkeypatch, flag):
    import runner.reproduce.session as session
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "_select_engine", lambda choice, console: PodmanEngine())
    odd = tmp_path / "a:b"
    result = cli("reproduce", str(REPO / "tests" / "specs" / "tiny.yaml"), "--engine", "podman", flag, str(odd))
    assert result.code == 2 and "cannot mount" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not odd.exists() and not (tmp_path / "results").exists()


@pytest.mark.podman
def test_out_of_memory_is_a_failed_outcome_that_names_memory(podman_engine, podman_images, tmp_path):
    """The memory limit holds. Podman 4.3 on cgroup v1 (this machine) does not report OOMKilled, so
    the reason is the SIGKILL line that names out of memory as a cause (Docker's says `oom`)."""
    hog = "b = bytearray(1024 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"  # touch 1 GiB under a 128 MiB limit
    request = _request(tmp_path, podman_images["pytorch"], main=hog, memory="128m")
    outcome, _, _ = execute_run(podman_engine, request, lambda e: None)
    assert not outcome.ok and outcome.exit_code == 137, outcome.log
    assert outcome.reason in ("oom", "killed (SIGKILL: out of memory or time limit)")
    assert outcome.extra["oom_killed"] is (outcome.reason == "oom")
    assert _left() == []
