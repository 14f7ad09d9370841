"""`runner weights import`: real checkpoints in, canonical .npz out; hostile input: one line, exit 2,
nothing written."""

from __future__ import annotations

import os
import time
import zipfile

import numpy as np
import pytest

from runner.fileio import sha256_file
from runner.workload.models.npz import read_npz
from tests.helpers import files_under
from tests.weights.conftest import simple_cnn

torch = pytest.importorskip("torch")

SC = ("--model", "simple_cnn", "--classes", "10")


@pytest.fixture
def torch_ckpt(canonical, tmp_path):
    """A real PyTorch state dict (with BatchNorm's num_batches_tracked) of runner's simple_cnn."""
    from runner.workload.models import torch_impl

    model = torch_impl.build(simple_cnn(), weights=canonical)
    path = tmp_path / "simple_cnn.pt"
    torch.save(model.state_dict(), path)
    return path


def _sha(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("sha256 "))


def test_a_torch_state_dict_becomes_the_canonical_weights(cli, torch_ckpt, canonical, tmp_path):
    root = tmp_path / "root"
    r = cli("weights", "import", torch_ckpt, *SC, "--framework", "pytorch", "--data-root", root)
    assert r.code == 0, r.err
    sha = _sha(r.out)
    stored = root / "weights" / f"{sha}.npz"
    assert sha256_file(stored)[1] == sha
    back = read_npz(stored)
    assert set(back) == set(canonical) and all(np.array_equal(back[k], canonical[k]) for k in canonical)
    again = cli("weights", "import", torch_ckpt, *SC, "--framework", "pytorch", "--data-root", root)
    assert again.code == 0 and "already stored" in again.out and _sha(again.out) == sha
    shown = cli("weights", "show", stored)
    assert shown.code == 0 and _sha(shown.out) == sha and "fc3.weight  float32  (10, 84)" in shown.out


def test_keras_weights_give_the_same_file_as_torch(cli, torch_ckpt, canonical, tmp_path):
    pytest.importorskip("tensorflow")
    from runner.workload.models import tf_impl

    model = tf_impl.build(simple_cnn(), weights=canonical)
    h5 = tmp_path / "simple_cnn.weights.h5"
    model.save_weights(h5)
    from_keras = cli("weights", "import", h5, *SC, "--framework", "tensorflow", "--out", tmp_path / "k")
    from_torch = cli("weights", "import", torch_ckpt, *SC, "--framework", "pytorch", "--out", tmp_path / "t")
    assert from_keras.code == from_torch.code == 0, from_keras.err + from_torch.err
    assert _sha(from_keras.out) == _sha(from_torch.out)


def test_a_spec_with_skip_accepts_a_checkpoint_with_another_head(cli, torch_ckpt, tmp_path):
    from tests.weights.conftest import tiny_spec

    spec = tiny_spec(tmp_path, "ab" * 32)  # skip: [fc3]; the spec's model has 10 classes too
    spec.write_text(spec.read_text().replace("name: cifar10", "name: cifar100"))  # 100 classes: fc3 differs
    r = cli("weights", "import", torch_ckpt, "--spec", spec, "--framework", "pytorch", "--out", tmp_path / "s")
    assert r.code == 0, r.err
    assert "2 skipped" in r.out


class Payload:
    """Pickles to a call of os.system: what a malicious checkpoint does on a plain torch.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bomb(path):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("conv1.weight.npy", "w") as fh:
        fh.write(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }"
                 + b" " * 53 + b"\n")
        for _ in range(1024):
            fh.write(bytes(1 << 20))


@pytest.mark.parametrize("case", ["pickle_payload", "wrong_shape", "unknown_model", "missing", "folder", "fifo",
                                  "truncated", "zip_bomb", "not_a_state_dict"])
def test_bad_input_is_one_line_exit_2_nothing_written(case, cli, torch_ckpt, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    src, args = torch_ckpt, list(SC)
    if case == "pickle_payload":
        src = tmp_path / "evil.pt"
        torch.save({"conv1.weight": Payload(marker)}, src)
    elif case == "wrong_shape":
        args = ["--model", "simple_cnn", "--classes", "100"]
    elif case == "unknown_model":
        args = ["--model", "lenet"]
    elif case == "missing":
        src = tmp_path / "nope.pt"
    elif case == "folder":
        src = tmp_path / "dir.pt"
        src.mkdir()
    elif case == "fifo":
        src = tmp_path / "fifo.pt"
        os.mkfifo(src)
    elif case == "truncated":
        src = tmp_path / "half.pt"
        src.write_bytes(torch_ckpt.read_bytes()[: torch_ckpt.stat().st_size // 2])
    elif case == "zip_bomb":
        src = tmp_path / "bomb.npz"
        _bomb(src)
    elif case == "not_a_state_dict":
        src = tmp_path / "list.pt"
        torch.save([torch.zeros(2)], src)
    out = tmp_path / "store"
    t0 = time.monotonic()
    r = cli("weights", "import", src, *args, "--framework", "pytorch", "--out", out)
    assert time.monotonic() - t0 < 2
    assert r.code == 2 and r.out == "", (r.out, r.err)
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
    assert not marker.exists()  # the payload never ran
    assert files_under(out) == set()
    if case == "wrong_shape":
        assert "fc3.weight" in r.err and "(100, 84)" in r.err
    if case == "pickle_payload":
        assert "without running code" in r.err
