"""The canonical .npz: deterministic bytes, and a reader that refuses hostile files cheaply."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from runner.errors import ModelError
from runner.workload.models.npz import MAX_MEMBERS, npz_chunks, npz_index, read_npz, save_npz


def test_same_tensors_same_bytes_and_numpy_reads_them(canonical, tmp_path):
    a = b"".join(npz_chunks(canonical))
    time.sleep(1.1)  # zip timestamps would differ by now if they were taken from the clock
    b = b"".join(npz_chunks(dict(reversed(list(canonical.items())))))
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    sha = save_npz(tmp_path / "w.npz", canonical)
    assert sha == hashlib.sha256(a).hexdigest()
    with np.load(tmp_path / "w.npz", allow_pickle=False) as plain:  # a plain .npz to numpy itself
        assert all(np.array_equal(plain[k], v) for k, v in canonical.items())
    back = read_npz(tmp_path / "w.npz")
    assert list(back) == sorted(canonical) and all(back[k].dtype == np.float32 for k in back)


def _zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _read_in_fresh_process(path) -> dict:
    """read_npz(path) in a new interpreter: its outcome, CPU seconds, and peak RSS in MB from VmHWM
    (the pytest process's own peak, or ru_maxrss carried across fork, would hide a blow-up)."""
    code = (
        "import json, resource, sys\n"
        "from runner.errors import ModelError\n"
        "from runner.workload.models.npz import read_npz\n"
        "import numpy\n"
        "def cpu():\n    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime\n"
        "base = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmRSS:')][0]\n"
        "c = cpu()\n"
        "try:\n    read_npz(sys.argv[1]); err = None\n"
        "except ModelError as e:\n    err = str(e)\n"
        "hwm = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'err': err, 's': cpu() - c, 'mb': (hwm - base) / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_zip_bomb_is_refused_without_inflating(tmp_path):
    bomb = tmp_path / "bomb.npz"
    header = _npy(np.zeros(0, np.float32))[:128]  # a float32 header; then 1 GiB of zeros, deflated
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("w.npy", "w") as fh:
        fh.write(header)
        block = bytes(1 << 20)
        for _ in range(1024):
            fh.write(block)
    assert bomb.stat().st_size < 2 << 20
    out = _read_in_fresh_process(bomb)
    assert out["err"] and "zip bomb" in out["err"]
    assert out["s"] < 2 and out["mb"] < 200, out


@pytest.mark.parametrize("case", ["truncated", "fifo", "folder", "object_array", "not_npy", "too_many",
                                  "lying_header", "garbage"])
def test_hostile_files_are_one_model_error(case, canonical, tmp_path):
    path = tmp_path / "w.npz"
    if case == "truncated":
        data = b"".join(npz_chunks(canonical))
        path.write_bytes(data[: len(data) // 2])
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "folder":
        path.mkdir()
    elif case == "object_array":
        _zip(path, {"a.npy": _npy(np.array([{"x": 1}], dtype=object))})
    elif case == "not_npy":
        _zip(path, {"a.txt": b"hello"})
    elif case == "too_many":
        _zip(path, {f"t{i}.npy": b"" for i in range(MAX_MEMBERS + 1)})
    elif case == "lying_header":  # the header promises (1000,), the member holds 4 floats
        _zip(path, {"a.npy": _npy(np.zeros(4, np.float32)).replace(b"(4,)", b"(1000,)")})
    else:
        path.write_bytes(os.urandom(4096))
    t0 = time.monotonic()
    with pytest.raises(ModelError) as info:
        read_npz(path)
    assert time.monotonic() - t0 < 2
    line = info.value.describe()
    assert "\n" not in line and str(path) in line
    if case in ("object_array", "not_npy", "too_many"):
        with pytest.raises(ModelError):
            npz_index(path)


def test_save_never_overwrites(canonical, tmp_path):
    path = tmp_path / "w.npz"
    save_npz(path, canonical)
    before = path.read_bytes()
    with pytest.raises(ModelError, match="overwrite"):
        save_npz(path, {k: v + 1 for k, v in canonical.items()})
    assert path.read_bytes() == before
