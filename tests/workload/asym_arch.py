"""A small hand-made `Arch` with ASYMMETRIC paddings (no published model has one): a strided conv
padded (0, 1, 0, 1) like TensorFlow's 'same', a max-pool padded (1, 0, 1, 0). It exercises the
builders' explicit-pad paths (zeros for convs, -inf for max-pools). Pure Python: importable by
the tests and by the MXNet jobs in `.venv-mxnet`."""

from __future__ import annotations

from runner.workload.models.arch import Arch, BatchNorm2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU, trace


def asym_arch() -> Arch:
    layers = (
        Conv2d("conv1", 3, 8, (3, 3), (2, 2), (0, 1, 0, 1), bias=True),  # 10x10 -> 5x5
        BatchNorm2d("bn1", 8, 0.1, 1e-5),
        ReLU("relu1"),
        BatchNorm2d("bn2", 8, 0.1, 1e-5),  # re-centred: border windows of negative values only, where
        MaxPool2d("pool1", (2, 2), (2, 2), (1, 0, 1, 0)),  # 5x5 -> 3x3; -inf padding differs from 0
        Flatten("flatten"),
        Dense("fc", 8 * 3 * 3, 5, input_chw=(8, 3, 3)),
    )
    arch = Arch("asym", (3, 10, 10), 5, layers, "torch_default")
    trace(arch)
    return arch
