"""Issue 9: a hostile bundle archive costs bounded time, memory and disk, and leaves nothing behind.

Before: a small .tar.gz with a multi-GB member wrote 1984 MB into a temp folder before refusing.
The bombs are built from concatenated gzip members of zeros (a few MB on disk, GBs decompressed),
never written out decompressed.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runner.errors import BundleError
from runner.publish.archive import Limits, check_archive, safe_extract

ZEROS_MIB = gzip.compress(b"\0" * 2**20, compresslevel=9)  # about 1 KB: one gzip member of 1 MiB of zeros


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def bomb(path: Path, members: list[tuple[str, int]], kind: bytes = tarfile.REGTYPE) -> Path:
    """A .tar.gz whose members hold `size` bytes of zeros each (padded to 512-byte blocks)."""
    with open(path, "wb") as out:
        for name, size in members:
            out.write(gzip.compress(header(name, size, kind)))
            whole, rest = divmod(size, 2**20)
            out.write(ZEROS_MIB * whole)
            out.write(gzip.compress(b"\0" * (rest + (-size % 512))))
        out.write(gzip.compress(b"\0" * 1024))
    return path


def run_cli(args: list[str], tmp: Path) -> dict:
    """`runner ARGS` in a fresh interpreter: exit code, stderr, CPU seconds in main (user + system: what the
    archive costs, whatever else loads the shared machine), wall seconds, peak RSS in MB (VmHWM: ru_maxrss
    would carry over the parent's peak across fork and exec)."""
    code = (
        "import json, resource, sys, time\n"
        "from runner.cli.main import main\n"
        "def cpu():\n    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime\n"
        "t, c = time.perf_counter(), cpu()\n"
        "try:\n    main(sys.argv[1:]); rc = 0\n"
        "except SystemExit as e:\n    rc = int(e.code or 0)\n"
        "hwm = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'rc': rc, 's': cpu() - c, 'wall': time.perf_counter() - t, 'mb': hwm / 1024}))\n"
    )
    env = {"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out | {"err": proc.stderr}


@pytest.mark.parametrize("command", ["verify", "publish"])
def test_a_gzip_bomb_is_refused_fast_small_and_clean(tmp_path, command):
    archive = bomb(tmp_path / "bomb.tar.gz", [("b/manifest.json", 2), ("b/tables/big.parquet", 4 * 2**30)])
    assert archive.stat().st_size < 8 * 2**20
    work = tmp_path / "tmp"
    work.mkdir()
    args = ["bundle", command, str(archive)] + (["--out", str(tmp_path / "out")] if command == "publish" else [])
    result = run_cli(args, work)
    assert result["rc"] == 2 and "expands to more than" in result["err"], result
    assert result["err"].count("\n") == 1
    assert result["s"] < 2.0 and result["mb"] < 200, result
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists()


def test_many_honest_members_past_the_cap_are_refused_while_streaming(tmp_path):
    archive = bomb(tmp_path / "many.tar.gz", [(f"b/f{i}.bin", 100 * 2**20) for i in range(20)])
    work = tmp_path / "tmp"
    work.mkdir()
    result = run_cli(["bundle", "verify", str(archive)], work)
    assert result["rc"] == 2 and "expands to more than" in result["err"], result
    assert result["s"] < 2.0 and result["mb"] < 200, result
    assert list(work.iterdir()) == []


def test_a_pax_header_claiming_a_gigabyte_is_refused_before_it_is_read(tmp_path):
    archive = bomb(tmp_path / "pax.tar.gz", [("././@PaxHeader", 2**30)], kind=tarfile.XHDTYPE)
    with pytest.raises(BundleError, match="single read|expands to more than"):
        check_archive(archive, limits=Limits(bytes=16 * 2**30))


def test_the_member_count_is_capped(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(50):
            tar.addfile(tarfile.TarInfo(f"b/{i}"), io.BytesIO(b""))
    (tmp_path / "n.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(BundleError, match="more than 20 members"):
        safe_extract(tmp_path / "n.tar.gz", tmp_path / "t", limits=Limits(members=20))
    assert not (tmp_path / "t").exists() and [p.name for p in tmp_path.iterdir()] == ["n.tar.gz"]


def test_a_sparse_member_is_refused(tmp_path):
    info = tarfile.TarInfo("b/sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    path = tmp_path / "s.tar"
    path.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    with pytest.raises(BundleError, match="sparse|device or FIFO|not a readable"):
        safe_extract(path, tmp_path / "t")
