"""What the software environment of a run is: framework build, devices, threads, packages.

Recorded in `run_start` and printed by `python -m runner.workload info`, so a result carries
the facts needed to tell two environments apart (the fingerprint). Imports the framework it
describes lazily; `probe_gpu=False` never calls a CUDA API (CPU runs on GPU machines).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import numpy as np

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES",
              "MXNET_CPU_WORKER_NTHREADS", "MXNET_ENFORCE_DETERMINISM", "MXNET_ENGINE_TYPE",
              "MXNET_CUDNN_AUTOTUNE_DEFAULT", "NVIDIA_TF32_OVERRIDE")


def pip_freeze() -> list[str]:
    """Every installed distribution as `name==version`, sorted, like `pip freeze`."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return [seen[k] for k in sorted(seen)]


def python_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


def _torch_info(probe_gpu: bool) -> dict[str, Any]:
    import torch

    build: dict[str, Any] = {
        "git_version": torch.version.git_version,
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "onednn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "openmp": torch.backends.openmp.is_available(),
        "xla": False,
        "config": torch.__config__.show(),
        "parallel": torch.__config__.parallel_info(),
    }
    devices: list[dict[str, Any]] = [{"name": "cpu", "type": "CPU", "model": platform.processor() or None}]
    if probe_gpu and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            devices.append({
                "name": f"cuda:{i}", "type": "GPU", "model": prop.name,
                "capability": f"{prop.major}.{prop.minor}", "memory_bytes": int(prop.total_memory),
            })
    threads = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    return {"framework": "pytorch", "framework_version": torch.__version__, "build": build,
            "devices": devices, "threads": threads}


def _tf_info(probe_gpu: bool) -> dict[str, Any]:
    import tensorflow as tf

    build_info = dict(tf.sysconfig.get_build_info())
    try:
        from tensorflow.python.util import _pywrap_util_port as port

        mkl = bool(port.IsMklEnabled())
    except ImportError:  # private module moved: record that we could not tell
        mkl = None
    try:
        import keras

        keras_version = keras.__version__
    except ImportError:
        keras_version = None
    build: dict[str, Any] = {
        "git_version": tf.version.GIT_VERSION,
        "compiler": tf.version.COMPILER_VERSION,
        "keras": keras_version,
        "cuda": build_info.get("cuda_version"),
        "cudnn": build_info.get("cudnn_version"),
        "is_cuda_build": bool(build_info.get("is_cuda_build", False)),
        "is_rocm_build": bool(build_info.get("is_rocm_build", False)),
        "xla": bool(tf.test.is_built_with_xla()),
        "mkl": mkl,
        # oneDNN optimisations are on by default on x86 Linux unless this says "0".
        "onednn_opts_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }
    kinds = None if probe_gpu else "CPU"
    devices = [
        {"name": d.name, "type": d.device_type} for d in tf.config.list_physical_devices(kinds)
    ]
    threads = {
        # 0 means "TensorFlow chooses" (the number of cores).
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    return {"framework": "tensorflow", "framework_version": tf.__version__, "build": build,
            "devices": devices, "threads": threads}


def _mx_info(probe_gpu: bool) -> dict[str, Any]:
    import mxnet as mx

    features = {f.name: bool(f.enabled) for f in mx.runtime.feature_list()}
    build: dict[str, Any] = {
        "cuda": features.get("CUDA"),
        "cudnn": features.get("CUDNN"),
        "nccl": features.get("NCCL"),
        "onednn": features.get("MKLDNN"),
        "openmp": features.get("OPENMP"),
        "blas": next((n[5:].lower() for n, on in features.items() if n.startswith("BLAS_") and on), None),
        "xla": False,
        "features": features,  # every compile-time switch libmxnet.so reports
    }
    devices: list[dict[str, Any]] = [{"name": "cpu(0)", "type": "CPU", "model": platform.processor() or None}]
    if probe_gpu and features.get("CUDA"):
        for i in range(mx.context.num_gpus()):
            free, total = mx.context.gpu_memory_info(i)
            devices.append({"name": f"gpu({i})", "type": "GPU", "memory_bytes": int(total)})
    omp = os.environ.get("OMP_NUM_THREADS")
    threads = {
        # MXNet's operators use OpenMP (OMP_NUM_THREADS; unset: MXNet's own default, recorded as None);
        # its engine runs CPU operators on MXNET_CPU_WORKER_NTHREADS threads (default 1).
        "intra_op": int(omp) if omp and omp.isdigit() else None,
        "inter_op": int(os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1")),
    }
    return {"framework": "mxnet", "framework_version": mx.__version__, "build": build,
            "devices": devices, "threads": threads}


FRAMEWORKS = {"pytorch": _torch_info, "tensorflow": _tf_info, "mxnet": _mx_info}


def framework_info(framework: str, probe_gpu: bool) -> dict[str, Any]:
    """framework, framework_version, build{...}, devices[...], threads{...} of one framework."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {sorted(FRAMEWORKS)}")
    return FRAMEWORKS[framework](probe_gpu)


def environment_report(framework: str) -> dict[str, Any]:
    """Everything `info` prints: python, numpy, framework build, devices, threads, pip freeze."""
    return {**python_info(), **framework_info(framework, probe_gpu=True), "packages": pip_freeze()}
