"""TensorFlow backend of the training protocol (imports tensorflow; nothing else in the harness does).

Steps always run as `tf.function` graphs (`jit_compile=True` adds XLA when the recipe says
`compile`). CPU runs hide GPUs from TensorFlow before it is imported (run.make_backend) and
never call a GPU API; every GPU call sits behind `self.gpu`.

Data parallel (`parallel.mode: data`): one process, `tf.distribute.MirroredStrategy` over
`replicas` GPUs, or on CPU over as many logical CPU devices (set before TensorFlow's runtime
starts). Variables are mirrored; each replica takes slice r of the global batch inside the step,
its loss is its per-example sum over the GLOBAL batch size, and the gradients are summed across
replicas, then applied once in cross-replica context by the canonical optimizer (every mirror
gets the same update). Evaluation and latency run on the first replica's variables.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from runner.workload.env_info import framework_info
from runner.workload.harness.backend import ParamCounts
from runner.workload.harness.config import RunConfig

# Dynamic loss scaling under fp16: the same constants as the PyTorch backend's GradScaler.
LOSS_SCALE_INIT = 2.0**15
LOSS_SCALE_GROWTH_INTERVAL = 2000

_POLICIES = {"fp32": "float32", "amp_fp16": "mixed_float16", "amp_bf16": "mixed_bfloat16"}


def cpu_replica_threads(threads: int, replicas: int) -> tuple[int, int]:
    """(intra-op pool, inter-op threads) for `replicas` logical-CPU replicas in one process.

    The same number of threads at work as PyTorch's replica processes with `threads` each. One
    inter-op thread per replica runs that replica's kernels, so the steps run side by side (with
    one, they took turns: 0.52 of a single process per replica). A kernel's calling thread works
    beside the intra-op pool, so the pool holds the rest: (threads - 1) x replicas, at least 1. At
    one thread per replica the kernels then run in the replicas' own threads, still side by side;
    the former pool of threads x replicas on top of them oversubscribed the cores (batch 64, one
    thread: 0.89-0.91 of a single process per replica against 0.95-1.00). Measured only at one
    thread per replica (2 vCPUs here).
    """
    return max(1, (threads - 1) * replicas), replicas


class TFBackend:
    framework = "tensorflow"

    def __init__(self, cfg: RunConfig, optim_cfg: Any) -> None:
        self.cfg, self.optim_cfg = cfg, optim_cfg
        self.gpu = cfg.on_gpu
        self.device = "/GPU:0" if self.gpu else "/CPU:0"
        self.fp16 = cfg.train.precision == "amp_fp16"
        self.parallel = cfg.parallel if cfg.parallel.data else None
        self.strategy: Any = None
        self.model: Any = None
        self.opt: Any = None
        self._settings: dict[str, Any] = {}

    # -- environment ----------------------------------------------------------------------
    def setup(self) -> None:
        t = self.cfg.train
        if t.threads is not None:  # must precede the first op (TensorFlow's runtime starts then)
            tf.config.threading.set_intra_op_parallelism_threads(t.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            if self.parallel is not None and not self.gpu:
                intra, inter = cpu_replica_threads(t.threads, self.parallel.replicas)
                tf.config.threading.set_intra_op_parallelism_threads(intra)
                tf.config.threading.set_inter_op_parallelism_threads(inter)
        if self.gpu:
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise RuntimeError("variant cuda, but TensorFlow sees no GPU")
            for gpu in gpus:  # allocate as needed, so the peak reading means something
                tf.config.experimental.set_memory_growth(gpu, True)
            # fp32 means fp32: TensorFloat-32 off in both frameworks (defaults differ between them).
            tf.config.experimental.enable_tensor_float_32_execution(False)
        if self.parallel is not None:
            self._make_strategy()
        keras.utils.set_random_seed(self.cfg.seed)  # Python, numpy and TensorFlow generators
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        self._settings = {
            "device": self.device, "precision": t.precision, "deterministic": t.deterministic,
            "execution": "tf.function(jit_compile=True)" if t.compile else "tf.function",
            # On a GPU a step call returns once launched: per-step times are launch times there,
            # the intervals between reads (every read_every_steps) are exact.
            "step_timing": "host clock (launch; exact per read interval)" if self.gpu
            else "host clock (synchronous steps)",
            "read_every_steps": self.cfg.measurement.read_every_steps,
            "compile": t.compile, "layout": "NHWC",  # channels-last already: channels_last changes nothing
            "channels_last": t.channels_last, "mixed_precision_policy": _POLICIES[t.precision],
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "loss_scale": {"init": LOSS_SCALE_INIT, "growth_interval": LOSS_SCALE_GROWTH_INTERVAL}
            if self.fp16 else None,
        }
        if self.gpu:
            self._settings.update(tf32=False, memory_growth=True)
        if self.parallel is not None:
            par = self.parallel
            self._settings["parallel"] = {
                "mode": "data", "launcher": None, "wrapper": "tf.distribute.MirroredStrategy",
                "devices": list(self.strategy.extended.worker_devices),
                "cross_device_ops": type(self.strategy.extended._cross_device_ops).__name__
                if getattr(self.strategy.extended, "_cross_device_ops", None) is not None else None,
                "replicas": par.replicas, "rank": 0, "global_batch": par.global_batch,
                "per_replica_batch": par.per_replica_batch, "lr_scaling": par.lr_scaling,
                "lr_factor": par.lr_factor, "sync_batch_norm": par.sync_batch_norm,
            }

    def _make_strategy(self) -> None:
        n = self.parallel.replicas
        if self.gpu:
            gpus = tf.config.list_logical_devices("GPU")
            if len(gpus) < n:
                raise RuntimeError(f"{n} replicas need {n} GPUs, TensorFlow sees {len(gpus)}")
            devices = [f"/GPU:{i}" for i in range(n)]
        else:  # CPU data parallel: n logical CPU devices sharing the process's cores
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
            devices = [f"/CPU:{i}" for i in range(n)]
        self.strategy = tf.distribute.MirroredStrategy(devices)
        self.device = devices[0]

    def info(self) -> dict[str, Any]:
        return framework_info("tensorflow", probe_gpu=self.gpu)

    def settings(self) -> dict[str, Any]:
        # training augmentation always runs on the host in this backend (recipe.augment_on: device is refused)
        return dict(self._settings) | {"augmentation": {"requested": self.cfg.train.augment_on, "on": "host"}}

    # -- model ----------------------------------------------------------------------------
    def build(self, arch: Any, weights: dict[str, np.ndarray]) -> ParamCounts:
        from runner.workload.models import tf_impl
        from runner.workload.optim import tf_optim

        with self.strategy.scope() if self.strategy is not None else tf.device(self.device):
            # A mixed policy keeps variables, BatchNorm statistics, inputs and logits in float32.
            self.model = tf_impl.build(arch, dtype=_POLICIES[self.cfg.train.precision], weights=weights)
            self.vars = list(self.model.trainable_variables)
            self.opt = tf_optim.build(self.optim_cfg)
            self.opt.build(self.vars)  # state exists before tracing (fp16 applies inside tf.cond)
            self.loss_scale = tf.Variable(LOSS_SCALE_INIT, trainable=False, dtype=tf.float32)
            self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64)
        jit = self.cfg.train.compile
        step = self._train_step if self.strategy is None else self._replicated_train_step
        self._train = tf.function(step, jit_compile=jit, reduce_retracing=True)
        self._eval = tf.function(self._eval_step, jit_compile=jit, reduce_retracing=True)
        self._predict = tf.function(self._predict_step, jit_compile=jit, reduce_retracing=True)
        trainable, total = tf_impl.count_params(self.model)
        return ParamCounts(trainable=trainable, total=total)

    def _loss(self, logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Per-example cross-entropy with label smoothing, PyTorch's formula:
        (1 - e) * nll + e * mean_k(-log p_k)."""
        logp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        nll = -tf.gather(logp, y, axis=1, batch_dims=1)
        e = self.cfg.train.label_smoothing
        if e == 0.0:
            return nll
        return (1.0 - e) * nll - e * tf.reduce_mean(logp, axis=-1)

    @staticmethod
    def _correct(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        pred = tf.argmax(logits, axis=-1, output_type=tf.int64)
        return tf.reduce_sum(tf.cast(tf.equal(pred, y), tf.int32))

    # -- steps (traced) -------------------------------------------------------------------
    def _train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = tf.reduce_mean(self._loss(logits, y))
            objective = loss * self.loss_scale if self.fp16 else loss
        grads = tape.gradient(objective, self.vars)
        if self.fp16:
            self._apply_scaled(grads)
        else:
            self.opt.apply(grads, self.vars)
        return loss, self._correct(logits, y)

    def _replicated_train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One data-parallel step: every replica its slice, gradients summed, one update."""
        per, glob = self.parallel.per_replica_batch, float(self.parallel.global_batch)

        def replica_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
            r = tf.distribute.get_replica_context().replica_id_in_sync_group
            xr, yr = x[r * per:(r + 1) * per], y[r * per:(r + 1) * per]  # slice r of the global batch
            with tf.GradientTape() as tape:
                logits = self.model(xr, training=True)
                loss = tf.reduce_sum(self._loss(logits, yr)) / glob  # this replica's share of the mean
                objective = loss * self.loss_scale if self.fp16 else loss
            return loss, self._correct(logits, yr), tape.gradient(objective, self.vars)

        loss, correct, grads = self.strategy.run(replica_step, args=(x, y))
        total = tf.distribute.ReduceOp.SUM
        grads = [self.strategy.reduce(total, g, axis=None) for g in grads]
        if self.fp16:
            self._apply_scaled(grads)
        else:
            self.opt.apply(grads, self.vars)
        return self.strategy.reduce(total, loss, axis=None), self.strategy.reduce(total, correct, axis=None)

    def _apply_scaled(self, grads: list[tf.Tensor]) -> None:
        """Dynamic loss scaling as torch.amp.GradScaler does it: unscale; if every gradient is
        finite apply and count, doubling the scale after GROWTH_INTERVAL good steps; else skip
        the update and halve the scale."""
        inv = 1.0 / self.loss_scale
        grads = [tf.cast(g, tf.float32) * inv for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

        def apply() -> tf.Tensor:
            self.opt.apply(grads, self.vars)
            grown = self.good_steps + 1 >= LOSS_SCALE_GROWTH_INTERVAL
            self.loss_scale.assign(tf.where(grown, self.loss_scale * 2.0, self.loss_scale))
            self.good_steps.assign(tf.where(grown, tf.constant(0, tf.int64), self.good_steps + 1))
            return tf.constant(True)

        def skip() -> tf.Tensor:
            self.loss_scale.assign(self.loss_scale * 0.5)
            self.good_steps.assign(0)
            return tf.constant(False)

        tf.cond(finite, apply, skip)

    def _eval_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.model(x, training=False)
        return tf.reduce_sum(self._loss(logits, y)), self._correct(logits, y)

    def _predict_step(self, x: tf.Tensor) -> tf.Tensor:
        return self.model(x, training=False)

    # -- protocol interface ---------------------------------------------------------------
    def feed(self, source: Any) -> Any:
        """The epoch's batches as the loader gives them: augmentation runs on the host here."""
        return source

    def to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.device(self.device):  # tf.identity forces the host->device copy now
            return tf.identity(tf.convert_to_tensor(x)), tf.identity(tf.convert_to_tensor(y))

    def train_step(self, batch: tuple[tf.Tensor, tf.Tensor], lr: float) -> tuple[tf.Tensor, tf.Tensor]:
        self.opt.set_lr(lr)
        return self._train(*batch)  # (loss, correct) unread

    def read_steps(self, pending: list[tuple[tf.Tensor, tf.Tensor]]) -> list[tuple[float, int]]:
        return [(float(loss.numpy()), int(correct.numpy())) for loss, correct in pending]  # .numpy() waits

    def mark(self) -> None:
        return None  # no device timer: the host clock times steps (settings.step_timing)

    def elapsed_s(self, start: Any, end: Any) -> float:
        raise NotImplementedError("TensorFlow steps are timed by the host clock")

    def eval_step(self, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[float, int]:
        loss, correct = self._eval(*batch)
        return float(loss.numpy()), int(correct.numpy())

    def predict(self, batch: tuple[tf.Tensor, tf.Tensor]) -> None:
        self._predict(batch[0])

    def sync(self) -> None:
        if self.gpu:
            tf.test.experimental.sync_devices()

    def peak_device_bytes(self) -> int | None:
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) if self.gpu else None

    def reset_peak_device_bytes(self) -> int | None:
        peak = self.peak_device_bytes()
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        return peak

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, tf.errors.ResourceExhaustedError)
