"""MXNet side of the parity tests; runs in `.venv-mxnet` (see mxnet_subprocess.py).

Usage: python mx_jobs.py JOB DIR. Reads DIR/params.json and DIR/in.npz, writes DIR/out.npz.
Array names: `w:<key>` canonical weights, `g:<key>` gradients, `after:<label>:<key>` weights after
an optimizer step; `x`, `y` a batch (NCHW).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd

from runner.workload.models import ModelConfig, build_arch, mx_impl
from runner.workload.optim import OptimConfig, mx_optim


def _arch(p: dict):
    if p.get("custom") == "asym":
        from tests.workload.asym_arch import asym_arch

        return asym_arch()
    return build_arch(ModelConfig.from_dict(p["model"]))


def _weights(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k[2:]: v for k, v in arrays.items() if k.startswith("w:")}


def _loss(logits, y):
    return -mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), y, axis=-1).mean()


def describe(p: dict, arrays: dict) -> dict:
    arch = build_arch(ModelConfig.from_dict(p["model"]))
    net = mx_impl.build(arch)
    return {"counts": np.array(mx_impl.count_params(net)),
            "trainable_keys": np.array([k for k, q in net.canonical.items() if q.grad_req != "null"])}


def eval_logits(p: dict, arrays: dict) -> dict:
    arch = _arch(p)
    net = mx_impl.build(arch, p.get("dtype", "float32"), _weights(arrays), hybridize=p.get("hybridize", True))
    logits = net(mx.nd.array(arrays["x"], dtype=p.get("dtype", "float32"))).asnumpy()
    out = {"logits": logits, "counts": np.array(mx_impl.count_params(net)),
           "trainable_keys": np.array([k for k, q in net.canonical.items() if q.grad_req != "null"])}
    out.update({f"w:{k}": v for k, v in mx_impl.export_weights(net).items()})
    return out


def step(p: dict, arrays: dict) -> dict:
    """One train-mode forward/backward, then each optimizer from the same state and gradients."""
    dtype = p.get("dtype", "float64")
    arch = _arch(p)
    net = mx_impl.build(arch, dtype, _weights(arrays), hybridize=p.get("hybridize", True))
    x, y = mx.nd.array(arrays["x"], dtype=dtype), mx.nd.array(arrays["y"], dtype=dtype)
    with autograd.record():
        loss = _loss(net(x), y)
    loss.backward()
    out = {"loss": loss.asnumpy()}
    out.update({f"g:{k}": v for k, v in mx_impl.canonical_grads(net).items()})
    state = mx_impl.export_weights(net)  # parameters as loaded, running statistics updated
    for label, cfg in p["optims"].items():
        for k, q in net.canonical.items():  # back to the state after the forward pass, exactly
            q.set_data(mx.nd.array(state[k], dtype=q.dtype))
        opt = mx_optim.build(OptimConfig.from_dict(cfg))
        opt.apply(net.collect_params().values())
        out.update({f"after:{label}:{k}": v for k, v in mx_impl.export_weights(net).items()})
    return out


def train_steps(p: dict, arrays: dict) -> dict:
    """Several training steps with the learning rate changing; the final weights."""
    dtype = p.get("dtype", "float64")
    arch = build_arch(ModelConfig.from_dict(p["model"]))
    net = mx_impl.build(arch, dtype, _weights(arrays))
    opt = mx_optim.build(OptimConfig.from_dict(p["optim"]))
    for i, lr in enumerate(p["lrs"]):
        mx_optim.set_lr(opt, lr)
        x, y = mx.nd.array(arrays[f"x{i}"], dtype=dtype), mx.nd.array(arrays[f"y{i}"], dtype=dtype)
        with autograd.record():
            loss = _loss(net(x), y)
        loss.backward()
        opt.apply(net.trainable_params())
    return {f"w:{k}": v for k, v in mx_impl.export_weights(net).items()}


def optimizer(p: dict, arrays: dict) -> dict:
    """The optimizer alone, per variant, dtype and path (`fused`: "auto" or "generic"): tensors
    w0_i, gradients g{k}_{i}, lr = cfg.lr * factor_k at step k. Returns
    `<variant>:<dtype>:<path>:w_<i>` and `<variant>:<dtype>:<path>:fused` (whether it ran fused)."""
    n = sum(1 for k in arrays if k.startswith("w0_"))
    out = {}
    for variant, d in p["variants"].items():
        cfg = OptimConfig.from_dict(d)
        for dtype, path in p["cases"]:
            ws = [mx.nd.array(arrays[f"w0_{i}"], dtype=dtype) for i in range(n)]
            opt = mx_optim.build(cfg, fused=None if path == "auto" else False)
            for k, factor in enumerate(p["lr_factors"]):
                opt.set_lr(cfg.lr * factor)
                for i, w in enumerate(ws):
                    opt.update(str(i), w, mx.nd.array(arrays[f"g{k}_{i}"], dtype=dtype))
            tag = f"{variant}:{dtype}:{path}"
            out.update({f"{tag}:w_{i}": w.asnumpy() for i, w in enumerate(ws)})
            out[f"{tag}:fused"] = np.array(opt.uses_fused(ws[0]))
    return out


def gluon_parameters(p: dict, arrays: dict) -> dict:
    """`apply` over Gluon parameters skips frozen ones (grad_req null) and steps the others."""
    cfg = OptimConfig.from_dict(p["optim"])
    a = mx.gluon.Parameter("a", shape=(3,))
    b = mx.gluon.Parameter("b", shape=(3,), grad_req="null")
    for q in (a, b):
        q.initialize(mx.init.One())
    a.grad()[:] = 1.0
    mx_optim.build(cfg).apply([a, b])
    return {"a": a.data().asnumpy(), "b": b.data().asnumpy()}


def stock_optimizer(p: dict, arrays: dict) -> dict:
    """MXNet's own optimizer `p["name"]` (with `p["kwargs"]`) on one tensor, lr per step from
    `p["lrs"]`: what the canonical one replaces (its formulas differ)."""
    w = mx.nd.array(arrays["w0"])
    opt = mx.optimizer.create(p["name"], **p["kwargs"])
    state = opt.create_state(0, w)
    for k, lr in enumerate(p["lrs"]):
        opt.set_learning_rate(lr)
        opt.update(0, w, mx.nd.array(arrays[f"g{k}"]), state)
    return {"w": w.asnumpy()}


def wrong_input(p: dict, arrays: dict) -> dict:
    """A training batch of another input size: the error's field (BatchNorm's n would be wrong)."""
    from runner.errors import ModelError

    arch = build_arch(ModelConfig.from_dict(p["model"]))
    net = mx_impl.build(arch)
    try:
        with autograd.record():
            net(mx.nd.zeros((2, 3, 16, 16)))
    except ModelError as e:
        return {"field": np.array(e.field)}
    return {"field": np.array("")}


JOBS = {f.__name__: f for f in (describe, eval_logits, step, train_steps, optimizer, gluon_parameters,
                                 stock_optimizer, wrong_input)}

if __name__ == "__main__":
    job, folder = sys.argv[1], Path(sys.argv[2])
    params = json.loads((folder / "params.json").read_text())
    with np.load(folder / "in.npz", allow_pickle=False) as f:
        inputs = {k: f[k] for k in f.files}
    np.savez(folder / "out.npz", **JOBS[job](params, inputs))
