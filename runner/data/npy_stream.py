"""A uint8 .npy file written row by row, never held in memory; byte-identical to `np.save`.

Pre-decoding ImageNet produces rows one at a time, and some inputs are skipped only when they
are decoded, so the final row count is known only at the end. The header is therefore written
TWICE: first with the largest possible count (`capacity`, the number of inputs), rows are
appended after it, and `finish()` rewrites the header in place with the count actually written
and truncates the file after the last row (a file that was given its final size is also what a
crash leaves behind: the caller writes into a staging folder that is removed on any error).

Rewriting in place is possible because numpy pads the header so that the first axis can grow
to GROWTH_AXIS_MAX_DIGITS (21) digits without changing the header's length (numpy >= 1.23);
`np.save` writes exactly the same header (version 1.0, the same padding), so the finished file
equals `np.save(path, array)` byte for byte (tested). Counting first instead was rejected: it
would mean decoding every image twice. A numpy whose header length does change with the count
is caught (`finish` raises) rather than leaving a file `np.load` cannot read.

Rows go through an ordinary buffered file (never a memory map: mapped pages would count as the
process's resident memory while a 193 GB file is written).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

_DESCR = npy_format.dtype_to_descr(np.dtype(np.uint8))


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The header `np.save` writes for a C-ordered uint8 array of `shape`."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": _DESCR, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


class NpyRowWriter:
    """Append uint8 rows of `row_shape` to a new .npy file; `finish()` fixes the count (see module)."""

    def __init__(self, path: str | Path, row_shape: tuple[int, ...], capacity: int) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(v) for v in row_shape)
        self.row_bytes = int(np.prod(self.row_shape))
        self.count = 0
        self._header_len = len(npy_header((capacity, *self.row_shape)))
        self._fh = open(self.path, "xb")  # noqa: SIM115 - closed by finish() / close()
        self._fh.write(npy_header((capacity, *self.row_shape)))
        self.capacity = capacity

    def append(self, row: np.ndarray) -> None:
        if row.dtype != np.uint8 or row.shape != self.row_shape:
            raise ValueError(f"row is {row.dtype}{list(row.shape)}, expected uint8{list(self.row_shape)}")
        if self.count >= self.capacity:
            raise ValueError(f"more than the {self.capacity} rows announced")
        self._fh.write(memoryview(np.ascontiguousarray(row)).cast("B"))
        self.count += 1

    def finish(self) -> int:
        """Rewrite the header with the final count, truncate, fsync, close; the file's size."""
        header = npy_header((self.count, *self.row_shape))
        if len(header) != self._header_len:  # a numpy without the growth padding (< 1.23)
            self.close()
            raise RuntimeError(f"{self.path}: the .npy header changed length with the row count "
                               "(numpy < 1.23?); cannot finish the file in place")
        size = self._header_len + self.count * self.row_bytes
        fh = self._fh
        fh.flush()
        fh.seek(0)
        fh.write(header)
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        return size

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
