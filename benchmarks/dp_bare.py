"""The bare data-parallel loops bench_data_parallel.py compares runner's harness with.

    python benchmarks/dp_bare.py pytorch single B STEPS          # one process, batch B
    torchrun --nproc_per_node 2 benchmarks/dp_bare.py pytorch ddp B STEPS   # DDP over gloo, B each
    python benchmarks/dp_bare.py tensorflow single B STEPS
    python benchmarks/dp_bare.py tensorflow mirrored B STEPS     # MirroredStrategy, 2 logical CPUs

The same small CNN from runner's shared description and canonical weights, SGD momentum, one
intra-op thread per replica (TensorFlow's one process: an inter-op thread per replica that runs
its kernels, tf_harness.cpu_replica_threads), a
device-resident random batch, no events, no clocks but the loop's own: what the framework itself
reaches on this machine. Prints one JSON line {"per_replica_img_s": ...} (rank 0 only): the
per-replica batch / the median step time after 5 warm-up steps.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARMUP = 5


def _arch():
    from runner.workload.models import ModelConfig, build_arch
    from runner.workload.models.init import init_weights

    arch = build_arch(ModelConfig.from_dict({"name": "simple_cnn", "num_classes": 10, "input_size": 32}))
    return arch, init_weights(arch, 0)


def pytorch(mode: str, batch: int, steps: int) -> list[float]:
    import torch
    import torch.nn.functional as F

    from runner.workload.harness.torch_harness import DDP_OPTIONS
    from runner.workload.models import torch_impl

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    arch, weights = _arch()
    model = torch_impl.build(arch, weights=weights)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_model = model
    if mode == "ddp":
        import torch.distributed as dist

        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo")
        step_model = torch.nn.parallel.DistributedDataParallel(model, **DDP_OPTIONS)
    gen = torch.Generator().manual_seed(int(os.environ.get("RANK", "0")))
    x, y = torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    if mode == "ddp":
        import torch.distributed as dist

        # Report, then leave without tearing the process group down: torch 2.13's ProcessGroupGloo
        # destructor (run when the DDP model is freed) joins gloo's worker thread while holding the
        # GIL, and that thread may still need the GIL to free the barrier's work object: a deadlock
        # seen once in 20 runs of this loop (py-spy: ~Reducer -> ~ProcessGroupGloo -> thread::join).
        dist.barrier()
        report(times, batch)
        os._exit(0)
    return times


def tensorflow(mode: str, batch: int, steps: int) -> list[float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from runner.workload.harness.tf_harness import cpu_replica_threads
    from runner.workload.models import tf_impl

    replicas = 2 if mode == "mirrored" else 1
    intra, inter = cpu_replica_threads(1, replicas)  # one thread per replica, as the harness's
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    strategy = tf.distribute.MirroredStrategy([f"/CPU:{i}" for i in range(replicas)])
    arch, weights = _arch()
    with strategy.scope():
        model = tf_impl.build(arch, dtype="float32", weights=weights)
        opt = tf.keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        opt.build(model.trainable_variables)  # its slots mirrored too
    glob = batch * replicas
    x = tf.random.stateless_normal((glob, 32, 32, 3), seed=(1, 2))
    y = tf.random.stateless_uniform((glob,), seed=(3, 4), maxval=10, dtype=tf.int64)

    def replica_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        xr, yr = x[r * batch:(r + 1) * batch], y[r * batch:(r + 1) * batch]
        with tf.GradientTape() as tape:
            logits = model(xr, training=True)
            loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(yr, logits, from_logits=True)) / glob
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, grads

    @tf.function
    def step() -> tf.Tensor:
        loss, grads = strategy.run(replica_step, args=(x, y))
        grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)

    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - t0)
    return times


def report(times: list[float], batch: int) -> None:
    """The JSON line (rank 0 only), flushed: the DDP path leaves with os._exit right after."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"per_replica_img_s": batch / statistics.median(times[WARMUP:])}), flush=True)


def main() -> int:
    framework, mode, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    report({"pytorch": pytorch, "tensorflow": tensorflow}[framework](mode, batch, steps), batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
