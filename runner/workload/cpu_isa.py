"""What a CPU must offer for a run to take effect, read from /proc/cpuinfo's flags.

MXNet 1.9.1's bfloat16 mixed precision (contrib.amp on CPU) runs its convolutions and dense layers
in oneDNN 2.x, whose bfloat16 kernels need AVX-512 (oneDNN's `avx512_core`: F, BW, VL and DQ;
native bf16 instructions are used where there are, emulated otherwise). On an AVX2-only CPU (an
AMD EPYC here) every bf16 convolution fails with "could not create a primitive descriptor
iterator". PyTorch's and TensorFlow's CPU bf16 paths have reference kernels and run anywhere.
Standard library only: the workload and the host (runner.reproduce.cpu_check) both read it.
"""

from __future__ import annotations

from pathlib import Path

ONEDNN_BF16_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The first processor's flags (x86 `flags`, arm `Features`); empty where none are stated."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def mxnet_bf16_missing(flags: set[str]) -> list[str]:
    """The AVX-512 subsets oneDNN's bfloat16 kernels need that `flags` lacks ([]: it can run)."""
    return [f for f in ONEDNN_BF16_FLAGS if f not in flags]


def mxnet_bf16_refusal(flags: set[str]) -> str | None:
    """Why an MXNet amp_bf16 CPU run cannot run on a CPU with `flags`, or None."""
    missing = mxnet_bf16_missing(flags)
    if not missing:
        return None
    return (f"MXNet's bfloat16 mixed precision on CPU needs AVX-512 (oneDNN's bf16 kernels); this CPU lacks "
            f"{', '.join(missing)}")
