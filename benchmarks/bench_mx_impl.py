"""What runner's MXNet model and optimizer cost against stock Gluon, side by side in one run.

    .venv-mxnet/bin/python benchmarks/bench_mx_impl.py [--threads 1] [--batch 32] [--steps 12] [--rounds 3]

(started with another Python, as `just bench` does, it re-executes itself with the MXNet
interpreter that `just setup` makes, `.venv-mxnet`; the repository goes on PYTHONPATH).
Training steps (forward, loss, backward, update) of ResNet-50 with the ImageNet stem at 32x32,
100 classes, CPU, all hybridized with static_alloc/static_shape, each timed after `waitall()`.
Variants:

- ours: `mx_impl` + `mx_optim` (canonical BatchNorm running statistics, canonical SGD);
- stock BN: the same network with Gluon's own `nn.BatchNorm` (MXNet's running-statistics rule);
  the ratio is what the canonical BatchNorm costs;
- stock optimizer: ours with Gluon's `Trainer` + MXNet's SGD (its own momentum formula); the
  ratio is what the canonical optimizer costs;
- model zoo: `gluon.model_zoo.vision.resnet50_v1` (ResNet v1: stride on the first 1x1, so
  slightly fewer FLOPs than v1.5) with Trainer SGD: implementation quality, target >= 0.95.

All four are built first, then run interleaved step by step (the order rotating), so a
neighbour's load on a shared machine hits every side alike; each figure is the ratio of median
step times (images/s of ours / images/s of the other).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if importlib.util.find_spec("mxnet") is None:  # `just bench` starts every script with .venv's python
        from runner.engine.interpreters import python_for

        python = python_for("mxnet", "")  # .venv-mxnet (or RUNNER_MXNET_PYTHON); says the fix if absent
        os.environ["PYTHONPATH"] = str(REPO)
        os.execv(python, [python, __file__, *sys.argv[1:]])
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    from runner.workload.models import ModelConfig, build_arch, init_weights, mx_impl
    from runner.workload.models.arch import BatchNorm2d
    from runner.workload.optim import OptimConfig, mx_optim

    cfg = ModelConfig(name="resnet50", num_classes=100, stem="imagenet")
    arch = build_arch(cfg)
    weights = init_weights(arch, seed=0)
    opt_cfg = OptimConfig("sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32))
    y = mx.nd.array(rng.integers(0, 100, args.batch))

    def ours() -> Any:
        net = mx_impl.build(arch, weights=weights)
        net.hybridize(static_alloc=True, static_shape=True)
        opt = mx_optim.build(opt_cfg)
        return net, lambda: opt.apply(net.trainable_params())

    def stock_bn() -> Any:
        original = mx_impl._Builder._leaf

        def leaf(self: Any, layer: Any, path: str) -> Any:
            if isinstance(layer, BatchNorm2d):  # MXNet's momentum = weight of the old statistic
                bn = gluon.nn.BatchNorm(momentum=1.0 - layer.momentum, epsilon=layer.epsilon,
                                        in_channels=layer.num_features)
                return bn, bn
            return original(self, layer, path)

        mx_impl._Builder._leaf = leaf
        try:
            net = mx_impl.build(arch, weights=weights)
        finally:
            mx_impl._Builder._leaf = original
        net.hybridize(static_alloc=True, static_shape=True)
        opt = mx_optim.build(opt_cfg)
        return net, lambda: opt.apply(net.trainable_params())

    def trainer_for(net: Any, params: Any) -> Any:
        tr = gluon.Trainer(params, "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 5e-4})
        return lambda: tr.step(1)  # the loss is already a batch mean

    def stock_opt() -> Any:
        net = mx_impl.build(arch, weights=weights)
        net.hybridize(static_alloc=True, static_shape=True)
        return net, trainer_for(net, net.trainable_params())

    def zoo() -> Any:
        net = gluon.model_zoo.vision.resnet50_v1(classes=100)
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        return net, trainer_for(net, net.collect_params())

    def step(net: Any, update: Any) -> float:
        mx.nd.waitall()
        t0 = time.perf_counter()
        with autograd.record():
            loss = -mx.nd.pick(mx.nd.log_softmax(net(x)), y).mean()
        loss.backward()
        update()
        loss.asscalar()
        mx.nd.waitall()
        return time.perf_counter() - t0

    variants = {"ours": ours, "stock BN (Gluon BatchNorm)": stock_bn, "stock optimizer (Trainer SGD)": stock_opt,
                "model zoo resnet50_v1 + Trainer": zoo}
    built = {name: make() for name, make in variants.items()}
    for net, update in built.values():  # the first steps trace and plan memory
        for _ in range(2):
            step(net, update)
    # Interleaved step by step (rotating the order), so load on a shared machine hits every side alike.
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(args.steps * args.rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(step(*built[name]))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"MXNet {mx.__version__}, threads {args.threads}, batch {args.batch}, ResNet-50 imagenet stem 32x32, "
          f"{args.steps * args.rounds} interleaved steps each")
    for name in names:
        ratio = "" if name == "ours" else f"   ours / it = {med[name] / med['ours']:.3f}"
        print(f"{name:34s} {args.batch / med[name]:7.1f} img/s (median step {med[name] * 1e3:.0f} ms){ratio}")


if __name__ == "__main__":
    main()
