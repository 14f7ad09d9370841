"""Augmentation decisions: one generator per (seed, epoch), applied identically and vectorised."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.data.augment import EpochPlan, apply_batch, normalize_ops, plan_epoch
from runner.errors import SpecError

OPS = [{"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
       {"op": "brightness", "max_delta": 0.2}]
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)


def test_every_decision_comes_from_one_generator_seeded_with_seed_and_epoch():
    plan = plan_epoch(3, 2, 50, OPS)
    rng = np.random.default_rng([3, 2])
    np.testing.assert_array_equal(plan.order, rng.permutation(50))
    np.testing.assert_array_equal(plan.decisions[0], rng.integers(0, 9, size=(50, 2)))
    np.testing.assert_array_equal(plan.decisions[1], rng.random(50) < 0.5)
    np.testing.assert_array_equal(plan.decisions[2], rng.uniform(0.8, 1.2, size=50))


def test_plans_are_reproducible_and_differ_across_epochs_and_seeds():
    a, b = plan_epoch(1, 0, 100, OPS), plan_epoch(1, 0, 100, OPS)
    assert a.digest() == b.digest()
    assert plan_epoch(1, 1, 100, OPS).digest() != a.digest()
    assert plan_epoch(2, 0, 100, OPS).digest() != a.digest()
    assert plan_epoch(1, 0, 100, OPS[:2]).digest() != a.digest()
    assert sorted(a.order.tolist()) == list(range(100))


def test_batches_do_not_depend_on_the_batch_size(images):
    plan = plan_epoch(5, 1, 50, OPS)
    whole = apply_batch(images, plan, slice(0, 50), OPS, MEAN, STD)
    for bs in (1, 7, 16):
        parts = [apply_batch(images, plan, slice(i, i + bs), OPS, MEAN, STD) for i in range(0, 50, bs)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def _reference(img: np.ndarray, dy: int, dx: int, pad: int, flip: bool, factor: float) -> np.ndarray:
    """One image, the slow obvious way."""
    h, w, _ = img.shape
    padded = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    padded[pad:pad + h, pad:pad + w] = img
    out = padded[dy:dy + h, dx:dx + w].astype(np.float32)
    if flip:
        out = out[:, ::-1]
    out = np.clip(out * np.float32(factor), 0, 255)
    return (out / np.float32(255) - np.float32(MEAN)) / np.float32(STD)


def test_vectorised_application_matches_a_per_image_reference(images):
    plan = plan_epoch(9, 0, 50, OPS)
    batch = apply_batch(images, plan, slice(10, 30), OPS, MEAN, STD)
    assert batch.dtype == np.float32 and batch.shape == (20, 32, 32, 3) and batch.flags.c_contiguous
    for j, pos in enumerate(range(10, 30)):
        (dy, dx), flip, factor = plan.decisions[0][pos], plan.decisions[1][pos], plan.decisions[2][pos]
        ref = _reference(images[plan.order[pos]], dy, dx, 4, flip, factor)
        np.testing.assert_allclose(batch[j], ref, rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(pad=st.integers(0, 6), seed=st.integers(0, 2**32 - 1), h=st.integers(1, 12), w=st.integers(1, 12))
def test_crop_is_a_window_of_the_zero_padded_image(pad, seed, h, w):
    x = np.random.default_rng(seed).integers(1, 256, size=(5, h, w, 3), dtype=np.uint8)
    ops = [{"op": "random_crop", "padding": pad}]
    plan = plan_epoch(seed, 0, 5, ops)
    out = apply_batch(x, plan, slice(0, 5), ops, (0, 0, 0), (1 / 255,) * 3)  # out == pixel values
    for j in range(5):
        dy, dx = plan.decisions[0][j]
        assert 0 <= dy <= 2 * pad and 0 <= dx <= 2 * pad
        padded = np.pad(x[plan.order[j]], ((pad, pad), (pad, pad), (0, 0)))
        np.testing.assert_allclose(out[j], padded[dy:dy + h, dx:dx + w], atol=1e-3)


def test_flip_probability_extremes_and_brightness_range():
    never = plan_epoch(0, 0, 1000, [{"op": "horizontal_flip", "p": 0.0}])
    always = plan_epoch(0, 0, 1000, [{"op": "horizontal_flip", "p": 1.0}])
    assert not never.decisions[0].any() and always.decisions[0].all()
    b = plan_epoch(0, 0, 1000, [{"op": "brightness", "max_delta": 0.3}]).decisions[0]
    assert 0.7 <= b.min() < 0.75 and 1.25 < b.max() <= 1.3


def test_brightness_is_multiplicative_and_clipped():
    x = np.full((2, 2, 2, 3), 200, np.uint8)
    ops = [{"op": "brightness", "max_delta": 0.5}]
    plan = EpochPlan(seed=0, epoch=0, n=2, ops=normalize_ops(ops), order=np.arange(2),
                     decisions=(np.array([0.5, 1.5]),))
    out = apply_batch(x, plan, slice(0, 2), ops, (0, 0, 0), (1 / 255,) * 3)
    np.testing.assert_allclose(out[0], 100, atol=1e-3)
    np.testing.assert_allclose(out[1], 255, atol=1e-3)  # 300 clipped


def test_normalisation_formula():
    x = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20
    plan = EpochPlan.identity(1)
    out = apply_batch(x, plan, slice(0, 1), [], MEAN, STD)
    expected = (x.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    np.testing.assert_array_equal(out, expected)


def test_identity_plan_keeps_only_deterministic_ops(images):
    plan = EpochPlan.identity(50, OPS + [{"op": "resize", "size": 40}])
    assert [op["op"] for op in plan.ops] == ["resize"]
    np.testing.assert_array_equal(plan.order, np.arange(50))
    out = apply_batch(images, plan, slice(0, 5), [{"op": "resize", "size": 40}], MEAN, STD)
    assert out.shape == (5, 40, 40, 3)


def test_ops_must_match_the_plan(images):
    plan = plan_epoch(0, 0, 50, OPS)
    with pytest.raises(SpecError, match="differ from the ops the plan"):
        apply_batch(images, plan, slice(0, 4), OPS[:2], MEAN, STD)


@pytest.mark.parametrize("ops,field", [
    ([{"op": "rotate"}], "ops[0].op"),
    ([{"op": "random_crop", "padding": -1}], "ops[0].padding"),
    ([{"op": "random_crop", "padding": 2.5}], "ops[0].padding"),
    ([{"op": "horizontal_flip", "p": 1.5}], "ops[0].p"),
    ([{"op": "brightness", "max_delta": True}], "ops[0].max_delta"),
    ([{"op": "resize"}], "ops[0].size"),
    ([{"op": "resize", "size": 8, "method": "bicubic"}], "ops[0].method"),
    ([OPS[0], {"op": "horizontal_flip", "prob": 0.5}], "ops[1]"),
    ([["random_crop"]], "ops[0]"),
    ({"op": "random_crop"}, "ops"),
])
def test_bad_ops_are_refused_with_the_field(ops, field):
    with pytest.raises(SpecError) as exc:
        normalize_ops(ops)
    assert exc.value.field == field


def test_defaults_match_the_spec_defaults():
    assert normalize_ops([{"op": "random_crop"}, {"op": "horizontal_flip"}, {"op": "brightness"},
                          {"op": "resize", "size": 64}]) == (
        {"op": "random_crop", "padding": 4}, {"op": "horizontal_flip", "p": 0.5},
        {"op": "brightness", "max_delta": 0.2}, {"op": "resize", "size": 64, "method": "bilinear"})


def test_bad_mean_std_and_inputs(images):
    plan = plan_epoch(0, 0, 50, [])
    with pytest.raises(SpecError, match="mean and std"):
        apply_batch(images, plan, slice(0, 2), [], (0.5, 0.5), STD)
    with pytest.raises(SpecError, match="mean and std"):
        apply_batch(images, plan, slice(0, 2), [], MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(SpecError, match="uint8 NHWC"):
        apply_batch(images.astype(np.float32), plan, slice(0, 2), [], MEAN, STD)
    with pytest.raises(SpecError, match="non-negative"):
        plan_epoch(-1, 0, 5, [])


# -- resize parity with the frameworks (half-pixel centres) ---------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [224, 48, 20, 32])
def test_resize_matches_torch(images, method, size):
    torch = pytest.importorskip("torch")
    ops = [{"op": "resize", "size": size, "method": method}]
    ours = apply_batch(images, EpochPlan.identity(50, ops), slice(0, 8), ops, (0, 0, 0), (1 / 255,) * 3)
    t = torch.from_numpy(images[:8].astype(np.float32)).permute(0, 3, 1, 2)
    mode = "bilinear" if method == "bilinear" else "nearest-exact"
    kwargs = {"align_corners": False} if method == "bilinear" else {}
    ref = torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kwargs).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.tensorflow
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_resize_matches_tensorflow(images, method):
    tf = pytest.importorskip("tensorflow")
    ops = [{"op": "resize", "size": 72, "method": method}]
    ours = apply_batch(images, EpochPlan.identity(50, ops), slice(0, 4), ops, (0, 0, 0), (1 / 255,) * 3)
    ref = tf.image.resize(images[:4].astype(np.float32), (72, 72), method=method, antialias=False).numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)
