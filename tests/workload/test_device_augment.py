"""Device-side augmentation equals the host path; the device prefetcher keeps order and never overwrites.

The reference is the host path as a run uses it today: `runner.data.augment.apply_batch` on the
plan's positions (float32 NHWC), transposed to NCHW as `TorchBackend.to_device` does. The device
result is `DeviceAugment` on the uint8 images at the same positions with `batch_decisions` of the
SAME `plan_epoch` plan. Crop, flip and nearest resize (copies of values) must be bit-identical;
brightness and bilinear resize within the bound the module documents: 0 ulp on CPU (each float
operation is one correctly rounded float32 operation, in numpy's order), 1 ulp on CUDA (the
issue's bound; expected 0). Every test runs on CPU and, where PyTorch sees a GPU, on CUDA too.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from runner.data.augment import apply_batch, plan_epoch  # noqa: E402
from runner.errors import SpecError  # noqa: E402
from runner.workload.harness.device_augment import (  # noqa: E402
    DeviceAugment,
    DevicePrefetcher,
    augment_batch,
    batch_decisions,
    check_supported,
)

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # CIFAR-100's
ULP_BOUND = {"cpu": 0, "cuda": 1}


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    torch.set_num_threads(1)
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return request.param


def images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    x[0] = 0  # the extremes: clamping and zero padding next to black and white pixels
    x[1] = 255
    return x


def host(x_all: np.ndarray, plan, positions, ops) -> np.ndarray:
    """What TorchBackend.to_device gets from the host path, in its NCHW layout."""
    out = apply_batch(x_all, plan, positions, ops, MEAN, STD)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def on_device(x_all: np.ndarray, plan, positions, ops, device: str, aug: DeviceAugment | None = None,
              decisions_on_device: bool = False) -> np.ndarray:
    x = torch.from_numpy(x_all[plan.order[positions]]).to(device)
    decisions = batch_decisions(plan, positions)
    if decisions_on_device:
        decisions = tuple(None if d is None else torch.from_numpy(d).to(device) for d in decisions)
    aug = aug or DeviceAugment(ops, MEAN, STD, device)
    out = aug(x, decisions)
    assert out.device.type == device and out.dtype == torch.float32 and out.is_contiguous()
    return out.cpu().numpy()


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance in units of the last place between two float32 arrays (0 = bit-identical)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32

    def ordered(x: np.ndarray) -> np.ndarray:
        i = x.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(2**31) - i, i)  # monotonic in the float's value; -0 and +0 both 0

    return int(np.abs(ordered(a) - ordered(b)).max()) if a.size else 0


EXACT_CASES = {
    "crop": [{"op": "random_crop", "padding": 4}],
    "crop_p0": [{"op": "random_crop", "padding": 0}],
    "crop_p9": [{"op": "random_crop", "padding": 9}],
    "flip": [{"op": "horizontal_flip", "p": 0.5}],
    "flip_all": [{"op": "horizontal_flip", "p": 1.0}],
    "crop_flip": [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5}],
    "flip_crop": [{"op": "horizontal_flip", "p": 0.3}, {"op": "random_crop", "padding": 2}],
    "nearest_up": [{"op": "resize", "size": 48, "method": "nearest"}],
    "nearest_down": [{"op": "resize", "size": 20, "method": "nearest"}],
    "normalise_only": [],
}
FLOAT_CASES = {
    "brightness": [{"op": "brightness", "max_delta": 0.2}],
    "brightness_full": [{"op": "brightness", "max_delta": 1.0}],  # factors 0..2: clamps at both ends
    "bilinear_up": [{"op": "resize", "size": 40, "method": "bilinear"}],
    "bilinear_down": [{"op": "resize", "size": 24, "method": "bilinear"}],
    "bilinear_224": [{"op": "resize", "size": 224, "method": "bilinear"}],
    "cifar_all": [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
                  {"op": "brightness", "max_delta": 0.2}, {"op": "resize", "size": 40, "method": "bilinear"}],
    "float_then_geometric": [{"op": "brightness", "max_delta": 0.4}, {"op": "random_crop", "padding": 4},
                             {"op": "horizontal_flip", "p": 0.5}, {"op": "resize", "size": 28, "method": "nearest"}],
    "resize_then_crop": [{"op": "resize", "size": 36, "method": "bilinear"}, {"op": "random_crop", "padding": 3},
                         {"op": "brightness", "max_delta": 0.1}],
}


@pytest.mark.parametrize("case", sorted(EXACT_CASES))
def test_crop_flip_and_nearest_are_bit_identical(case, device):
    ops = EXACT_CASES[case]
    x_all = images(96)
    for epoch in (0, 1):
        plan = plan_epoch(3, epoch, len(x_all), ops)
        aug = DeviceAugment(ops, MEAN, STD, device)
        for positions in (slice(0, 40), slice(40, 80), slice(80, 96)):  # the last batch short
            ref = host(x_all, plan, positions, ops)
            got = on_device(x_all, plan, positions, ops, device, aug)
            assert got.tobytes() == ref.tobytes(), case


@pytest.mark.parametrize("case", sorted(FLOAT_CASES))
def test_brightness_and_bilinear_within_the_documented_bound(case, device):
    ops = FLOAT_CASES[case]
    x_all = images(48 if case == "bilinear_224" else 96)
    worst = 0
    for epoch in (0, 1):
        plan = plan_epoch(5, epoch, len(x_all), ops)
        aug = DeviceAugment(ops, MEAN, STD, device)
        for positions in (slice(0, 16), slice(16, 48)):
            ref = host(x_all, plan, positions, ops)
            got = on_device(x_all, plan, positions, ops, device, aug, decisions_on_device=epoch == 1)
            worst = max(worst, ulps(got, ref))
    print(f"{case} on {device}: {worst} ulp")
    assert worst <= ULP_BOUND[device], f"{case}: {worst} ulp on {device}"


def test_non_square_images_and_positions_as_an_index_array(device):
    ops = EXACT_CASES["crop_flip"] + [{"op": "brightness", "max_delta": 0.3}]
    x_all = images(64, h=20, w=28)
    plan = plan_epoch(11, 2, len(x_all), ops)
    positions = np.array([5, 3, 60, 0, 17])  # a data-parallel shard's positions need not be a slice
    ref = host(x_all, plan, positions, ops)
    got = on_device(x_all, plan, positions, ops, device)
    assert got.shape == (5, 3, 20, 28)
    assert ulps(got, ref) <= ULP_BOUND[device]


def test_one_off_form_and_channels_last(device):
    ops = EXACT_CASES["crop_flip"]
    x_all = images(32)
    plan = plan_epoch(0, 0, len(x_all), ops)
    x = torch.from_numpy(x_all[plan.order[:8]]).to(device)
    ref = host(x_all, plan, slice(0, 8), ops)
    assert augment_batch(x, ops, batch_decisions(plan, slice(0, 8)), MEAN, STD).cpu().numpy().tobytes() \
        == ref.tobytes()
    cl = DeviceAugment(ops, MEAN, STD, device, memory_format=torch.channels_last)(x, batch_decisions(plan, slice(0, 8)))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert np.array_equal(cl.cpu().numpy(), ref)


def test_an_op_the_device_cannot_apply_is_refused_naming_the_field():
    ops = [{"op": "horizontal_flip"}, {"op": "random_resized_crop", "size": 32}]
    with pytest.raises(SpecError) as err:
        check_supported(ops)
    assert err.value.field == "data.augmentation[1].op"
    assert "random_resized_crop" in err.value.describe() and "fix:" in err.value.describe()
    with pytest.raises(SpecError, match="random_resized_crop"):
        DeviceAugment(ops, MEAN, STD, "cpu")
    with pytest.raises(SpecError) as err:
        check_supported([{"op": "random_crop", "padding": 4}, {"op": "solarize"}])
    assert err.value.field == "data.augmentation[1].op"
    assert [op["op"] for op in check_supported(FLOAT_CASES["cifar_all"])] == [
        "random_crop", "horizontal_flip", "brightness", "resize"]


def test_bad_batches_are_refused():
    ops = EXACT_CASES["crop_flip"]
    aug = DeviceAugment(ops, MEAN, STD, "cpu")
    x_all = images(16)
    plan = plan_epoch(0, 0, 16, ops)
    x = torch.from_numpy(x_all[:8])
    decisions = batch_decisions(plan, slice(0, 8))
    with pytest.raises(SpecError, match="uint8 NHWC"):
        aug(x.float(), decisions)
    with pytest.raises(SpecError, match="uint8 NHWC"):
        aug(x.permute(0, 3, 1, 2), decisions)  # NCHW: 32 "channels"
    with pytest.raises(SpecError, match="2 ops"):
        aug(x, decisions[:1])
    with pytest.raises(SpecError, match="decisions for 16 images, batch of 8"):
        aug(x, batch_decisions(plan, slice(0, 16)))
    with pytest.raises(SpecError, match="needs its decisions"):
        aug(x, (None, decisions[1]))
    with pytest.raises(SpecError, match="std > 0"):
        DeviceAugment(ops, MEAN, (0.2, 0.0, 0.2), "cpu")


# -- the prefetcher ------------------------------------------------------------------------------

class ReusingSource:
    """Yields (x, y, (offsets, None, flips), tag) items from ONE set of arrays overwritten in place
    for every item (what a shared-memory loader may do); the last item is a short batch."""

    def __init__(self, batches: int, batch: int = 6, last: int = 4) -> None:
        self.sizes = [batch] * (batches - 1) + [last]
        self.x = np.zeros((batch, 4, 5, 3), dtype=np.uint8)
        self.y = np.zeros(batch, dtype=np.int64)
        self.offsets = np.zeros((batch, 2), dtype=np.int64)
        self.flips = np.zeros(batch, dtype=bool)
        self.closed = False

    @staticmethod
    def expected(k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = ((np.arange(n * 4 * 5 * 3) + 7 * k) % 251).astype(np.uint8).reshape(n, 4, 5, 3)
        return x, np.arange(n, dtype=np.int64) + 100 * k, np.full((n, 2), k, dtype=np.int64), \
            (np.arange(n) + k) % 2 == 0

    def __iter__(self):
        try:
            for k, n in enumerate(self.sizes):
                x, y, off, flip = self.expected(k, n)
                self.x[:n], self.y[:n], self.offsets[:n], self.flips[:n] = x, y, off, flip
                self.x[n:] = 255  # garbage past a short batch
                yield self.x[:n], self.y[:n], (self.offsets[:n], None, self.flips[:n]), k
        finally:
            self.closed = True


@pytest.mark.parametrize("staging", [False, True], ids=["passthrough", "staging"])
def test_prefetcher_same_batches_same_order_and_held_batches_stay_intact(device, staging):
    if device == "cuda" and not staging:
        pytest.skip("CUDA always stages")
    src = ReusingSource(batches=7)
    pre = DevicePrefetcher(iter(src), device, staging=staging)
    held = list(pre)  # every batch kept while later ones arrive: none may be overwritten
    assert [item[3] for item in held] == list(range(7))
    for k, (x, y, (off, none, flip), tag) in enumerate(held):
        ex, ey, eoff, eflip = ReusingSource.expected(k, src.sizes[k])
        assert none is None and tag == k
        for got, want in ((x, ex), (y, ey), (off, eoff), (flip, eflip)):
            assert isinstance(got, torch.Tensor) and got.device.type == device
            assert got.dtype == torch.from_numpy(want).dtype and np.array_equal(got.cpu().numpy(), want)
    if staging:  # two slots x four arrays, allocated once: the other five batches reuse them
        assert pre.staging_allocations == 8
    assert next(pre, "end") == "end"


def test_prefetcher_stages_read_only_and_strided_arrays(device):
    base = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    ro = base.copy()
    ro.setflags(write=False)
    items = [(ro, base.transpose(0, 3, 1, 2)), (np.zeros((0, 3), np.float32), np.float64(2.5))]
    got = list(DevicePrefetcher(iter(items), device, staging=True))
    assert np.array_equal(got[0][0].cpu().numpy(), ro)
    assert np.array_equal(got[0][1].cpu().numpy(), base.transpose(0, 3, 1, 2))
    assert got[1][0].shape == (0, 3) and got[1][1] == 2.5  # a numpy scalar is not an array: kept


def test_prefetcher_raises_a_source_error_after_the_items_before_it(device):
    def failing():
        yield (np.ones(3, np.uint8),)
        yield (np.full(3, 2, np.uint8),)
        raise RuntimeError("loader died")

    pre = DevicePrefetcher(failing(), device)
    assert next(pre)[0].cpu().tolist() == [1, 1, 1]
    assert next(pre)[0].cpu().tolist() == [2, 2, 2]
    with pytest.raises(RuntimeError, match="loader died"):
        next(pre)


def test_prefetcher_close_closes_the_source():
    src = ReusingSource(batches=5)
    pre = DevicePrefetcher(iter(src), "cpu")
    next(pre)
    pre.close()
    assert src.closed
    assert next(pre, "end") == "end"
    with pytest.raises(ValueError, match="pinned"):
        DevicePrefetcher(iter(()), "cuda", staging=False)


def test_prefetched_device_augmentation_equals_the_host_epoch(device):
    """The wiring the module docstring describes, end to end on one device: uint8 images in plan
    order + labels + the batch's decisions -> prefetcher -> DeviceAugment == the host batches."""
    ops = FLOAT_CASES["cifar_all"]
    x_all = images(70)
    labels = np.arange(70, dtype=np.int64) % 100
    plan = plan_epoch(1, 0, len(x_all), ops)
    batch = 16
    spans = [slice(s, min(s + batch, plan.n)) for s in range(0, plan.n, batch)]
    source = ((x_all[plan.order[p]], labels[plan.order[p]], batch_decisions(plan, p)) for p in spans)
    aug = DeviceAugment(ops, MEAN, STD, device)
    got = [(aug(x, dec), y) for x, y, dec in DevicePrefetcher(source, device)]
    assert len(got) == len(spans) == 5
    for (x, y), p in zip(got, spans, strict=True):
        assert ulps(x.cpu().numpy(), host(x_all, plan, p, ops)) <= ULP_BOUND[device]
        assert np.array_equal(y.cpu().numpy(), labels[plan.order[p]])
