"""Checkpoints -> canonical tensors (runner's names, PyTorch layouts, float32).

PyTorch: `torch.load(..., weights_only=True)`: torch's restricted unpickler, which refuses any
global outside tensors and plain containers, so a checkpoint cannot run code. torch is imported
here, lazily, only by `runner weights import` (the host never imports it at start-up); where the
host Python has no torch, convert in the PyTorch image's Python. A state dict, or a mapping with
a `state_dict` entry; BatchNorm's `num_batches_tracked` counters are dropped (not weights).

Keras: a Keras 3 `.weights.h5` written by runner's own Keras model (`tf_impl`, layer names =
runner's layer paths), read with h5py (no TensorFlow): each `layers/*/vars` group names its
layer; its datasets 0, 1, ... are the variables in creation order (kernel, bias; gamma, beta,
moving mean, moving variance), permuted to canonical layouts by `models/layouts.py`.

Every input is opened as a regular file first (a FIFO or device is refused before reading), and
sizes are checked before data is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import runner.fileio as fileio
from runner.errors import ModelError, UsageError
from runner.workload.models.arch import Arch, param_specs

MAX_CHECKPOINT_BYTES = 8 << 30


def open_regular(path: Path) -> BinaryIO:
    """A regular checkpoint file opened for reading; anything else is one ModelError."""
    return fileio.open_regular(path, ModelError, what="checkpoint file", max_bytes=MAX_CHECKPOINT_BYTES)


def from_torch(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict file as canonical float32 arrays (names unchanged)."""
    try:
        import torch
    except ImportError:
        raise UsageError("importing a PyTorch checkpoint needs torch in this Python", file=path,
                         fix="pip install torch (CPU is enough), or run the import in the pytorch image") from None
    with open_regular(path) as fh:
        try:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file; all mean "not loadable"
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            # torch's refusal of a pickle global says which one on a later line: show that line
            first = next((ln for ln in lines if "global" in ln.lower()), lines[0])
            raise ModelError(f"not a PyTorch checkpoint loadable without running code ({first[:200]})",
                             file=path, fix="a state dict saved with torch.save(model.state_dict(), ...)") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ModelError(f"holds a {type(obj).__name__}, not a state dict", file=path,
                         fix="save model.state_dict(), not the model")
    out: dict[str, np.ndarray] = {}
    for key, t in obj.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise ModelError(f"entry {key!r} is a {type(t).__name__}, not a tensor", file=path,
                             fix="a state dict maps names to tensors")
        if key.endswith("num_batches_tracked"):
            continue
        if not t.is_floating_point():
            raise ModelError(f"tensor {key} is {t.dtype}, not floating point", file=path)
        out[key] = t.detach().to(torch.float32).contiguous().numpy().copy()
    return out


def from_keras(path: Path, arch: Arch) -> dict[str, np.ndarray]:
    """A `.weights.h5` of runner's Keras model of `arch`, as canonical arrays."""
    try:
        import h5py
    except ImportError:
        raise UsageError("importing Keras weights needs h5py in this Python", file=path,
                         fix="pip install h5py") from None
    by_path: dict[str, list[Any]] = {}
    for spec in param_specs(arch):
        by_path.setdefault(spec.path, []).append(spec)
    with open_regular(path) as fh:
        try:
            f = h5py.File(fh, "r")
        except (OSError, ValueError) as e:
            raise ModelError(f"not a readable HDF5 weights file ({e})", file=path,
                             fix="a Keras 3 model.save_weights('x.weights.h5')") from None
        with f:
            layers = f.get("layers")
            if not isinstance(layers, h5py.Group):
                raise ModelError("has no `layers` group: not a Keras 3 .weights.h5", file=path)
            return _keras_layers(layers, by_path, path, h5py)


def _keras_layers(layers: Any, by_path: dict[str, list[Any]], path: Path, h5py: Any) -> dict[str, np.ndarray]:
    from runner.workload.models.layouts import from_keras, keras_shape

    out: dict[str, np.ndarray] = {}
    for group_name in layers:
        group = layers[group_name]
        var_group = group.get("vars") if isinstance(group, h5py.Group) else None
        if not isinstance(var_group, h5py.Group) or len(var_group) == 0:
            continue  # a layer without variables (ReLU, pooling, padding)
        name = var_group.attrs.get("name", group_name)
        name = name.decode() if isinstance(name, bytes) else str(name)
        specs = by_path.get(name)
        if specs is None:
            raise ModelError(f"layer {name!r} holds variables but the model has no such layer", file=path,
                             fix="import Keras weights saved from runner's model of this exact config")
        if sorted(var_group) != [str(i) for i in range(len(specs))]:
            raise ModelError(f"layer {name!r} holds variables {sorted(var_group)}, the model needs {len(specs)}",
                             file=path)
        for i, spec in enumerate(specs):
            ds = var_group[str(i)]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f":
                raise ModelError(f"{name}/vars/{i} is not a float array", file=path)
            if tuple(ds.shape) != keras_shape(spec):
                raise ModelError(f"tensor {spec.key}: the file holds {tuple(ds.shape)}, the model needs "
                                 f"{keras_shape(spec)} (Keras layout)", file=path,
                                 fix="import weights saved from this exact model config")
            out[spec.key] = np.ascontiguousarray(from_keras(spec, np.asarray(ds[()], dtype=np.float32)))
    return out
