"""CIFAR readers: verification before decoding, validation after, one-line errors naming the file."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from runner.data.cifar import CIFAR10, CIFAR100, CifarReader
from runner.data.manifest import MANIFEST_NAME, dataset_manifest, format_manifest_file
from runner.data.pickles import dumps_official
from runner.data.prepared import prepare
from runner.data.reader import DatasetReader
from runner.data.registry import REGISTRY, get_dataset
from runner.data.sources import open_source
from runner.data.synth import CIFAR100_FINE_TO_COARSE, synth_members, tar_gz
from runner.errors import DatasetError


def _refresh_manifest(folder):
    entries, _ = dataset_manifest(folder, exclude=frozenset({MANIFEST_NAME}))
    (folder / MANIFEST_NAME).write_bytes(format_manifest_file(entries))


def _rewrite(folder, name, edit):
    """Change one batch (as an attacker or a broken converter would) and re-sign the folder."""
    batch = pickle.loads((folder / name).read_bytes(), encoding="bytes")
    edit(batch)
    (folder / name).write_bytes(dumps_official(batch))
    _refresh_manifest(folder)


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    line = exc.value.describe()
    assert "\n" not in line
    for n in needles:
        assert n in line, line
    return line


def test_archive_and_folder_decode_to_the_same_arrays(synth10):
    a = open_source(synth10.archive).read()
    f = open_source(synth10.folder).read()
    assert isinstance(open_source(synth10.archive), DatasetReader)
    for attr in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(f, attr))
    assert a.train_x.shape == (60, 32, 32, 3) and a.train_x.dtype == np.uint8
    assert a.train_y.dtype == np.int64 and a.test_y.shape == (20,)
    assert a.classes[0] == "airplane" and len(a.classes) == 10
    assert a.source.verified_by == "checksum-file" and not a.source.official
    assert f.source.verified_by == "manifest" and f.source.root_sha256 == synth10.manifest_root


def test_rows_are_converted_from_planar_rgb_to_nhwc(synth10):
    raw = pickle.loads((synth10.folder / "data_batch_1").read_bytes(), encoding="bytes")
    row = raw[b"data"][0]
    img = open_source(synth10.folder).read().train_x[0]
    np.testing.assert_array_equal(img[..., 0].ravel(), row[:1024])  # red plane first
    np.testing.assert_array_equal(img[..., 2].ravel(), row[2048:])
    assert img[0, 1, 1] == row[1024 + 1]  # green, row 0, column 1


def test_cifar100_fine_and_coarse_labels(synth100):
    raw = open_source(synth100.archive).read()
    assert raw.name == "cifar100" and len(raw.classes) == 100 and len(raw.coarse_classes) == 20
    assert raw.train_y.max() < 100 and raw.train_y_coarse.max() < 20
    np.testing.assert_array_equal(raw.train_y_coarse, np.asarray(CIFAR100_FINE_TO_COARSE)[raw.train_y])


def test_the_official_fine_to_coarse_table_has_five_classes_per_superclass():
    assert sorted(np.bincount(CIFAR100_FINE_TO_COARSE).tolist()) == [5] * 20


def test_registry_names_readers_and_sizes():
    assert set(REGISTRY) == {"cifar10", "cifar100", "imagenet"}
    assert get_dataset("cifar100").num_classes == 100 and get_dataset("imagenet").input_size == 224
    assert get_dataset("cifar10").layout is CIFAR10 and get_dataset("cifar100").layout is CIFAR100
    assert CIFAR10.archive_md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR100.archive_md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    with pytest.raises(DatasetError, match="unknown dataset"):
        get_dataset("mnist")


# -- bad input: each refused with one line naming the file, nothing half-written -----------------

def _assert_nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_truncated_archive_is_refused_before_decoding(synth10, tmp_path):
    data = synth10.archive.read_bytes()
    synth10.archive.write_bytes(data[: len(data) // 2])
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as exc:
        prepare(synth10.archive, out)
    _one_line(exc, "cifar-10-python.tar.gz", "does not match the sha256")
    _assert_nothing_written(tmp_path, out)


def test_truncated_archive_without_checksum_file_fails_the_official_checksum(synth10, tmp_path):
    data = synth10.archive.read_bytes()
    synth10.archive.write_bytes(data[:1000])
    synth10.checksum_file.unlink()
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.archive).verify()
    _one_line(exc, "official cifar10 checksum", CIFAR10.archive_md5, "fix:")


def test_truncated_archive_with_a_matching_checksum_file_is_refused_as_unreadable(synth10):
    data = synth10.archive.read_bytes()[:5000]
    synth10.archive.write_bytes(data)
    synth10.checksum_file.write_text(f"{hashlib.sha256(data).hexdigest()}  {synth10.archive.name}\n")
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.archive).read()
    _one_line(exc, "not a readable .tar.gz")


def test_wrong_checksum_in_the_checksum_file(synth10):
    synth10.checksum_file.write_text(f"{'0' * 64}  {synth10.archive.name}\n")
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.archive).verify()
    _one_line(exc, "does not match the sha256 in cifar-10-python.tar.gz.sha256")


def test_modified_folder_file_fails_the_manifest(synth10, tmp_path):
    p = synth10.folder / "data_batch_2"
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF
    p.write_bytes(bytes(data))
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as exc:
        prepare(synth10.folder, out)
    _one_line(exc, "data_batch_2", "does not match its sha256 in SHA256SUMS")
    _assert_nothing_written(tmp_path, out)


def test_folder_without_manifest_must_match_the_official_md5s(synth10):
    (synth10.folder / MANIFEST_NAME).unlink()
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.folder).verify()
    _one_line(exc, "data_batch_1", "official md5", "runner data manifest")


def test_labels_out_of_range(synth10, tmp_path):
    _rewrite(synth10.folder, "data_batch_4", lambda b: b[b"labels"].__setitem__(3, 10))
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as exc:
        prepare(synth10.folder, out)
    _one_line(exc, "data_batch_4", "labels[3]: 10 is out of range 0..9")
    _assert_nothing_written(tmp_path, out)


def test_negative_and_coarse_labels_out_of_range(synth100):
    _rewrite(synth100.folder, "test", lambda b: b[b"coarse_labels"].__setitem__(0, 20))
    with pytest.raises(DatasetError) as exc:
        open_source(synth100.folder).read()
    _one_line(exc, "cifar-100-python/test", "coarse_labels[0]: 20 is out of range 0..19")
    _rewrite(synth100.folder, "test", lambda b: b[b"coarse_labels"].__setitem__(0, 0) or
             b[b"fine_labels"].__setitem__(1, -1))
    with pytest.raises(DatasetError, match=r"fine_labels\[1\]: -1 is out of range"):
        open_source(synth100.folder).read()


def test_inconsistent_superclasses_are_refused(synth100):
    def edit(b):
        fine = b[b"fine_labels"][0]
        b[b"coarse_labels"][0] = (CIFAR100_FINE_TO_COARSE[fine] + 1) % 20

    _rewrite(synth100.folder, "train", edit)
    with pytest.raises(DatasetError, match="more than one coarse label"):
        open_source(synth100.folder).read()


@pytest.mark.parametrize("edit,needle", [
    (lambda b: b.__setitem__(b"data", b[b"data"][:, :3000]), "expected (N, 3072)"),
    (lambda b: b.__setitem__(b"data", b[b"data"].reshape(-1, 32, 32, 3)), "expected (N, 3072)"),
    (lambda b: b.__setitem__(b"data", b[b"data"].astype(np.float32)), "uint8"),
    (lambda b: b.__setitem__(b"labels", b[b"labels"][:-1]), "one per image"),
    (lambda b: b.__setitem__(b"filenames", b[b"filenames"][:-1]), "one per image"),
    (lambda b: b.__setitem__(b"labels", [float(v) for v in b[b"labels"]]), "not an integer"),
    (lambda b: b.pop(b"filenames"), "(missing filenames)"),
    (lambda b: b.__setitem__(b"extra", 1), "(unexpected extra)"),
])
def test_wrong_shapes_types_and_keys(synth10, edit, needle):
    _rewrite(synth10.folder, "data_batch_1", edit)
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.folder).read()
    _one_line(exc, "data_batch_1", needle)


def test_missing_batch_file_in_folder(synth10, tmp_path):
    (synth10.folder / "data_batch_5").unlink()
    _refresh_manifest(synth10.folder)
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.folder, "cifar10").read()
    _one_line(exc, "data_batch_5", "missing")


def test_missing_batch_member_in_archive(synth10):
    members = synth_members("cifar10", 10, 2, seed=1)
    del members["test_batch"]
    data = tar_gz("cifar-10-batches-py", members)
    synth10.archive.write_bytes(data)
    synth10.checksum_file.write_text(f"{hashlib.sha256(data).hexdigest()}  {synth10.archive.name}\n")
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.archive).read()
    _one_line(exc, "has no member cifar-10-batches-py/test_batch")


def test_archive_with_unexpected_or_traversing_members_is_refused(synth10):
    members = synth_members("cifar10", 10, 2, seed=1)
    members["../../evil"] = b"x"
    data = tar_gz("cifar-10-batches-py", members)
    synth10.archive.write_bytes(data)
    synth10.checksum_file.write_text(f"{hashlib.sha256(data).hexdigest()}  {synth10.archive.name}\n")
    with pytest.raises(DatasetError, match="unexpected member"):
        open_source(synth10.archive).read()


def test_folder_with_a_symlink_escaping_it(synth10, tmp_path):
    outside = tmp_path / "outside_batch"
    outside.write_bytes((synth10.folder / "data_batch_1").read_bytes())
    (synth10.folder / "data_batch_1").unlink()
    (synth10.folder / "data_batch_1").symlink_to(outside)
    for manifest in (True, False):
        if not manifest:
            (synth10.folder / MANIFEST_NAME).unlink()
        with pytest.raises(DatasetError) as exc:
            open_source(synth10.folder).read()
        _one_line(exc, "data_batch_1", "symlink escaping the folder")


def test_imagenet_folder_is_recognised_and_one_without_a_decodable_image_is_one_line(tmp_path):
    root = tmp_path / "imagenet"
    (root / "train" / "n01440764").mkdir(parents=True)
    (root / "train" / "n01440764" / "n01440764_10026.JPEG").write_bytes(b"\xff\xd8")
    (root / "val").mkdir()
    assert open_source(root).name == "imagenet"  # the ImageNet reader (tests/data/test_imagenet.py)
    with pytest.raises(DatasetError) as exc:
        prepare(root, tmp_path / "out", name="imagenet")
    _one_line(exc, "holds no decodable training image", str(root / "train"))
    assert not (tmp_path / "out").exists()


def test_unrecognised_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a recognised dataset"):
        open_source(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(tmp_path / "nope")
    (tmp_path / "x.tar.gz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="not a known dataset archive"):
        open_source(tmp_path / "x.tar.gz")


def test_parent_folder_detection_and_forced_name(synth10):
    assert open_source(synth10.out).path == synth10.folder
    assert isinstance(open_source(synth10.out, "cifar10"), CifarReader)
    with pytest.raises(DatasetError):
        open_source(synth10.folder, "cifar100").read()  # forced wrong layout: files missing


# -- the "official" branches, exercised with a layout whose published checksums are the synthetic ones --

def _official_layout(synth, **extra):
    import dataclasses

    md5 = {rel: hashlib.md5((synth.folder / rel).read_bytes()).hexdigest() for rel in CIFAR10.required_files}
    archive_md5 = hashlib.md5(synth.archive.read_bytes()).hexdigest()
    return dataclasses.replace(CIFAR10, member_md5=md5, archive_md5=archive_md5, **extra)


def test_official_archive_and_folder_checks_without_sidecars(synth10):
    layout = _official_layout(synth10, official_counts=(60, 20))
    synth10.checksum_file.unlink()
    (synth10.folder / MANIFEST_NAME).unlink()
    archive = CifarReader(layout, synth10.archive).read()
    assert archive.source.verified_by == "official-md5" and archive.source.official
    folder = CifarReader(layout, synth10.folder).read()
    assert folder.source.verified_by == "official-member-md5" and folder.source.official
    assert folder.source.root_sha256 == synth10.manifest_root  # same root, with or without SHA256SUMS


def test_official_data_must_have_the_official_counts(synth10):
    layout = _official_layout(synth10)  # official_counts stays (50000, 10000)
    with pytest.raises(DatasetError) as exc:
        CifarReader(layout, synth10.archive).read()
    _one_line(exc, "60 train / 20 test images, expected 50000 / 10000")


def test_the_path_given_may_be_a_link_but_nothing_inside(synth10, tmp_path):
    (tmp_path / "archive-link.tar.gz").symlink_to(synth10.archive)
    (tmp_path / "folder-link").symlink_to(synth10.folder, target_is_directory=True)
    assert CifarReader(CIFAR10, tmp_path / "archive-link.tar.gz").read().source.verified_by == "checksum-file"
    assert open_source(tmp_path / "folder-link").read().source.root_sha256 == synth10.manifest_root
