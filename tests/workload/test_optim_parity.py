"""The canonical optimizers: PyTorch and TensorFlow against the numpy definition, step by step.

Each variant runs 6 steps on the same tensors with the same gradient sequence and a learning rate
that changes every step (that is what separates PyTorch's SGD momentum from Keras'). Gradients
span 1e-9 .. 1 in magnitude so epsilon placement matters (Adam's epsilon vs epsilon-hat,
RMSprop's epsilon inside vs outside the sqrt).

Tolerances. float64: the frameworks must equal the float64 reference to 1e-9 of the step size
(only rounding differs). float32: parameters are rounded to float32 every step (relative 6e-8 of
|w| per step), so the bound is 1e-5 of the step size plus 1e-6 of |w|.
"""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import SpecError
from runner.workload.optim import OptimConfig
from runner.workload.optim import reference as ref

SHAPES = [(3, 4, 5), (7,)]
LR_FACTORS = [1.0, 0.5, 2.0, 2.0, 0.1, 1.0]
STEPS = len(LR_FACTORS)

VARIANTS = {
    "sgd": dict(name="sgd", lr=0.1),
    "sgd_l2": dict(name="sgd", lr=0.1, weight_decay=0.01),
    "sgd_momentum": dict(name="sgd", lr=0.1, momentum=0.9),
    "sgd_dampening_decoupled": dict(name="sgd", lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01,
                                    weight_decay_mode="decoupled"),
    "sgd_nesterov_l2": dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgd_nesterov_decoupled": dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                                   weight_decay_mode="decoupled"),
    "adam": dict(name="adam", lr=1e-3),
    "adam_l2": dict(name="adam", lr=1e-3, weight_decay=0.01),
    "adamw": dict(name="adam", lr=1e-3, weight_decay=0.1, weight_decay_mode="decoupled"),
    "adam_amsgrad_l2": dict(name="adam", lr=1e-3, amsgrad=True, weight_decay=0.01),
    "adam_betas_eps": dict(name="adam", lr=1e-3, beta1=0.8, beta2=0.99, epsilon=1e-7),
    "rmsprop": dict(name="rmsprop", lr=1e-3),
    "rmsprop_keras_values": dict(name="rmsprop", lr=1e-3, rho=0.9, epsilon=1e-7),
    "rmsprop_momentum_l2": dict(name="rmsprop", lr=1e-3, momentum=0.9, weight_decay=0.01),
    "rmsprop_centered": dict(name="rmsprop", lr=1e-3, centered=True),
    "rmsprop_centered_momentum_decoupled": dict(name="rmsprop", lr=1e-3, centered=True, momentum=0.5,
                                                weight_decay=0.1, weight_decay_mode="decoupled"),
}


def problem(seed: int = 0):
    """Initial tensors and STEPS gradients per tensor, magnitudes 1e-9 .. 1, random signs."""
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[(rng.choice([-1.0, 1.0], s) * 10.0 ** rng.uniform(-9, 0, s)).astype(np.float32) for s in SHAPES]
             for _ in range(STEPS)]
    return w0, grads


def run_reference(cfg: OptimConfig, w0, grads):
    ws = [w.astype(np.float64) for w in w0]
    states = [ref.new_state(w.shape) for w in ws]
    for k in range(STEPS):
        lr = cfg.lr * LR_FACTORS[k]
        ws = [ref.step(cfg, lr, w, g, s) for w, g, s in zip(ws, grads[k], states, strict=True)]
    return ws


def run_torch(cfg: OptimConfig, w0, grads, dtype: str):
    import torch

    from runner.workload.optim import torch_optim

    params = [torch.nn.Parameter(torch.from_numpy(w.astype(dtype))) for w in w0]
    opt = torch_optim.build(params, cfg)
    for k in range(STEPS):
        torch_optim.set_lr(opt, cfg.lr * LR_FACTORS[k])
        for p, g in zip(params, grads[k], strict=True):
            p.grad = torch.from_numpy(g.astype(dtype))
        opt.step()
    return [p.detach().numpy().astype(np.float64) for p in params]


def run_tf(cfg: OptimConfig, w0, grads, dtype: str):
    import tensorflow as tf

    from runner.workload.optim import tf_optim

    variables = [tf.Variable(w.astype(dtype)) for w in w0]
    opt = tf_optim.build(cfg)
    for k in range(STEPS):
        opt.set_lr(cfg.lr * LR_FACTORS[k])
        opt.apply([tf.constant(g.astype(dtype)) for g in grads[k]], variables)
    return [v.numpy().astype(np.float64) for v in variables]


def assert_matches_reference(got, want, w0, dtype: str):
    step = max(float(np.abs(w - w0i).max()) for w, w0i in zip(want, w0, strict=True))
    for g, w, w0i in zip(got, want, w0, strict=True):
        if dtype == "float64":
            bound = 1e-9 * step
        else:
            bound = 1e-5 * step + 1e-6 * np.abs(w0i)
        assert np.all(np.abs(g - w) <= bound), float(np.max(np.abs(g - w) - bound))


def test_reference_moves_every_variant():
    # guards against a variant that silently does nothing
    w0, grads = problem()
    for name, d in VARIANTS.items():
        out = run_reference(OptimConfig.from_dict(d), w0, grads)
        assert max(float(np.abs(o - w).max()) for o, w in zip(out, w0, strict=True)) > 1e-4, name


def test_reference_sgd_momentum_by_hand():
    cfg = OptimConfig("sgd", 0.1, momentum=0.9)
    state = ref.new_state((1,))
    w = ref.step(cfg, 0.1, np.array([1.0]), np.array([1.0]), state)  # b = g = 1
    assert w[0] == pytest.approx(0.9)
    w = ref.step(cfg, 0.2, w, np.array([1.0]), state)  # b = 0.9 + 1 = 1.9, w -= 0.2 * 1.9
    assert w[0] == pytest.approx(0.9 - 0.38)


def test_reference_adam_first_step_by_hand():
    cfg = OptimConfig("adam", 0.01, epsilon=1e-8)
    w = ref.step(cfg, 0.01, np.array([0.0]), np.array([1e-8]), ref.new_state((1,)))
    # m_hat = g, v_hat = g^2 -> lr * g / (|g| + eps) = lr / 2 for g = eps
    assert w[0] == pytest.approx(-0.005)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_torch_optimizer_is_canonical(torch_mod, variant, dtype):
    cfg = OptimConfig.from_dict(VARIANTS[variant])
    w0, grads = problem()
    assert_matches_reference(run_torch(cfg, w0, grads, dtype), run_reference(cfg, w0, grads), w0, dtype)


@pytest.mark.tensorflow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tf_optimizer_is_canonical(tf_mod, variant, dtype):
    cfg = OptimConfig.from_dict(VARIANTS[variant])
    w0, grads = problem()
    assert_matches_reference(run_tf(cfg, w0, grads, dtype), run_reference(cfg, w0, grads), w0, dtype)


@pytest.mark.torch
@pytest.mark.tensorflow
def test_a_parameter_without_gradient_is_left_alone(torch_mod, tf_mod):
    import tensorflow as tf
    import torch

    from runner.workload.optim import tf_optim, torch_optim

    cfg = OptimConfig("adam", 0.1, weight_decay=0.5, weight_decay_mode="decoupled")
    p = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))]
    opt = torch_optim.build(p, cfg)
    p[0].grad = torch.ones(3)
    opt.step()
    v = [tf.Variable(np.ones(3, np.float32)), tf.Variable(np.ones(3, np.float32))]
    tf_optim.build(cfg).apply([tf.ones(3), None], v)
    assert p[1].detach().numpy().tolist() == v[1].numpy().tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(p[0].detach().numpy(), v[0].numpy(), rtol=1e-6)


@pytest.mark.tensorflow
def test_tf_optimizer_inside_tf_function_does_not_retrace_on_lr_change(tf_mod):
    import tensorflow as tf

    from runner.workload.optim import tf_optim

    cfg = OptimConfig.from_dict(VARIANTS["sgd_nesterov_decoupled"])
    w0, grads = problem()
    variables = [tf.Variable(w) for w in w0]
    opt = tf_optim.build(cfg)
    opt.build(variables)  # state created up front: one trace serves every step

    @tf.function
    def apply(gs):
        opt.apply(gs, variables)

    for k in range(STEPS):
        opt.set_lr(cfg.lr * LR_FACTORS[k])
        apply([tf.constant(g) for g in grads[k]])
    assert apply.experimental_get_tracing_count() == 1
    got = [v.numpy().astype(np.float64) for v in variables]
    assert_matches_reference(got, run_reference(cfg, w0, grads), w0, "float32")


# --- why the TensorFlow side is custom: Keras' own optimizers compute something else ------------

@pytest.mark.tensorflow
def test_keras_sgd_momentum_differs_once_the_lr_changes(tf_mod):
    import keras

    cfg = OptimConfig("sgd", 0.1, momentum=0.9)
    w0, grads = problem()
    w0, grads = w0[:1], [g[:1] for g in grads]
    want = run_reference(cfg, w0, grads)
    var = keras.Variable(w0[0])
    opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    for k in range(STEPS):
        opt.learning_rate.assign(cfg.lr * LR_FACTORS[k])
        opt.apply([grads[k][0]], [var])
    diff = np.abs(np.asarray(var) - want[0]).max()
    assert diff > 1e-2  # Keras keeps lr inside the velocity: v = m v - lr g


@pytest.mark.tensorflow
def test_keras_adam_epsilon_hat_differs_on_small_gradients(tf_mod):
    import keras

    cfg = OptimConfig("adam", 1e-3, epsilon=1e-8)
    g = np.full((4,), 1e-8, np.float32)
    want = ref.step(cfg, cfg.lr, np.zeros(4), g, ref.new_state((4,)))
    var = keras.Variable(np.zeros(4, np.float32))
    keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8).apply([g], [var])
    got = np.asarray(var)
    assert abs(got[0] - want[0]) > 0.1 * abs(want[0])  # epsilon added to the uncorrected sqrt(v)


# --- config -----------------------------------------------------------------------------------

RUN_JSON_OPTIMIZER = {  # what runner.spec.workload_config.optimizer_section writes
    "name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "dampening": 0.0, "beta1": 0.9,
    "beta2": 0.999, "epsilon": 1e-8, "rho": 0.9, "centered": False, "amsgrad": False,
    "weight_decay": 5e-4, "weight_decay_mode": "l2",
}


def test_optim_config_reads_the_run_json_section():
    cfg = OptimConfig.from_dict(RUN_JSON_OPTIMIZER)
    assert cfg.momentum == 0.9 and OptimConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lr_decay": 0.1}, "optimizer.lr_decay"),
        ({"name": "lamb"}, "optimizer.name"),
        ({"lr": 0.0}, "optimizer.lr"),
        ({"momentum": 1.0}, "optimizer.momentum"),
        ({"nesterov": True, "momentum": 0.0}, "optimizer.nesterov"),
        ({"weight_decay_mode": "adamw"}, "optimizer.weight_decay_mode"),
        ({"name": "adam", "beta2": 1.0}, "optimizer.beta2"),
        ({"name": "rmsprop", "epsilon": 0.0}, "optimizer.epsilon"),
        ({"weight_decay": -1.0}, "optimizer.weight_decay"),
    ],
)
def test_bad_optimizer_configs_name_the_field(change, field):
    with pytest.raises(SpecError) as err:
        OptimConfig.from_dict(RUN_JSON_OPTIMIZER | change, source="run.json")
    assert err.value.field == field and err.value.file == "run.json"
