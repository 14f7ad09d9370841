"""Host fingerprint (parsing real /proc text shapes), code tree hash and git state."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runner.fingerprint.code import code_fingerprint, git_state, tree_hash, workload_files
from runner.fingerprint.host import cgroup_version, engine_info, host_fingerprint, host_summary, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse avx512f avx2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse avx512f avx2

processor\t: 2
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 1
core id\t\t: 0
flags\t\t: fpu sse avx512f avx2
"""

PPC = """processor\t: 0
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2300.000000MHz
revision\t: 2.2 (pvr 004e 1202)

processor\t: 1
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2300.000000MHz
revision\t: 2.2 (pvr 004e 1202)

timebase\t: 512000000
platform\t: pSeries
model\t\t: IBM,9009-22A
machine\t\t: CHRP IBM,9009-22A
"""


def test_parse_x86_cpuinfo():
    info = parse_cpuinfo(X86)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["vendor"] == "GenuineIntel"
    assert info["flags"] == ["avx2", "avx512f", "fpu", "sse"]
    assert (info["sockets"], info["cores"], info["threads"]) == (2, 2, 3)


def test_parse_ppc64le_cpuinfo():
    info = parse_cpuinfo(PPC)
    assert info["model"].startswith("POWER9")
    assert info["threads"] == 2 and info["flags"] == []


def test_this_host():
    fp = host_fingerprint(client=None)
    assert fp["cpu"]["threads"] >= 1 and fp["cpu"]["architecture"]
    assert fp["memory"]["total_bytes"] > 0
    assert fp["os"]["system"] == "Linux" and fp["os"]["kernel"]
    assert fp["engine"] == {"available": False, "reason": "no container engine used (local engine)"}
    summary = host_summary(fp)
    assert summary["host_cpu_model"] == fp["cpu"]["model"] and summary["engine_version"] is None


def test_cgroup_version(tmp_path):
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpu memory\n")
    for d in ("v1/cpu", "v1/memory", "hy/cpu", "hy/unified", "none"):
        (tmp_path / d).mkdir(parents=True)
    assert cgroup_version(tmp_path / "v2") == "2"
    assert cgroup_version(tmp_path / "v1") == "1"
    assert cgroup_version(tmp_path / "hy") == "hybrid"
    assert cgroup_version(tmp_path / "none") is None


class _Client:
    """The two docker SDK calls engine_info makes, answering as a 20.10 engine does."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def info(self):
        if self.fail:
            raise ConnectionError("engine gone")
        return {"ServerVersion": "20.10.24+dfsg1", "Driver": "overlay2", "CgroupVersion": "1",
                "CgroupDriver": "cgroupfs", "DefaultRuntime": "runc", "Runtimes": {"runc": {}, "nvidia": {}},
                "OperatingSystem": "Debian GNU/Linux 12", "KernelVersion": "6.1", "Architecture": "x86_64",
                "NCPU": 2, "MemTotal": 25 * 2**30, "Name": "vm", "SecurityOptions": ["name=seccomp"]}

    def version(self):
        return {"ApiVersion": "1.41"}


def test_engine_info_from_a_client():
    info = engine_info(_Client())
    assert info["available"] is True
    assert (info["version"], info["storage_driver"], info["cgroup_version"], info["default_runtime"]) == (
        "20.10.24+dfsg1", "overlay2", "1", "runc")
    assert info["runtimes"] == ["nvidia", "runc"] and info["api_version"] == "1.41"
    failed = engine_info(_Client(fail=True))
    assert failed["available"] is False and "engine gone" in failed["reason"]


@pytest.mark.docker
def test_engine_info_from_the_real_engine():
    import docker

    info = engine_info(docker.from_env(timeout=10))
    assert info["available"] is True and info["version"] and info["storage_driver"]


def _tree(root: Path) -> None:
    for rel, text in {"runner/workload/a.py": "A", "runner/workload/sub/b.py": "B", "runner/data/c.py": "C",
                      "runner/workload/__pycache__/a.cpython-311.pyc": "junk", "runner/other/x.py": "X"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_tree_hash_is_deterministic_and_content_sensitive(tmp_path):
    _tree(tmp_path)
    files = workload_files(tmp_path)
    assert [f.relpath for f in files] == ["runner/data/c.py", "runner/workload/a.py", "runner/workload/sub/b.py"]
    first = tree_hash(files)
    assert tree_hash(list(reversed(files))) == first
    (tmp_path / "runner/workload/__pycache__/a.cpython-311.pyc").write_text("other junk")
    (tmp_path / "runner/other/x.py").write_text("Y")
    assert tree_hash(workload_files(tmp_path)) == first  # outside the workload, or caches: no change
    (tmp_path / "runner/workload/sub/b.py").write_text("B2")
    assert tree_hash(workload_files(tmp_path)) != first
    (tmp_path / "runner/workload/sub/b.py").write_text("B")
    (tmp_path / "runner/workload/sub/b.py").rename(tmp_path / "runner/workload/sub/b2.py")
    assert tree_hash(workload_files(tmp_path)) != first  # a rename changes it too


def test_git_state(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    _tree(tmp_path)

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    git("add", ".")
    git("-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-m", "x")
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "runner/workload/a.py").write_text("changed")
    assert git_state(tmp_path)["dirty"] is True


def test_code_fingerprint_of_this_checkout():
    fp = code_fingerprint()
    assert len(fp["tree_sha256"]) == 64 and fp["files"] > 0
    assert fp["tree_sha256"] == tree_hash(workload_files())


@pytest.mark.docker
def test_host_fingerprint_connects_by_itself():
    fp = host_fingerprint()  # "auto": runner.engine.docker_client.connect
    assert fp["engine"]["available"] is True and fp["engine"]["api_version"]
    assert host_summary(fp)["engine_version"] == fp["engine"]["version"]
