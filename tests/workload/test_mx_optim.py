"""The canonical optimizers in MXNet against the numpy definition (`reference.py`), step by step.

test_optim_parity.py's 16 variants (plus four that reach the fused operators' L2 argument or
decoupled decay), tensors, gradients (1e-9 .. 1, so epsilon placement matters) and changing learning
rate, with its tolerances: float64 within 1e-9 of the step size; float32 within 1e-5 of the step
size plus 1e-6 of |w| (parameters are rounded to float32 every step). Float32 runs both paths
(the fused MXNet operators, the generic elementwise one), float64 the generic one (MXNet's
operator arguments are float32). MXNet runs in `.venv-mxnet` (mxnet_subprocess.py), all variants
in one subprocess. Two tests show MXNet's OWN SGD and Adam do not compute the canonical update."""

from __future__ import annotations

import numpy as np
import pytest

from runner.workload.optim import OptimConfig
from runner.workload.optim import reference as ref
from tests.workload.mxnet_subprocess import run_job
from tests.workload.test_optim_parity import (
    LR_FACTORS,
    STEPS,
    VARIANTS,
    assert_matches_reference,
    problem,
    run_reference,
)

# test_optim_parity's variants, plus L2 through the fused SGD-momentum and RMSprop operators' wd
MX_VARIANTS = VARIANTS | {
    "sgd_momentum_l2": dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd_dampening_l2": dict(name="sgd", lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "rmsprop_l2": dict(name="rmsprop", lr=1e-3, rho=0.9, weight_decay=0.01),
    "rmsprop_decoupled": dict(name="rmsprop", lr=1e-3, weight_decay=0.1, weight_decay_mode="decoupled"),
}
# (dtype, path): the fused operators serve float32 where MXNet has one; the generic path the rest
CASES = (("float64", "auto"), ("float32", "auto"), ("float32", "generic"))
FUSED = {"sgd", "sgd_l2", "sgd_momentum", "sgd_dampening_decoupled", "sgd_nesterov_l2", "sgd_nesterov_decoupled",
         "sgd_momentum_l2", "sgd_dampening_l2", "adam", "adam_l2", "adamw", "adam_betas_eps", "rmsprop",
         "rmsprop_keras_values", "rmsprop_l2", "rmsprop_decoupled"}  # not AMSGrad, centered or momentum RMSprop


@pytest.fixture(scope="module")
def mx_results(tmp_path_factory):
    w0, grads = problem()
    arrays = {f"w0_{i}": w for i, w in enumerate(w0)}
    arrays |= {f"g{k}_{i}": g for k in range(STEPS) for i, g in enumerate(grads[k])}
    return run_job("optimizer", tmp_path_factory.mktemp("mx_optim"),
                   {"variants": MX_VARIANTS, "cases": [list(c) for c in CASES], "lr_factors": LR_FACTORS}, arrays)


@pytest.mark.parametrize("dtype, path", CASES)
@pytest.mark.parametrize("variant", list(MX_VARIANTS))
def test_mx_optimizer_is_canonical(mx_results, variant, dtype, path):
    cfg = OptimConfig.from_dict(MX_VARIANTS[variant])
    w0, grads = problem()
    tag = f"{variant}:{dtype}:{path}"
    got = [mx_results[f"{tag}:w_{i}"].astype(np.float64) for i in range(len(w0))]
    assert mx_results[f"{tag}:w_0"].dtype == np.dtype(dtype)
    assert_matches_reference(got, run_reference(cfg, w0, grads), w0, dtype)


def test_float32_runs_the_fused_operators_where_they_exist(mx_results):
    # so the float32 'auto' cases above test the fused path, and the others the generic one
    for variant in MX_VARIANTS:
        assert bool(mx_results[f"{variant}:float32:auto:fused"]) == (variant in FUSED), variant
        assert not mx_results[f"{variant}:float32:generic:fused"] and not mx_results[f"{variant}:float64:auto:fused"]


def test_a_frozen_parameter_is_left_alone(tmp_path):
    # grad_req "null" (a frozen layer) gets no update and no decoupled decay; the other one does
    cfg = OptimConfig("adam", 0.1, weight_decay=0.5, weight_decay_mode="decoupled")
    out = run_job("gluon_parameters", tmp_path, {"optim": cfg.to_dict()})
    assert out["b"].tolist() == [1.0, 1.0, 1.0]
    want = ref.step(cfg, 0.1, np.ones(3), np.ones(3), ref.new_state((3,)))
    np.testing.assert_allclose(out["a"], want, rtol=1e-6)


def _stock(tmp_path, name: str, kwargs: dict, w0: np.ndarray, grads: list[np.ndarray], lrs: list[float]):
    arrays = {"w0": w0} | {f"g{k}": g for k, g in enumerate(grads)}
    return run_job("stock_optimizer", tmp_path, {"name": name, "kwargs": kwargs, "lrs": lrs}, arrays)["w"]


def test_mxnet_sgd_momentum_differs_once_the_lr_changes(tmp_path):
    cfg = OptimConfig("sgd", 0.1, momentum=0.9)
    w0, grads = problem()
    w0, grads = w0[:1], [g[:1] for g in grads]
    want = run_reference(cfg, w0, grads)[0]
    lrs = [cfg.lr * f for f in LR_FACTORS]
    got = _stock(tmp_path / "a", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.0, "rescale_grad": 1.0},
                 w0[0], [g[0] for g in grads], lrs)
    assert np.abs(got - want).max() > 1e-2  # MXNet keeps lr inside the momentum: mom = m mom - lr g
    # ... while at a constant lr the two agree (so the difference above is the formula, not a bug)
    const = [cfg.lr] * STEPS
    ref_const = w0[0].astype(np.float64)
    state = ref.new_state(w0[0].shape)
    for k in range(STEPS):
        ref_const = ref.step(cfg, cfg.lr, ref_const, grads[k][0], state)
    got_const = _stock(tmp_path / "b", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.0,
                                                "rescale_grad": 1.0}, w0[0], [g[0] for g in grads], const)
    np.testing.assert_allclose(got_const, ref_const, rtol=1e-5, atol=1e-6)


def test_mxnet_adam_differs_on_small_gradients(tmp_path):
    cfg = OptimConfig("adam", 1e-3, epsilon=1e-8)
    g = np.full((4,), 1e-8, np.float32)
    want = ref.step(cfg, cfg.lr, np.zeros(4), g, ref.new_state((4,)))
    got = _stock(tmp_path, "adam", {"learning_rate": 1e-3, "epsilon": 1e-8, "wd": 0.0, "rescale_grad": 1.0},
                 np.zeros(4, np.float32), [g], [1e-3])
    assert abs(got[0] - want[0]) > 0.1 * abs(want[0])
