"""MXNet (Gluon) backend of the training protocol (imports mxnet; nothing else in the harness does).

MXNet reads its engine settings (threads, determinism, cuDNN autotuning, TF32) from environment
variables when it is imported, so `setup()` sets them and only then imports mxnet. The model is a
hybridized Gluon HybridBlock (a cached static graph, MXNet's normal way to train), NCHW.

MXNet's engine is asynchronous on CPU too: an operator call returns before it ran. So `sync()`
is `mx.nd.waitall()` on every device, `to_device` waits for its copies, and the step's values
reach the host through `asscalar()`, which waits for them.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from runner.workload.harness.backend import ParamCounts
from runner.workload.harness.config import RunConfig

# Dynamic loss scaling under fp16: the same constants as the other backends (docs/workload.md).
LOSS_SCALE_INIT = 2.0**15
LOSS_SCALE_GROWTH_INTERVAL = 2000

# What MXNet cannot run (amp_fp16 on CPU, amp_bf16 on cuda, compile) never gets here: the table in
# runner/workload/capabilities.py refuses it at plan time and in the run.json reader.
_AMP_DTYPES = {"amp_fp16": "float16", "amp_bf16": "bfloat16"}

_OOM_TEXT = ("out of memory", "cudaMalloc", "Failed to allocate", "std::bad_alloc", "cannot allocate memory")


def engine_env(cfg: RunConfig) -> dict[str, str]:
    """The MXNet environment variables this run sets before `import mxnet` (recorded in settings)."""
    t = cfg.train
    env = {
        # One engine worker thread for CPU ops: the inter-op parallelism the other backends pin to 1.
        "MXNET_CPU_WORKER_NTHREADS": "1",
        "MXNET_ENFORCE_DETERMINISM": "1" if t.deterministic else "0",
    }
    if t.deterministic:
        # The synchronous engine: every operator runs in the calling thread, in program order, so
        # no scheduling of the threaded engine can change a result. (One run in about forty
        # on the threaded engine evaluated 3e-7 apart from the others; not reproduced since.)
        env["MXNET_ENGINE_TYPE"] = "NaiveEngine"
    if t.threads is not None:
        env["OMP_NUM_THREADS"] = str(t.threads)  # MXNet's operators use OpenMP for intra-op threads
    if cfg.on_gpu:
        env["MXNET_CUDNN_AUTOTUNE_DEFAULT"] = "0" if t.deterministic else "1"
        # fp32 means fp32: TensorFloat-32 off (cuBLAS and cuDNN read this), as in the other backends.
        env["NVIDIA_TF32_OVERRIDE"] = "0"
    return env


class MXBackend:
    framework = "mxnet"

    def __init__(self, cfg: RunConfig, optim_cfg: Any) -> None:
        self.cfg, self.optim_cfg = cfg, optim_cfg
        self.gpu = cfg.on_gpu
        self.device = "gpu(0)" if self.gpu else "cpu(0)"
        self.fp16 = cfg.train.precision == "amp_fp16"
        self.mx: Any = None
        self.ctx: Any = None
        self.model: Any = None
        self.params: list[Any] = []
        self.opt: Any = None
        self.loss_scale = LOSS_SCALE_INIT
        self.good_steps = 0
        self._settings: dict[str, Any] = {}

    # -- environment ----------------------------------------------------------------------
    def setup(self) -> None:
        t = self.cfg.train
        env = engine_env(self.cfg)
        os.environ.update(env)
        import mxnet as mx

        self.mx = mx
        if self.gpu:
            if mx.context.num_gpus() < 1:
                raise RuntimeError("variant cuda, but MXNet sees no GPU")
            self.ctx = mx.gpu(0)
        else:
            self.ctx = mx.cpu(0)
        amp_dtype = _AMP_DTYPES.get(t.precision)
        if amp_dtype == "bfloat16" and not self.gpu:  # oneDNN's bf16 kernels: AVX-512 (runner.workload.cpu_isa)
            from runner.workload.cpu_isa import cpu_flags, mxnet_bf16_refusal

            if (why := mxnet_bf16_refusal(cpu_flags())) is not None:
                raise RuntimeError(why)
        if amp_dtype is not None:  # must precede building the model: AMP patches the operator namespaces
            from mxnet.contrib import amp

            amp.init(target_dtype=amp_dtype)
        random.seed(self.cfg.seed)
        mx.random.seed(self.cfg.seed)  # every device's generator (dropout masks)
        self._settings = {
            "device": self.device, "precision": t.precision, "deterministic": t.deterministic,
            "execution": "gluon.hybridize(static_alloc, static_shape)", "compile": False, "layout": "NCHW",
            # the engine is asynchronous on CPU too: a step call returns once queued
            "step_timing": "host clock (launch; exact per read interval)",
            "read_every_steps": self.cfg.measurement.read_every_steps,
            "intra_op_threads": t.threads, "inter_op_threads": 1, "engine_env": env,
            "amp": None if amp_dtype is None else f"mxnet.contrib.amp.init(target_dtype={amp_dtype!r})",
            "loss_scale": {"init": LOSS_SCALE_INIT, "growth_interval": LOSS_SCALE_GROWTH_INTERVAL}
            if self.fp16 else None,
        }
        if self.gpu:
            self._settings.update(cudnn_autotune=not t.deterministic, tf32=False)

    def info(self) -> dict[str, Any]:
        from runner.workload.env_info import framework_info

        return framework_info("mxnet", probe_gpu=self.gpu)

    def settings(self) -> dict[str, Any]:
        # training augmentation always runs on the host in this backend (recipe.augment_on: device is refused)
        return dict(self._settings) | {"augmentation": {"requested": self.cfg.train.augment_on, "on": "host"}}

    # -- model ----------------------------------------------------------------------------
    def build(self, arch: Any, weights: dict[str, np.ndarray]) -> ParamCounts:
        from runner.workload.models import mx_impl
        from runner.workload.optim import mx_optim

        model = mx_impl.build(arch, dtype="float32", weights=weights, ctx=self.ctx, hybridize=False)
        # Cached graphs with memory planned once and reused (MXNet's fast training path).
        model.hybridize(static_alloc=True, static_shape=True)
        self.model = model
        # Frozen layers have grad_req "null" from the builder (their BatchNorm uses and keeps
        # its running statistics); only the others are updated.
        self.params = model.trainable_params()
        self.opt = mx_optim.build(self.optim_cfg)
        trainable, total = mx_impl.count_params(model)
        return ParamCounts(trainable=trainable, total=total)

    def _loss(self, logits: Any, y: Any) -> Any:
        """Per-example cross-entropy with label smoothing, PyTorch's formula:
        (1 - e) * nll + e * mean_k(-log p_k)."""
        nd = self.mx.nd
        logp = nd.log_softmax(logits.astype("float32"), axis=-1)
        nll = -nd.pick(logp, y, axis=-1)
        e = self.cfg.train.label_smoothing
        if e == 0.0:
            return nll
        return (1.0 - e) * nll - e * nd.mean(logp, axis=-1)

    def _correct(self, logits: Any, y: Any) -> int:
        return int(self._correct_nd(logits, y).asscalar())

    def _correct_nd(self, logits: Any, y: Any) -> Any:
        pred = self.mx.nd.argmax(logits, axis=-1).astype("int64")
        return (pred == y).sum()

    # -- steps ----------------------------------------------------------------------------
    def feed(self, source: Any) -> Any:
        """The epoch's batches as the loader gives them: augmentation runs on the host here."""
        return source

    def to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        nd = self.mx.nd
        xt = nd.array(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), ctx=self.ctx, dtype="float32")  # NHWC -> NCHW
        yt = nd.array(y, ctx=self.ctx, dtype="int64")
        xt.wait_to_read()
        yt.wait_to_read()
        return xt, yt

    def train_step(self, batch: tuple[Any, Any], lr: float) -> tuple[Any, Any]:
        from runner.workload.optim import mx_optim

        autograd = self.mx.autograd
        x, y = batch
        mx_optim.set_lr(self.opt, lr)
        with autograd.record(train_mode=True):
            logits = self.model(x)
            loss = self._loss(logits, y).mean()
            objective = loss * self.loss_scale if self.fp16 else loss
        objective.backward()
        if self.fp16:
            self._apply_scaled()
        else:
            self.opt.apply(self.params)
        return loss, self._correct_nd(logits, y)  # unread NDArrays

    def read_steps(self, pending: list[tuple[Any, Any]]) -> list[tuple[float, int]]:
        return [(float(loss.asscalar()), int(correct.asscalar())) for loss, correct in pending]  # waits

    def mark(self) -> None:
        return None

    def elapsed_s(self, start: Any, end: Any) -> float:
        raise NotImplementedError("MXNet steps are timed by the host clock")

    def _apply_scaled(self) -> None:
        """Dynamic loss scaling as torch.amp.GradScaler does it: unscale; if every gradient is
        finite apply and count, doubling the scale after GROWTH_INTERVAL good steps; else skip
        the update and halve the scale."""
        nd = self.mx.nd
        inv = 1.0 / self.loss_scale
        finite = True
        for p in self.params:
            g = p.grad(self.ctx)
            g *= inv
            finite = finite and bool(nd.contrib.isfinite(g).min().asscalar())
        if finite:
            self.opt.apply(self.params)
            self.good_steps += 1
            if self.good_steps >= LOSS_SCALE_GROWTH_INTERVAL:
                self.loss_scale, self.good_steps = self.loss_scale * 2.0, 0
        else:
            self.loss_scale, self.good_steps = self.loss_scale * 0.5, 0

    def eval_step(self, batch: tuple[Any, Any]) -> tuple[float, int]:
        x, y = batch
        with self.mx.autograd.predict_mode():
            logits = self.model(x)
            loss = self._loss(logits, y).sum()
        return float(loss.asscalar()), self._correct(logits, y)

    def predict(self, batch: tuple[Any, Any]) -> None:
        with self.mx.autograd.predict_mode():
            self.model(batch[0]).wait_to_read()

    def sync(self) -> None:
        self.mx.nd.waitall()  # asynchronous on CPU too

    def peak_device_bytes(self) -> int | None:
        """MXNet has no peak counter; its pooled allocator keeps what it took, so the device's
        used memory at the end (total - free, CUDA context included) is the high-water mark."""
        if not self.gpu:
            return None
        free, total = self.mx.context.gpu_memory_info(0)
        return int(total - free)

    def reset_peak_device_bytes(self) -> int | None:
        """MXNet cannot reset its high-water mark (the pool keeps what it took): the warm-up's
        reading is reported, the final one includes it."""
        return self.peak_device_bytes()

    def is_oom(self, exc: BaseException) -> bool:
        if isinstance(exc, MemoryError):
            return True
        if self.mx is None or not isinstance(exc, self.mx.base.MXNetError):
            return False
        text = str(exc)
        return any(s in text for s in _OOM_TEXT)
