"""Batches of variable-size images (ImageNet): decoded in worker processes into shared memory.

Each image of a batch is made by `decode.py` from a *transform* fixed before any pixel is
touched: for training, the random-resized-crop uniforms and the flip of its epoch position
(`augment.plan_epoch`, op `random_resized_crop`); for evaluation, the centre crop. The
pixels are therefore a pure function of (source bytes, transform), whichever process makes
them: `workers=0` (in-process) and `workers=k` (a pool of k spawned processes writing into a
ring of `multiprocessing.shared_memory` batch buffers) give byte-identical batches (tested), and
so do the PyTorch and TensorFlow harnesses, which both read this iterator.

Sources: a list of JPEG files (`FileSource`: root + relative paths, decoded each time), or the
uint8 array of prepared shards (`ArraySource`: a .npy file the workers memory-map themselves).
Spawned, not forked, workers: the parent may already run TensorFlow's or PyTorch's threads.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from runner.data import decode
from runner.data.augment import EpochPlan, Op, normalize_ops, output_side, plan_epoch
from runner.errors import UsageError

Batch = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FileSource:
    root: str
    files: tuple[str, ...]  # relative paths, one per image index

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class ArraySource:
    npy: str  # a uint8 (N, H, W, 3) .npy file, memory-mapped read-only by whoever reads it

    def __len__(self) -> int:
        return int(_array(self.npy).shape[0])


_ARRAYS: dict[str, np.ndarray] = {}


def _array(npy: str) -> np.ndarray:
    arr = _ARRAYS.get(npy)
    if arr is None:
        arr = _ARRAYS[npy] = np.load(npy, mmap_mode="r", allow_pickle=False)
    return arr


# A transform: ("rrc", u (10x4 float64), scale, ratio, size, flip) | ("center", size, crop_fraction)
# | ("check",) (decode, no pixels kept)
Transform = tuple


def render(source: FileSource | ArraySource, index: int, transform: Transform) -> np.ndarray:
    """One image's uint8 (size, size, 3) pixels: decode (or take the shard), crop, resize, flip."""
    if isinstance(source, FileSource):
        path = os.path.join(source.root, source.files[index])
        from runner.data.files import read_regular_file

        img = decode.open_rgb(read_regular_file(Path(path), decode.MAX_FILE_BYTES, "image"), path)
    else:
        img = decode.from_array(_array(source.npy)[index])
    if transform[0] == "check":  # decode only: the host's check of every JPEG a decode: jpeg run reads
        return np.empty((0, 0, 3), np.uint8)
    w, h = img.size
    if transform[0] == "rrc":
        _, u, scale, ratio, size, flip = transform
        out = decode.crop_resize(img, decode.rrc_box(u, w, h, scale, ratio), size)
        return out[:, ::-1] if flip else out
    _, size, crop_fraction = transform
    return decode.crop_resize(img, decode.center_box(w, h, size, crop_fraction), size)


# -- worker side -----------------------------------------------------------------------------------

_SOURCE: FileSource | ArraySource | None = None
_SHM: dict[str, SharedMemory] = {}


def _init(source: FileSource | ArraySource) -> None:
    global _SOURCE
    _SOURCE = source


def _fill(shm_name: str, shape: tuple[int, ...], row0: int, items: list[tuple[int, Transform]]) -> None:
    shm = _SHM.get(shm_name)
    if shm is None:
        # spawned workers share the parent's resource tracker: the parent's unlink unregisters it
        shm = _SHM[shm_name] = SharedMemory(name=shm_name)
    out = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf)
    assert _SOURCE is not None
    for k, (index, transform) in enumerate(items):
        out[row0 + k] = render(_SOURCE, index, transform)


# -- the iterator ----------------------------------------------------------------------------------

def transforms_for(plan: EpochPlan, positions: slice, size: int, crop_fraction: float) -> list[Transform]:
    """The per-image transforms of plan positions: random-resized-crop + flip, or the centre crop."""
    n = positions.stop - positions.start
    rrc = next(((op, d) for op, d in zip(plan.ops, plan.decisions, strict=True)
                if op["op"] == "random_resized_crop"), None)
    if rrc is None:
        return [("center", size, crop_fraction)] * n
    op, u = rrc
    flip = next((d for o, d in zip(plan.ops, plan.decisions, strict=True) if o["op"] == "horizontal_flip"), None)
    return [("rrc", u[p], tuple(op["scale"]), tuple(op["ratio"]), size,
             bool(flip[p]) if flip is not None else False) for p in range(positions.start, positions.stop)]


class ImageBatches:
    """(x float32 NHWC normalised, y int64) batches of plan positions; see module docstring."""

    def __init__(self, source: FileSource | ArraySource, labels: np.ndarray, plan: EpochPlan, batch_size: int,
                 size: int, mean: Sequence[float], std: Sequence[float], *, crop_fraction: float = 0.875,
                 drop_last: bool = False, workers: int = 0, prefetch: int = 2,
                 shard: tuple[int, int] = (0, 1)) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size")
        if workers < 0 or prefetch < 0:
            raise UsageError("workers and prefetch must be >= 0", field="workers")
        self.source, self.labels, self.plan = source, np.asarray(labels, dtype=np.int64), plan
        self.batch_size, self.size, self.crop_fraction = batch_size, size, crop_fraction
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.drop_last, self.workers, self.prefetch = drop_last, workers, max(1, prefetch)
        rank, replicas = shard
        if not 0 <= rank < replicas:
            raise UsageError(f"shard must be (rank, replicas) with 0 <= rank < replicas, got {shard!r}", field="shard")
        self.shard = shard

    def __len__(self) -> int:
        n = self.plan.n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _positions(self, b: int) -> slice:
        """Batch b's plan positions; a data-parallel replica takes its slice of the global batch."""
        rank, replicas = self.shard
        start = b * self.batch_size
        size = min(self.batch_size, self.plan.n - start)
        return slice(start + rank * size // replicas, start + (rank + 1) * size // replicas)

    def _finish(self, u8: np.ndarray, positions: slice) -> Batch:
        x = u8.astype(np.float32)
        x /= np.float32(255.0)
        x -= self.mean
        x /= self.std
        return x, self.labels[self.plan.order[positions]]

    def uint8_batches(self) -> Iterator[tuple[np.ndarray, slice]]:
        """The raw uint8 batches (a fresh array each) with their positions: what both frameworks share."""
        if self.workers == 0:
            for b in range(len(self)):
                pos = self._positions(b)
                tr = transforms_for(self.plan, pos, self.size, self.crop_fraction)
                out = np.empty((len(tr), self.size, self.size, 3), np.uint8)
                for k, (i, t) in enumerate(zip(self.plan.order[pos], tr, strict=True)):
                    out[k] = render(self.source, int(i), t)
                yield out, pos
            return
        yield from self._pooled()

    def _pooled(self) -> Iterator[tuple[np.ndarray, slice]]:
        shape = (self.batch_size, self.size, self.size, 3)
        nbytes = int(np.prod(shape))
        slots = [SharedMemory(create=True, size=nbytes) for _ in range(self.prefetch + 1)]
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=_init, initargs=(self.source,))
        pending: dict[int, tuple[list[Future], slice]] = {}
        try:
            def submit(b: int) -> None:
                pos = self._positions(b)
                tr = transforms_for(self.plan, pos, self.size, self.crop_fraction)
                items = [(int(i), t) for i, t in zip(self.plan.order[pos], tr, strict=True)]
                step = max(1, math.ceil(len(items) / self.workers))
                slot = slots[b % len(slots)]
                pending[b] = ([pool.submit(_fill, slot.name, shape, r, items[r:r + step])
                               for r in range(0, len(items), step)], pos)

            total = len(self)
            for b in range(min(self.prefetch, total)):
                submit(b)
            for b in range(total):
                futures, pos = pending.pop(b)
                for f in futures:
                    f.result()  # re-raises a worker's error (one line) here
                view = np.ndarray(shape, dtype=np.uint8, buffer=slots[b % len(slots)].buf)
                batch = view[: pos.stop - pos.start].copy()
                del view
                if b + self.prefetch < total:
                    submit(b + self.prefetch)
                yield batch, pos
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for s in slots:
                s.close()
                s.unlink()

    def __iter__(self) -> Iterator[Batch]:
        for u8, pos in self.uint8_batches():
            yield self._finish(u8, pos)


def render_all(source: FileSource | ArraySource, indices: Sequence[int], transforms: Sequence[Transform],
               workers: int = 0, chunk: int = 16) -> Iterator[np.ndarray | BaseException]:
    """Render many images in order (prepare's pre-decoding), yielding each as it is done; a
    failure is yielded in its place, not raised.

    With workers, at most 2 x workers chunks of `chunk` images are in flight (submitted or done
    but not yet consumed), so the memory held here is bounded whatever the number of images
    (`Executor.map` would submit them all at once and keep every finished result)."""
    items = list(zip(indices, transforms, strict=True))
    if workers == 0:
        for i, t in items:
            yield _try(source, i, t)
        return
    chunks = (items[k:k + chunk] for k in range(0, len(items), chunk))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_init, initargs=(source,)) as pool:
        pending: deque[Future] = deque(pool.submit(_try_many, c) for c in itertools.islice(chunks, 2 * workers))
        while pending:
            done = pending.popleft().result()
            following = next(chunks, None)
            if following is not None:
                pending.append(pool.submit(_try_many, following))
            yield from done
            del done


def _try(source: FileSource | ArraySource, i: int, t: Transform) -> np.ndarray | BaseException:
    try:
        return render(source, i, t)
    except decode.BadImage as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's, reported by path
        where = os.path.join(source.root, source.files[i]) if isinstance(source, FileSource) else f"image {i}"
        return decode.BadImage(f"cannot be decoded ({type(exc).__name__}: {exc})", file=where)


def _try_many(items: list[tuple[int, Transform]]) -> list[np.ndarray | BaseException]:
    assert _SOURCE is not None
    return [_try(_SOURCE, *item) for item in items]


def default_workers() -> int:
    """Decoding processes: the CPUs this process may use, at most 4 (0: decode in-process)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cpus <= 1 else min(4, cpus)


def epoch_batches(prepared, split: str, batch_size: int, seed: int, epoch: int, ops: Sequence[Op],
                  mean: Sequence[float], std: Sequence[float], *, drop_last: bool = False, prefetch: int = 0,
                  shard: tuple[int, int] = (0, 1), workers: int | None = None):
    """The batches of one epoch of a prepared split, for any framework.

    ImageNet with a `random_resized_crop` op goes through `ImageBatches` (Pillow, worker
    processes): training draws the crop and flip per image from the plan; evaluation is the
    centre crop. From pre-decoded shards (`decode: shards`) the crop is drawn on the shard's
    pixels and evaluation resizes the (already centre-cropped) val shards to the output side;
    from JPEGs (`decode: jpeg`, a `jpeg_index.JpegDataset`) both work on the original files,
    evaluation with the EVAL_CROP_FRACTION centre crop. Everything else is the array loader
    (`loader.BatchIterator`; a JpegDataset's arrays render the shards' pixels on demand).
    """
    from runner.data.jpeg_index import JpegDataset
    from runner.data.loader import BatchIterator

    norm = normalize_ops(ops)
    if prepared.name != "imagenet" or not any(op["op"] == "random_resized_crop" for op in norm):
        extra = {"shard": shard} if shard != (0, 1) else {}
        return BatchIterator(prepared, split, batch_size, seed, epoch, ops, mean, std,
                             drop_last=drop_last, prefetch=prefetch, **extra)
    x, y = prepared.split(split)
    plan = plan_epoch(seed, epoch, len(y), norm) if split == "train" else EpochPlan.identity(len(y), norm)
    side = output_side(int(x.shape[1]), norm)
    if isinstance(prepared, JpegDataset):
        from runner.data.imagenet_prepare import EVAL_CROP_FRACTION

        source: FileSource | ArraySource = prepared.train_source if split == "train" else prepared.test_source
        crop_fraction = EVAL_CROP_FRACTION
    else:
        source, crop_fraction = ArraySource(str(prepared.path / f"{split}_x.npy")), 1.0
    return ImageBatches(source, y, plan, batch_size, side, mean, std,
                        crop_fraction=crop_fraction, drop_last=drop_last,
                        workers=default_workers() if workers is None else workers,
                        prefetch=max(1, prefetch), shard=shard if split == "train" else (0, 1))
