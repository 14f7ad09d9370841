"""PyTorch backend of the training protocol (imports torch; nothing else in the harness does).

CPU runs never call a CUDA API: every torch.cuda use sits behind `self.cuda`, which is true only
for variant "cuda".

Data parallel (`parallel.mode: data`, started by torchrun): one process per replica,
`torch.distributed` (NCCL on GPUs, gloo on CPU), the model wrapped in DistributedDataParallel
(gradients averaged over replicas; each replica's loss is the mean over its equal slice, so the
average is the global batch's gradient). The step's loss and correct count are all-reduced so the
leader's events describe the global batch.
"""

from __future__ import annotations

import atexit
import os
import random
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from runner.workload.env_info import framework_info
from runner.workload.harness.backend import ParamCounts
from runner.workload.harness.config import RunConfig
from runner.workload.harness.replicas import Replica, replica_of

# How long a collective (the barrier around the leader's evaluation included) may wait.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)

# Dynamic loss scaling under fp16, the same constants in every framework (docs/workload.md).
LOSS_SCALE_INIT = 2.0**15
LOSS_SCALE_GROWTH_INTERVAL = 2000

# DistributedDataParallel's options, recorded in settings.parallel.ddp. broadcast_buffers=False:
# DDP's default re-broadcasts rank 0's buffers (BatchNorm running statistics) before every
# forward, one more blocking collective per step; rank 0's own buffers evolve identically either
# way (it receives its own), and only rank 0 evaluates and is read back, so nothing a run reports
# changes. With sync_batch_norm the statistics are global and every replica's are equal anyway.
# gradient_as_bucket_view: gradients live in the all-reduce buckets (no copy in, no copy out).
DDP_OPTIONS = {"broadcast_buffers": False, "gradient_as_bucket_view": True}

_AMP_DTYPES = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


class TorchBackend:
    framework = "pytorch"
    augment: Any = None  # a DeviceAugment when training augmentation runs on the device (build)

    def __init__(self, cfg: RunConfig, optim_cfg: Any) -> None:
        self.cfg, self.optim_cfg = cfg, optim_cfg
        self.cuda = cfg.on_gpu
        self.replica: Replica = replica_of(cfg)
        self.distributed = self.replica.processes > 1
        self.device = torch.device(f"cuda:{self.replica.local_rank}" if self.cuda else "cpu")
        self.amp_dtype = _AMP_DTYPES.get(cfg.train.precision)
        self.model: Any = None
        self.step_model: Any = None  # the compiled module, or the model itself (DDP-wrapped when distributed)
        self.eval_model: Any = None
        self.opt: Any = None
        self.scaler: Any = None
        self._settings: dict[str, Any] = {}

    # -- environment ----------------------------------------------------------------------
    def setup(self) -> None:
        t = self.cfg.train
        if t.threads is not None:
            torch.set_num_threads(t.threads)
            try:  # settable once, before any inter-op work started in this process
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
        if self.cuda:
            if not torch.cuda.is_available():
                raise RuntimeError("variant cuda, but PyTorch sees no CUDA device")
            if t.deterministic:  # cuBLAS needs this before its first handle is created
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.deterministic = t.deterministic
            torch.backends.cudnn.benchmark = not t.deterministic
            # fp32 means fp32: TensorFloat-32 off in both frameworks (defaults differ between them).
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        torch.use_deterministic_algorithms(t.deterministic)
        if self.distributed:
            self._init_process_group()
        random.seed(self.cfg.seed)
        # Initial weights are the canonical numpy draw in every replica; the framework generator
        # (dropout masks) differs per replica, so replicas do not drop the same units.
        torch.manual_seed(self.cfg.seed + self.replica.rank)
        self._settings = {
            "device": str(self.device), "precision": t.precision, "deterministic": t.deterministic,
            "execution": _execution(t),
            "step_timing": "cuda events" if self.cuda else "host clock (synchronous steps)",
            "read_every_steps": self.cfg.measurement.read_every_steps,
            "compile": t.compile, "cuda_graphs": t.cuda_graphs, "channels_last": t.channels_last,
            "layout": "NCHW, channels_last memory" if t.channels_last else "NCHW",
            "intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
            "loss_scale": {"init": LOSS_SCALE_INIT, "growth_interval": LOSS_SCALE_GROWTH_INTERVAL}
            if t.precision == "amp_fp16" else None,
        }
        if self.cuda:
            self._settings.update(cudnn_benchmark=not t.deterministic, tf32=False)
        par = self.cfg.parallel
        if par.data:
            self._settings["parallel"] = {
                "mode": "data", "launcher": "torchrun" if self.distributed else None,
                "wrapper": "DistributedDataParallel" if self.distributed else None,
                "backend": (("nccl" if self.cuda else "gloo") if self.distributed else None),
                "replicas": par.replicas, "rank": self.replica.rank, "global_batch": par.global_batch,
                "per_replica_batch": par.per_replica_batch, "lr_scaling": par.lr_scaling,
                "lr_factor": par.lr_factor, "sync_batch_norm": par.sync_batch_norm,
                "torch_seed": self.cfg.seed + self.replica.rank,
                "buffers": "each replica's own; rank 0's evaluate" if self.distributed else None,
                "ddp": dict(DDP_OPTIONS) if self.distributed else None,
            }

    def _init_process_group(self) -> None:
        import torch.distributed as dist

        from runner.workload.harness.replicas import die_with_launcher

        die_with_launcher()
        if self.cuda:
            torch.cuda.set_device(self.device)
            dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=self.device)
        else:  # the replicas share one node: loopback (a container without network has nothing else)
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_destroy_process_group)
    def info(self) -> dict[str, Any]:
        return framework_info("pytorch", probe_gpu=self.cuda)

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    # -- model ----------------------------------------------------------------------------
    def build(self, arch: Any, weights: dict[str, np.ndarray]) -> ParamCounts:
        from runner.workload.models import torch_impl
        from runner.workload.optim import torch_optim

        model = torch_impl.build(arch, weights=weights)
        if self.distributed and self.cfg.parallel.sync_batch_norm:
            sync_batch_norm(model, cuda=self.cuda)
        model.to(self.device)
        # Frozen layers (arch.frozen) have requires_grad=False from the builder, and their
        # BatchNorm stays in eval mode (keeps its statistics), exactly as tf_impl's does.
        model.train()
        self.model = model
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch_optim.build(params, self.optim_cfg)
        if self.amp_dtype is torch.float16:
            self.scaler = torch.amp.GradScaler(
                self.device.type, init_scale=LOSS_SCALE_INIT, growth_factor=2.0, backoff_factor=0.5,
                growth_interval=LOSS_SCALE_GROWTH_INTERVAL)
        if self.cfg.train.channels_last:  # 4-d weights and activations stored NHWC (cuDNN's fast path under AMP)
            model.to(memory_format=torch.channels_last)
        compile_ = _compiler(self.cfg.train)
        self.eval_model = compile_(model)
        self.step_model = self.eval_model
        # Rank 0's parameters and buffers are broadcast now (all replicas start from the same canonical
        # weights anyway); see DDP_OPTIONS for why buffers are not broadcast again every forward.
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.step_model = compile_(DistributedDataParallel(
                model, device_ids=[self.device.index] if self.cuda else None, **DDP_OPTIONS))
        self._build_augment()
        trainable, total = torch_impl.count_params(model)
        return ParamCounts(trainable=trainable, total=total)

    def _build_augment(self) -> None:
        """Training augmentation on the device when the run's augment_on resolves to it
        (capabilities.augment_on; the loader then yields raw batches: harness/batches.py)."""
        on = self.cfg.augment_on
        self._settings["augmentation"] = {"requested": self.cfg.train.augment_on, "on": on}
        if on != "device":
            return
        from runner.workload.harness.device_augment import DeviceAugment

        d = self.cfg.data
        memory_format = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
        self.augment = DeviceAugment(d.augmentation, d.mean, d.std, self.device, memory_format=memory_format)

    def _train_mode(self, training: bool) -> None:
        if self.model.training != training:
            self.model.train(training)

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.train.label_smoothing,
                               reduction=reduction)

    # -- steps ----------------------------------------------------------------------------
    def feed(self, source: Any) -> Any:
        """The epoch's training batches: with augmentation on the device, copied onto it one batch
        ahead (DevicePrefetcher: reused pinned buffers and a side stream on CUDA; fresh tensors on
        CPU); closing it closes the loader. Otherwise the loader's batches as they are."""
        if self.augment is None:
            return source
        from runner.workload.harness.device_augment import DevicePrefetcher

        return DevicePrefetcher(source, self.device)

    def to_device(self, x: Any, y: Any, decisions: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A host batch (float32 NHWC, int64) to the device; or, with `decisions` (augmentation on
        the device), the raw uint8 NHWC batch augmented and normalised there by DeviceAugment
        (bit-identical to the host path: tests/workload/test_device_augment.py)."""
        if decisions is not None:
            if self.augment is None:
                raise RuntimeError("a raw batch with decisions, but augmentation is not on the device")
            xt, yt = torch.as_tensor(x), torch.as_tensor(y)  # the prefetcher's tensors: already there
            if xt.device != self.device:
                xt = xt.to(self.device, non_blocking=True)
            if yt.device != self.device:
                yt = yt.to(self.device, non_blocking=True)
            return self.augment(xt, decisions), yt
        if self.cfg.train.channels_last:  # NHWC memory IS channels_last: a NCHW view, no copy
            xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
        else:
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        yt = torch.from_numpy(np.ascontiguousarray(y))
        if self.cuda:
            xt = xt.pin_memory().to(self.device, non_blocking=True)
            yt = yt.pin_memory().to(self.device, non_blocking=True)
        return xt, yt

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], lr: float) -> tuple[float, int]:
        from runner.workload.optim import torch_optim

        x, y = batch
        self._train_mode(True)
        torch_optim.set_lr(self.opt, lr)
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.step_model(x)
            loss = self._loss(logits, y, "mean")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        correct = (logits.detach().argmax(1) == y).sum()
        return torch.stack([loss.detach().double(), correct.double()])  # unread: no wait for the device

    def read_steps(self, pending: list[torch.Tensor]) -> list[tuple[float, int]]:
        stats = torch.stack(pending)  # (steps, 2)
        if self.distributed:  # the global batch's mean loss and correct count, for the leader's events
            import torch.distributed as dist

            dist.all_reduce(stats)  # one collective for every step since the last read
            stats[:, 0] /= self.replica.processes
        return [(loss, int(round(correct))) for loss, correct in stats.tolist()]  # .tolist() waits

    def mark(self) -> Any:
        if not self.cuda:
            return None  # CPU steps are synchronous: the host clock times them
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_s(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1000.0

    def eval_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, int]:
        x, y = batch
        self._train_mode(False)
        with torch.inference_mode(), self._autocast():
            logits = self.eval_model(x)
            loss = self._loss(logits, y, "sum")
            correct = (logits.argmax(1) == y).sum()
        return float(loss.item()), int(correct.item())

    def predict(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._train_mode(False)
        with torch.inference_mode(), self._autocast():
            self.eval_model(batch[0])

    def barrier(self) -> None:
        """Wait for every replica (a data-parallel run's non-leaders wait for the leader's evaluation)."""
        import torch.distributed as dist

        dist.barrier()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def peak_device_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None

    def reset_peak_device_bytes(self) -> int | None:
        peak = self.peak_device_bytes()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        return peak

    def is_oom(self, exc: BaseException) -> bool:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
        text = str(exc)
        return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _execution(t: Any) -> str:
    if t.cuda_graphs:
        return "torch.compile(inductor, mode=reduce-overhead: CUDA graphs)"
    return "torch.compile(inductor)" if t.compile else "eager"


def _compiler(t: Any) -> Any:
    """cuda_graphs: torch.compile's reduce-overhead mode (the compiled forward and backward
    captured as CUDA graphs and replayed: one launch instead of hundreds); compile: inductor's
    default mode; else eager."""
    if t.cuda_graphs:
        return lambda m: torch.compile(m, mode="reduce-overhead")
    return torch.compile if t.compile else (lambda m: m)


def _destroy_process_group() -> None:
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the process is exiting; its outcome is already recorded
        pass


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the GLOBAL batch (every replica's slice):
    per-channel sums, sums of squares and counts all-reduced with autograd
    (`torch.distributed.nn.functional.all_reduce`: its backward all-reduces the gradients, as
    SyncBatchNorm's does). For CPU replicas over gloo, where torch.nn.SyncBatchNorm does not run.
    The running statistics follow PyTorch's rule (momentum on the mean and the UNBIASED variance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)),
                           x.new_full((1,), float(x.numel() // c))])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean * mean  # biased: what the batch is normalised with
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)) * m)
                self.num_batches_tracked.add_(1)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batch_norm(model: Any, cuda: bool) -> None:
    """Replace every trained BatchNorm2d by one normalising over the global batch, in place:
    torch.nn.SyncBatchNorm on GPUs (NCCL), GlobalBatchNorm2d on CPU (gloo). Frozen layers keep
    theirs (eval mode: running statistics, nothing to synchronise; the model holds references)."""
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not torch.nn.BatchNorm2d or model.arch.is_frozen(name):
                continue
            cls = torch.nn.SyncBatchNorm if cuda else GlobalBatchNorm2d
            synced = cls(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                         track_running_stats=child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(parent, child_name, synced)
