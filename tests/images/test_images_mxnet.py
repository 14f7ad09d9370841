"""The mxnet-cpu image against the real engine: built hermetically from its lockfile (a real build
every session; the layer cache keeps it short), verified, MXNet 1.9.1 with numpy 1.23.5 imported
offline, a Gluon training step as the engine's unprivileged user on a read-only root, nothing of
the build left in it. The mxnet-cuda lock is checked without an engine: every CUDA library
libmxnet.so links comes from a locked wheel, only the driver's libcuda.so.1 is left to the host."""

from __future__ import annotations

import pytest

from runner.images.catalog import load_catalog
from runner.images.containers import run_command
from runner.images.lockfile import read_lockfile
from runner.images.verify import verify_image

STEP = """
import mxnet as mx, numpy as np
from mxnet import autograd, gluon
net = gluon.nn.HybridSequential()
net.add(gluon.nn.Conv2D(4, 3, in_channels=3), gluon.nn.BatchNorm(in_channels=4), gluon.nn.Activation('relu'),
        gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(2, in_units=4))
net.initialize(mx.init.Xavier()); net.hybridize(static_alloc=True, static_shape=True)
x = mx.nd.array(np.random.default_rng(0).standard_normal((8, 3, 8, 8)), dtype='float32')
y = mx.nd.array([0, 1] * 4)
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
losses = []
for _ in range(5):
    with autograd.record():
        loss = loss_fn(net(x), y).mean()
    loss.backward(); trainer.step(1); losses.append(float(loss.asscalar()))
print(mx.__version__, np.__version__, losses[0] > losses[-1])
"""


@pytest.fixture(scope="module")
def mxnet_image(client, local_base) -> str:
    from runner.images.build import ensure_image

    return ensure_image(client, load_catalog().get("mxnet-cpu"), "always", base=local_base)


@pytest.mark.docker
def test_mxnet_cpu_verifies_against_its_lockfile(client, mxnet_image):
    report = verify_image(client, load_catalog().get("mxnet-cpu"))
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.image_id == mxnet_image
    assert {c.name for c in report.checks} >= {"pip freeze", "debian packages", "platform"}


@pytest.mark.docker
def test_mxnet_trains_offline_as_the_unprivileged_user_on_a_read_only_root(client, mxnet_image):
    container = client.containers.run(mxnet_image, ["python3", "-c", STEP], user="65534:65534", read_only=True,
                                      network_mode="none", detach=True)
    try:
        assert container.wait(timeout=300)["StatusCode"] == 0, container.logs().decode()
        assert container.logs(stderr=False).decode().split() == ["1.9.1", "1.23.5", "True"]
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_no_wheelhouse_apt_lists_or_certificates_in_the_mxnet_image(client, mxnet_image):
    script = ("test ! -e /build && test ! -e /etc/ssl/certs/ca-certificates.crt "
              "&& test -z \"$(ls -A /var/lib/apt/lists)\" "
              "&& test -z \"$(find / -xdev -name '*.whl' -print -quit)\"")
    result = run_command(client, mxnet_image, ["sh", "-c", script])
    assert result.exit_code == 0, result.stderr


def test_mxnet_cuda_lock_carries_every_cuda_library_but_the_driver():
    entry = load_catalog().get("mxnet-cuda")
    lock = read_lockfile(entry.lockfile, entry.name)
    pins = {p.name: p.version for p in lock.pip}
    assert pins["mxnet-cu112"] == "1.9.1" and pins["numpy"] == "1.23.5"
    # libmxnet.so's CUDA dependencies (ldd): cudart, nvrtc, nvToolsExt, cublas, cufft, cusolver,
    # curand, cudnn 8, nccl 2 -- each from one of these wheels; libcuda.so.1 is the host driver's.
    for dist in ("nvidia-cuda-runtime-cu11", "nvidia-cuda-nvrtc-cu11", "nvidia-nvtx-cu11", "nvidia-cublas-cu11",
                 "nvidia-cufft-cu11", "nvidia-cusolver-cu11", "nvidia-curand-cu11", "nvidia-cudnn-cu11",
                 "nvidia-nccl-cu11"):
        assert dist in pins, dist
    assert pins["nvidia-cudnn-cu11"].startswith("8.") and pins["nvidia-nccl-cu11"].startswith("2.")
    dockerfile = entry.dockerfile.read_text()
    for folder in ("cuda_runtime", "cuda_nvrtc", "nvtx", "cublas", "cufft", "cusolver", "curand", "cudnn", "nccl"):
        assert f"site-packages/nvidia/{folder}/lib" in dockerfile, folder
