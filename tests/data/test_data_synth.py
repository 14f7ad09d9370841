"""Synthetic data: official format, deterministic, learnable by a small CNN, not trivially solvable."""

from __future__ import annotations

import json
import pickle
import tarfile

import numpy as np
import pytest

from runner.data.synth import frequency_lattice, generate_split, write_synthetic
from runner.errors import DatasetError


def test_official_layout_and_keys(synth10_master, synth100_master):
    s = synth10_master
    names = sorted(p.name for p in s.folder.iterdir())
    assert names == ["SHA256SUMS", "batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "readme.html",
                     "test_batch"]
    with tarfile.open(s.archive) as tar:
        members = sorted(tar.getnames())
    assert members == sorted(["cifar-10-batches-py", *(f"cifar-10-batches-py/{n}" for n in names
                                                       if n != "SHA256SUMS")])
    b = pickle.loads((s.folder / "data_batch_1").read_bytes(), encoding="bytes")  # the official recipe
    assert set(b) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert b[b"batch_label"] == b"training batch 1 of 5" and b[b"data"].shape == (12, 3072)
    meta = pickle.loads((s.folder / "batches.meta").read_bytes(), encoding="bytes")
    assert set(meta) == {b"num_cases_per_batch", b"label_names", b"num_vis"} and meta[b"num_vis"] == 3072
    t = pickle.loads((synth100_master.folder / "train").read_bytes(), encoding="bytes")
    assert set(t) == {b"batch_label", b"fine_labels", b"coarse_labels", b"data", b"filenames"}
    m = pickle.loads((synth100_master.folder / "meta").read_bytes(), encoding="bytes")
    assert set(m) == {b"fine_label_names", b"coarse_label_names"} and len(m[b"fine_label_names"]) == 100
    assert s.checksum_file.read_text() == f"{s.archive_sha256}  cifar-10-python.tar.gz\n"
    record = json.loads((s.out / "synthetic.json").read_text())
    assert record["synthetic"] is True and record["seed"] == 7 and record["archive_sha256"] == s.archive_sha256


def test_same_seed_same_bytes_other_seed_other_bytes(synth10_master, tmp_path):
    again = write_synthetic("cifar10", tmp_path / "a", train=60, test=20, seed=7)
    assert again.archive.read_bytes() == synth10_master.archive.read_bytes()
    assert again.manifest_root == synth10_master.manifest_root
    other = write_synthetic("cifar10", tmp_path / "b", train=60, test=20, seed=8)
    assert other.archive_sha256 != synth10_master.archive_sha256


def test_test_split_does_not_depend_on_the_train_size():
    a = generate_split(10, 30, seed=1, stream=2)
    b = generate_split(10, 30, seed=1, stream=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert np.bincount(a[1], minlength=10).tolist() == [3] * 10  # balanced


def test_classes_have_distinct_frequencies():
    f = frequency_lattice(100)
    assert len({tuple(v) for v in f}) == 100
    assert all(v[1] > 0 or v[0] > 0 for v in f)  # one half-plane: no class is another's mirror


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="cannot synthesise"):
        write_synthetic("imagenet", tmp_path / "x")
    with pytest.raises(DatasetError, match="at least 5 train"):
        write_synthetic("cifar10", tmp_path / "x", train=4, test=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(DatasetError, match="already exists"):
        write_synthetic("cifar10", tmp_path / "full", train=5, test=1)


def test_not_trivially_solvable_without_learning():
    """Mean colour and class-mean templates (no training) stay near chance."""
    xtr, ytr = generate_split(10, 2000, seed=0, stream=1)
    xte, yte = generate_split(10, 500, seed=0, stream=2)
    colour = xtr.reshape(len(xtr), -1, 3).mean(1)
    centroids = np.stack([colour[ytr == k].mean(0) for k in range(10)])
    test_colour = xte.reshape(len(xte), -1, 3).mean(1)
    acc_colour = ((test_colour[:, None] - centroids[None]) ** 2).sum(-1).argmin(1) == yte
    templates = np.stack([xtr[ytr == k].reshape(-1, 3072).astype(np.float32).mean(0) for k in range(10)])
    flat = xte.reshape(len(xte), -1).astype(np.float32)
    acc_template = ((flat[:, None] - templates[None]) ** 2).sum(-1).argmin(1) == yte
    assert acc_colour.mean() < 0.2 and acc_template.mean() < 0.2


def _small_cnn(torch, num_classes: int):
    """The project's small CNN (runner/workload/models/simple_cnn.py), written out in torch."""
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(), nn.Dropout(0.5),
                         nn.Linear(2048, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))


def _train_to(torch, data, epochs: int, target: float) -> tuple[float, int]:
    from runner.data.loader import BatchIterator

    model = _small_cnn(torch, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    mean, std = data.meta["train_channel_mean"], data.meta["train_channel_std"]
    # the usual CIFAR augmentation: classes survive crops and flips by construction
    ops = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
           {"op": "brightness", "max_delta": 0.2}]
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        for x, y in BatchIterator(data, "train", 64, 0, epoch, ops, mean, std, prefetch=2):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x).permute(0, 3, 1, 2)),
                                                     torch.from_numpy(y))
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in BatchIterator(data, "test", 500, 0, 0, [], mean, std):
                correct += int((model(torch.from_numpy(x).permute(0, 3, 1, 2)).argmax(1).numpy() == y).sum())
        acc = correct / len(data.test_y)
        if acc >= target:
            return acc, epoch + 1
    return acc, epochs


@pytest.mark.torch
@pytest.mark.slow
def test_the_small_cnn_learns_synthetic_cifar10_to_90_percent(tmp_path):
    """Through the real path: official-format archive -> prepare -> BatchIterator -> the small CNN."""
    torch = pytest.importorskip("torch")
    from runner.data.prepared import prepare

    torch.manual_seed(0)
    src = write_synthetic("cifar10", tmp_path / "s", train=5000, test=1000, seed=0)
    acc, epochs = _train_to(torch, prepare(src.archive, tmp_path / "p"), epochs=3, target=0.9)
    assert acc >= 0.9, f"test accuracy {acc:.3f} after {epochs} epochs"
