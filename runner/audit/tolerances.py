"""What counts as reproduced: one table, metric by metric.

Rules:
- `relative`: |new - original| <= band * |original|, the band depending on the variant
  (timings move with the machine; a GPU run is steadier than a shared CPU).
- `seed_spread`: |new - original| <= max(k * std of the original's repeats, floor) when the
  original has at least two ok repeats of the run's configuration; `fixed` otherwise.
- `exact`: equal (integers: parameter counts, epochs completed).
- `bit_identical`: for deterministic CPU runs (recipe.deterministic true and variant cpu) on
  the same CPU (model and instruction sets: runner.audit.facts.BundleFacts.cpu) the value, or
  the whole per-step loss sequence, must be equal bit for bit; other runs use `otherwise` (a
  seed_spread rule) for the value and skip the sequence.

A reproduction passes when every check passes; `runner.audit.reproduction` applies the table.

Timing metrics (throughput, latency, training time) also move with what else the machine did.
A run's host counts as busy when, on average over the run, other processes used more than
BUSY_OTHER_PCT % of all its cores, or the hypervisor stole more than BUSY_STEAL_PCT % of its
CPU time (runs-table columns host_other_cpu_mean_pct and host_steal_mean_pct, from telemetry).
A timing miss where either run's host was busy names that as the likely cause
(`runner.audit.hostload`); the thresholds are a hint, not part of the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_VARIANT = "cpu"
BUSY_OTHER_PCT = 25.0  # % of all host cores used by other processes, mean over the run
BUSY_STEAL_PCT = 5.0  # % of CPU time stolen by the hypervisor, mean over the run

# Metrics measured in time (a latency check is named "latency_per_image_ms[batch=N]").
TIMING_METRICS = frozenset({"mean_images_per_s", "latency_per_image_ms", "training_time_s", "time_to_target_s",
                            "compile_time_s", "wall_s"})


def is_timing(metric: str) -> bool:
    return metric.partition("[")[0] in TIMING_METRICS


@dataclass(frozen=True)
class Tolerance:
    metric: str
    label: str
    rule: str  # relative | seed_spread | exact | bit_identical
    relative: dict[str, float] = field(default_factory=dict)  # variant -> band (fraction of the original)
    k_std: float = 3.0
    floor: float = 0.0
    fixed: float = 0.0
    otherwise: Tolerance | None = None  # for bit_identical: the rule when the run is not deterministic on CPU

    def band_for(self, variant: str | None) -> float:
        return self.relative.get(variant or DEFAULT_VARIANT, self.relative[DEFAULT_VARIANT])


_ACCURACY = dict(rule="seed_spread", k_std=3.0, floor=0.01, fixed=0.02)  # fractions: 0.01 = 1 point
_LOSS_SPREAD = Tolerance("loss", "loss", "seed_spread", k_std=3.0, floor=0.02, fixed=0.05)

TOLERANCES: dict[str, Tolerance] = {t.metric: t for t in (
    Tolerance("status", "status", "exact"),
    Tolerance("epochs_completed", "epochs completed", "exact"),
    Tolerance("params_trainable", "trainable parameters", "exact"),
    Tolerance("mean_images_per_s", "throughput (images/s)", "relative",
              relative={"cpu": 0.10, "cuda": 0.10, "ppc64le": 0.15}),
    Tolerance("latency_per_image_ms", "inference latency p50 per image (ms)", "relative",
              relative={"cpu": 0.20, "cuda": 0.15, "ppc64le": 0.25}),
    Tolerance("final_test_accuracy", "final test accuracy", **_ACCURACY),
    Tolerance("best_test_accuracy", "best test accuracy", **_ACCURACY),
    Tolerance("final_train_accuracy", "final train accuracy", **_ACCURACY),
    Tolerance("final_train_loss", "final train loss", "bit_identical", otherwise=_LOSS_SPREAD),
    Tolerance("final_test_loss", "final test loss", "bit_identical", otherwise=_LOSS_SPREAD),
    Tolerance("step_losses", "per-step training loss sequence", "bit_identical"),
)}


def deterministic_cpu(variant: str | None, deterministic: bool | None) -> bool:
    return variant == "cpu" and deterministic is True
