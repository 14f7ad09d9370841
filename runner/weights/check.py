"""Before any run starts: find the pinned weights, check them against every run's model.

One line, exit 2, nothing run, when the file is missing, its hash differs, or a tensor does not
fit (the skip rule of runner/workload/models/pretrained.py, checked on the .npz headers only).
"""

from __future__ import annotations

from pathlib import Path

from runner.spec.plan import Plan
from runner.weights.store import StoredWeights, find


def plan_weights(plan: Plan, data_root: Path) -> StoredWeights | None:
    """The verified weights file every run of `plan` starts from, or None when none is pinned."""
    pin = plan.experiment.model.pretrained
    if pin is None:
        return None
    stored = find(pin.sha256, data_root, pin.path, plan.spec_path)
    from runner.spec.workload_config import workload_config
    from runner.workload.models import ModelConfig, build_arch
    from runner.workload.models.npz import npz_index
    from runner.workload.models.pretrained import plan_load

    tensors = {m.key: (m.dtype, m.shape) for m in npz_index(stored.path)}
    checked: set[str] = set()
    for run in plan.runs:
        section = workload_config(run)["model"]
        key = repr(sorted(section.items()))
        if key in checked:
            continue
        checked.add(key)
        cfg = ModelConfig.from_dict(section, source=str(plan.spec_path))
        plan_load(build_arch(cfg), tensors, cfg.pretrained["skip"] if cfg.pretrained else (), str(stored.path))
    return stored
