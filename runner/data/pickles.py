"""Safe reading (and faithful writing) of CIFAR "python version" batch pickles.

The official batches are Python 2 protocol-2 pickles of plain dicts holding byte strings, lists
of ints and one numpy array. Unpickling them with `pickle.load` would run any callable a
tampered file names, so `RestrictedUnpickler.find_class` resolves exactly three globals and
refuses every other one:

    numpy.core.multiarray._reconstruct  -> only ever builds a plain numpy.ndarray
    numpy.ndarray                       -> a token accepted only as _reconstruct's first argument
    numpy.dtype                         -> only numeric dtypes (bool, int, uint, float)

Persistent ids are refused too. Files are decoded with encoding="bytes" (the recipe on the
dataset's page), so keys and names come back as bytes, exactly as in the official files.

`dumps_official` writes the same structure the way the official files were written (protocol 2,
Python-2 style byte strings, the numpy.core global name), so synthetic data exercises the
same reader path as the real archives.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import numpy as np

try:  # numpy >= 2 keeps the implementation in numpy._core; the official name stays numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

from runner.errors import DatasetError

_OFFICIAL_RECONSTRUCT = ("numpy.core.multiarray", "_reconstruct")
_NUMERIC_KINDS = frozenset("biuf")


class _NdarrayToken:
    """Stands in for numpy.ndarray inside a pickle: usable only as _reconstruct's subtype."""

    def __repr__(self) -> str:
        return "<numpy.ndarray (restricted)>"


_NDARRAY = _NdarrayToken()


def _reconstruct(subtype: object, shape: object, dtype_code: object) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("_reconstruct may only build numpy.ndarray")
    return _np_reconstruct(np.ndarray, shape, dtype_code)


def _numeric_dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    if not isinstance(spec, str | bytes):
        raise pickle.UnpicklingError("dtype spec must be a string")
    dt = np.dtype(spec.decode("ascii") if isinstance(spec, bytes) else spec, bool(align), bool(copy))
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise pickle.UnpicklingError(f"dtype {dt} is not allowed (numeric dtypes only)")
    return dt


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals a CIFAR batch needs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _OFFICIAL_RECONSTRUCT:
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            return _numeric_dtype
        raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are forbidden")


def safe_loads(data: bytes | memoryview, source: str) -> Any:
    """Unpickle bytes with the allow-list; any refusal or corruption is a DatasetError."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"refused while unpickling: {exc}", file=source,
                           fix="the file is not an official CIFAR batch; use the official archive") from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error,
            MemoryError, RecursionError, UnicodeDecodeError, OverflowError) as exc:
        raise DatasetError(f"is not a readable CIFAR batch ({type(exc).__name__}: {exc})",
                           file=source) from None
    return obj


class _OfficialPickler(pickle._Pickler):  # the pure-Python pickler lets us pick the opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_bytes

    def _save_py2_str(self, obj: str) -> None:
        # Python 2 wrote its native (byte) strings for dtype codes such as 'u1' and '|'.
        if obj.isascii():
            self._save_py2_bytes(obj.encode("ascii"))
        else:
            pickle._Pickler.save_str(self, obj)

    dispatch[str] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _np_reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dumps_official(obj: Any) -> bytes:
    """Pickle a CIFAR batch dict as the official files are pickled (protocol 2, py2 strings)."""
    buf = io.BytesIO()
    _OfficialPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()
