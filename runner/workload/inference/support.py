"""What each framework can measure in `measurement.inference`: the one table the planner and the
workload's run.json reader both read (like runner.workload.capabilities for training).

Pure Python: the host never imports a framework to decide this. A precision a framework cannot
measure on a variant is refused naming `measurement.inference.precisions[i]`; a framework with no
inference comparison at all (MXNet, for now) is refused naming `measurement.inference`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import SpecError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
BASELINE = "fp32"

# framework -> variant -> precisions it can measure (anything else is refused at plan time).
# int8 is CPU only: torch.ao's x86 backend (fbgemm/oneDNN kernels) runs on x86 CPUs, and the TFLite
# interpreter runs on the CPU, so on a cuda variant it would not measure the GPU the run was given.
# ppc64le: neither torch.ao's x86 backend nor a verified TFLite build exists there.
SUPPORTED: dict[str, dict[str, tuple[str, ...]]] = {
    "pytorch": {"cpu": PRECISIONS, "cuda": ("fp32", "fp16", "bf16"), "ppc64le": ("fp32", "bf16")},
    "tensorflow": {"cpu": PRECISIONS, "cuda": ("fp32", "fp16", "bf16"), "ppc64le": ("fp32", "bf16")},
}

_WHY = {
    "int8": "post-training int8 runs on the CPU only (torch.ao's x86 backend, the TFLite interpreter)",
    "fp16": "half-precision inference is not verified on this variant",
}


def check_support(framework: str, variant: str, inference: dict[str, Any] | None,
                  file: Path | str | None = None, parallel: dict[str, Any] | None = None) -> None:
    """Raise a SpecError naming the run.json field when `framework` on `variant` cannot measure
    what run.json's `measurement.inference` asks for (`parallel`: run.json's section, if any)."""
    if inference is None:
        return
    if isinstance(parallel, dict) and parallel.get("mode") == "data":
        raise SpecError("the inference comparison runs in one process; a data-parallel run would repeat it in "
                        "every replica on a model wrapped for training", file=file, field="measurement.inference",
                        fix="measure inference in a run without resources.parallel: data")
    table = SUPPORTED.get(framework)
    if table is None:
        raise SpecError(f"{framework} has no inference comparison yet (post-training quantization is "
                        "implemented for pytorch and tensorflow)", file=file, field="measurement.inference",
                        fix=f"remove measurement.inference, or drop {framework} from frameworks")
    allowed = table.get(variant, ())
    for i, precision in enumerate(inference.get("precisions") or []):
        if precision in PRECISIONS and precision not in allowed:
            why = _WHY.get(precision, "not supported")
            raise SpecError(f"{framework} cannot measure {precision} inference on {variant}: {why}",
                            file=file, field=f"measurement.inference.precisions[{i}]",
                            fix=f"on {variant} use {', '.join(allowed)}")
