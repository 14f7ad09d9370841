"""The allow-list unpickler: official batches load, nothing else runs."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest

from runner.data.manifest import dataset_manifest, format_manifest_file
from runner.data.pickles import RestrictedUnpickler, dumps_official, safe_loads
from runner.data.sources import open_source
from runner.data.synth import tar_gz
from runner.errors import DatasetError


class _Payload:
    """Pickles to a call of os.system that would create `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _batch(data=None, labels=None):
    data = np.zeros((2, 3072), np.uint8) if data is None else data
    return {b"batch_label": b"training batch 1 of 5", b"labels": [0, 1] if labels is None else labels,
            b"data": data, b"filenames": [b"a.png", b"b.png"]}


def test_official_format_round_trip_and_standard_loaders_agree():
    batch = _batch(np.arange(2 * 3072, dtype=np.uint64).astype(np.uint8).reshape(2, 3072))
    raw = dumps_official(batch)
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official files
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw  # the official global name
    assert b"_codecs" not in raw  # byte strings written Python-2 style, no codecs.encode call
    ours = safe_loads(raw, "x")
    plain = pickle.loads(raw, encoding="bytes")  # the recipe on the dataset's page
    latin = pickle.loads(raw, encoding="latin1")  # what torchvision does
    assert ours.keys() == plain.keys() == batch.keys()
    np.testing.assert_array_equal(ours[b"data"], batch[b"data"])
    np.testing.assert_array_equal(latin["data"], batch[b"data"])
    assert ours[b"data"].dtype == np.uint8 and type(ours[b"data"]) is np.ndarray


def test_code_execution_payload_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _Payload(marker)}, protocol=2)
    # sanity: the payload is real (plain pickle would run it)
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control"), protocol=2))
    assert (tmp_path / "control").exists()
    with pytest.raises(DatasetError) as exc:
        safe_loads(raw, "data_batch_1")
    assert "forbidden" in exc.value.describe() and "data_batch_1" in exc.value.describe()
    assert "\n" not in exc.value.describe()
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("os", "system"), ("subprocess", "Popen"),
    ("numpy", "load"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"), ("copyreg", "_reconstructor"),
])
def test_every_other_global_is_refused(module, name):
    raw = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(DatasetError, match="forbidden"):
        safe_loads(raw, "f")


def test_reconstruct_only_builds_plain_ndarrays():
    # _reconstruct(numpy.dtype, ...) : a subtype other than ndarray
    raw = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.")
    with pytest.raises(DatasetError, match="only build numpy.ndarray"):
        safe_loads(raw, "f")
    # numpy.ndarray itself is a token, not callable: REDUCE on it fails cleanly
    raw = b"\x80\x02cnumpy\nndarray\nK\x03\x85R."
    with pytest.raises(DatasetError):
        safe_loads(raw, "f")


def test_object_dtype_arrays_are_refused():
    arr = np.array([1, "x"], dtype=object)
    raw = dumps_official({b"data": arr})
    with pytest.raises(DatasetError, match="not allowed"):
        safe_loads(raw, "f")


def test_persistent_ids_and_garbage_are_refused():
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if obj == "ref" else None

    P(buf, protocol=2).dump(["ref"])
    with pytest.raises(DatasetError, match="persistent"):
        safe_loads(buf.getvalue(), "f")
    for junk in (b"", b"\x80\x02", b"not a pickle", struct.pack("<i", 7)):
        with pytest.raises(DatasetError):
            safe_loads(junk, "f")


def _folder_with(folder, name, payload_bytes):
    (folder / name).write_bytes(payload_bytes)
    entries, _ = dataset_manifest(folder, exclude=frozenset({"SHA256SUMS"}))
    (folder / "SHA256SUMS").write_bytes(format_manifest_file(entries))


def test_payload_in_a_checksum_valid_folder_does_not_run(synth10, tmp_path):
    """The checksums are fine (the attacker rewrote SHA256SUMS); the unpickler still refuses."""
    marker = tmp_path / "pwned-folder"
    _folder_with(synth10.folder, "data_batch_3", pickle.dumps({b"data": _Payload(marker)}, protocol=2))
    reader = open_source(synth10.folder)
    reader.verify()  # checksums pass
    with pytest.raises(DatasetError) as exc:
        reader.read()
    assert "data_batch_3" in exc.value.describe() and "forbidden" in exc.value.describe()
    assert not marker.exists()


def test_payload_in_a_checksum_valid_archive_does_not_run(synth10, tmp_path):
    import hashlib

    from runner.data.synth import synth_members

    marker = tmp_path / "pwned-archive"
    members = synth_members("cifar10", 10, 2, seed=1)
    members["batches.meta"] = pickle.dumps(_Payload(marker), protocol=2)
    data = tar_gz("cifar-10-batches-py", members)
    synth10.archive.write_bytes(data)
    synth10.checksum_file.write_text(f"{hashlib.sha256(data).hexdigest()}  {synth10.archive.name}\n")
    with pytest.raises(DatasetError) as exc:
        open_source(synth10.archive).read()
    assert "batches.meta" in exc.value.describe()
    assert not marker.exists()


def test_unpickler_class_is_a_pickle_unpickler():
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)
