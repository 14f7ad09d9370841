"""Did a new bundle reproduce an original one? Run by run, metric by metric, within the tolerances.

`compare_runs(original, new)` matches runs (by id, else by framework, sweep, params and repeat),
applies `runner.audit.tolerances.TOLERANCES` to each metric, and attaches the provenance diff so
that a miss comes with the differences most likely to explain it. A timing miss (throughput,
latency) also says whether either run's host was busy (`runner.audit.hostload`). `runner reproduce BUNDLE`
calls it after re-running a bundle; `runner.audit.render` prints it as a table or Markdown.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from runner.audit.diff import DiffItem, provenance_diff
from runner.audit.facts import BundleFacts, load_facts, match_runs, run_key
from runner.audit.hostload import likely_cause
from runner.audit.tolerances import TOLERANCES, Tolerance, deterministic_cpu, is_timing
from runner.bundle.reader import Bundle

PASS, MISS, MISSING, SKIP = "pass", "miss", "missing", "skip"
MAX_CAUSES = 2  # distinct likely causes named in the one-line summary
NEEDED = ["runs", "steps", "latency"]  # tables read when given paths (telemetry is not judged)

# Checked for every matched run, in this order (latency per batch size and the step losses follow).
RUN_METRICS = ("status", "epochs_completed", "params_trainable", "final_test_accuracy", "best_test_accuracy",
               "final_train_accuracy", "final_test_loss", "final_train_loss", "mean_images_per_s")


@dataclass(frozen=True)
class Check:
    run_id: str  # the original run
    new_run_id: str | None
    framework: str
    metric: str
    original: Any
    new: Any
    tolerance: str  # as applied, in words: "±10% (cpu)", "±0.030 (3 x std of 3 repeats)", "bit-identical"
    verdict: str  # pass | miss | missing | skip
    detail: str = ""
    cause: str = ""  # a timing miss: what host load says ("likely cause: the ORIGINAL run's host was busy ...")


@dataclass
class ReproductionReport:
    original: Path
    new: Path
    checks: list[Check] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # original runs without a counterpart
    extra: list[str] = field(default_factory=list)  # new runs without an original
    provenance: list[DiffItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unmatched and all(c.verdict in (PASS, SKIP) for c in self.checks)

    @property
    def misses(self) -> list[Check]:
        return [c for c in self.checks if c.verdict in (MISS, MISSING)]

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, MISS: 0, MISSING: 0, SKIP: 0}
        for c in self.checks:
            out[c.verdict] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        head = "reproduced" if self.ok else "NOT reproduced"
        text = f"{head}: {c[PASS]} checks passed, {c[MISS]} missed, {c[MISSING]} missing, {c[SKIP]} skipped"
        if self.unmatched:
            text += f"; {len(self.unmatched)} original run(s) have no counterpart"
        for c in self.explained_misses()[:MAX_CAUSES]:
            text += f"; {c.metric} {_value(c.original)} vs {_value(c.new)} ({c.run_id}): {c.cause}"
        return text

    def explained_misses(self) -> list[Check]:
        """Misses with a cause, one per distinct cause (the first check that has it)."""
        seen: dict[str, Check] = {}
        for c in self.misses:
            if c.cause and c.cause not in seen:
                seen[c.cause] = c
        return list(seen.values())

    def to_markdown(self, max_provenance: int = 25) -> str:
        from runner.audit.render import reproduction_markdown

        return reproduction_markdown(self, max_provenance)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return "null" if v is None else str(v)


def _spreads(facts: BundleFacts) -> dict[tuple[Any, ...], dict[str, list[float]]]:
    """(framework, sweep, params) -> metric -> the ok repeats' values in the original."""
    out: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    for row in facts.runs:
        if row.get("status") != "ok":
            continue
        group = out.setdefault(run_key(row)[:3], {})
        for metric, value in row.items():
            if _num(value):
                group.setdefault(metric, []).append(float(value))
    return out


def _deterministic(facts: BundleFacts, row: dict[str, Any]) -> bool:
    config = facts.run_config(row["run_id"]) or {}
    flag = (config.get("train") or {}).get("deterministic")
    if flag is None:
        flag = ((facts.manifest.get("spec") or {}).get("recipe") or {}).get("deterministic")
    return deterministic_cpu(row.get("variant"), flag)


def _other_cpu(original: tuple[str | None, tuple[str, ...] | None],
               new: tuple[str | None, tuple[str, ...] | None]) -> str | None:
    """How the CPUs of two runs differ, or None when they are the same (or either is unrecorded)."""
    (model_o, flags_o), (model_n, flags_n) = original, new
    if model_o is None or model_n is None:
        return None
    if model_o != model_n:
        return f"the original ran on {model_o}, this on {model_n}"
    if flags_o is not None and flags_n is not None and flags_o != flags_n:
        gained, lost = sorted(set(flags_n) - set(flags_o)), sorted(set(flags_o) - set(flags_n))
        change = ", ".join([*(f"+{f}" for f in gained[:6]), *(f"-{f}" for f in lost[:6])])
        return f"both ran on {model_o}, with other CPU features ({change})"
    return None


def _spread_band(tol: Tolerance, values: list[float]) -> tuple[float, str]:
    if len(values) >= 2:
        std = statistics.stdev(values)
        band = max(tol.k_std * std, tol.floor)
        why = f"{tol.k_std:g} x std {std:.4g} of {len(values)} repeats" + (", floor" if band == tol.floor else "")
        return band, f"±{band:.4g} ({why})"
    return tol.fixed, f"±{tol.fixed:g} (fixed: no repeats to measure the seed-to-seed spread)"


def judge(tol: Tolerance, original: Any, new: Any, *, variant: str | None, deterministic: bool,
          repeats: list[float]) -> tuple[str, str, str]:
    """(verdict, tolerance in words, detail) for one value."""
    if original is None:
        return SKIP, "-", "the original did not record it"
    if new is None:
        return MISSING, "-", "the new run did not record it"
    rule = tol
    if tol.rule == "bit_identical" and not deterministic:
        rule = tol.otherwise or tol
    if rule.rule == "exact":
        return (PASS if original == new else MISS), "equal", ""
    if rule.rule == "bit_identical":
        same = _num(original) and _num(new) and np.float64(original).tobytes() == np.float64(new).tobytes()
        same = same or original == new and not _num(original)
        return (PASS if same else MISS), "bit-identical (deterministic CPU run)", ""
    if not (_num(original) and _num(new)):
        return MISS, "-", f"not a number: {_fmt(new)}"
    diff = abs(float(new) - float(original))
    if rule.rule == "relative":
        band = rule.band_for(variant)
        words = f"±{band:.0%} ({variant or 'cpu'})"
        if not original:
            return (PASS if diff == 0 else MISS), words, "the original is 0"
        rel = (float(new) - float(original)) / abs(float(original))
        return (PASS if abs(rel) <= band + 1e-12 else MISS), words, f"{rel:+.1%}"
    band, words = _spread_band(rule, repeats)
    return (PASS if diff <= band + 1e-12 else MISS), words, f"{float(new) - float(original):+.4g}"


def _losses_by_run(steps: pa.Table | None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """run id -> (loss, epoch, step) arrays in global-step order."""
    if steps is None or steps.num_rows == 0:
        return {}
    enc = steps.column("run_id").combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    names = enc.dictionary.to_pylist()
    loss = steps.column("loss").to_numpy()  # nulls become NaN
    gstep = steps.column("global_step").fill_null(-1).to_numpy()
    epoch = steps.column("epoch").fill_null(-1).to_numpy()
    step = steps.column("step").fill_null(-1).to_numpy()
    order = np.lexsort((gstep, codes))
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))
    out, start = {}, 0
    for i, name in enumerate(names):
        idx = order[start:bounds[i]]
        out[name] = (loss[idx].astype(np.float64), epoch[idx], step[idx])
        start = bounds[i]
    return out


def compare_steps(a: tuple[np.ndarray, ...] | None, b: tuple[np.ndarray, ...] | None) -> tuple[str, str]:
    """(verdict, detail) of two per-step loss sequences compared bit for bit."""
    if a is None or len(a[0]) == 0:
        return SKIP, "the original recorded no steps"
    if b is None or len(b[0]) == 0:
        return MISSING, "the new run recorded no steps"
    la, lb = a[0], b[0]
    if len(la) != len(lb):
        return MISS, f"{len(la)} steps originally, {len(lb)} now"
    bits_a, bits_b = la.view(np.uint64), lb.view(np.uint64)
    nan_a, nan_b = np.isnan(la), np.isnan(lb)
    differ = (bits_a != bits_b) & ~(nan_a & nan_b)
    if not differ.any():
        return PASS, f"{len(la)} steps bit-identical"
    first = int(np.argmax(differ))
    return MISS, (f"{int(differ.sum())} of {len(la)} steps differ; first at epoch {int(a[1][first])} step "
                  f"{int(a[2][first])}: {la[first]!r} vs {lb[first]!r}")


def _latency(bundle: Bundle) -> dict[str, dict[int, float]]:
    table = bundle.tables.get("latency")
    out: dict[str, dict[int, float]] = {}
    if table is None:
        return out
    for row in table.select(["run_id", "batch_size", "per_image_ms", "p50_ms"]).to_pylist():
        value = row["per_image_ms"] if row["per_image_ms"] is not None else row["p50_ms"]
        if row["batch_size"] is not None and value is not None:
            out.setdefault(row["run_id"], {})[int(row["batch_size"])] = float(value)
    return out


def _cause(metric: str, verdict: str, original: dict[str, Any], new: dict[str, Any]) -> str:
    return likely_cause(original, new) if verdict == MISS and is_timing(metric) else ""


def compare_runs(original: Bundle | BundleFacts | str | Path, new: Bundle | BundleFacts | str | Path,
                 with_provenance: bool = True) -> ReproductionReport:
    """Judge `new` as a reproduction of `original`; see the module docstring.

    Give paths (or Bundles read with the runs, steps and latency tables: a Bundle without its
    steps table cannot have its per-step losses compared, and those checks are skipped).
    """
    fo = original if isinstance(original, BundleFacts) else load_facts(original, NEEDED)
    fn = new if isinstance(new, BundleFacts) else load_facts(new, NEEDED)
    report = ReproductionReport(fo.bundle.path, fn.bundle.path)
    matching = match_runs(fo.runs, fn.runs)
    report.unmatched = [r["run_id"] for r in matching.only_a if r.get("status") == "ok"]
    report.extra = [r["run_id"] for r in matching.only_b]
    spreads = _spreads(fo)
    steps_o, steps_n = _losses_by_run(fo.bundle.tables.get("steps")), _losses_by_run(fn.bundle.tables.get("steps"))
    lat_o, lat_n = _latency(fo.bundle), _latency(fn.bundle)
    for pair in matching.pairs:
        a, b = pair.a, pair.b
        rid, nid, fw = a["run_id"], b["run_id"], a.get("framework") or "?"
        if a.get("status") != "ok":
            report.checks.append(Check(rid, nid, fw, "status", a.get("status"), b.get("status"), "-", SKIP,
                                       "the original run did not succeed: nothing to reproduce"))
            continue
        det = _deterministic(fo, a)
        other_cpu = _other_cpu(fo.cpu(rid), fn.cpu(nid)) if det else None
        if other_cpu:  # bit-identity is a same-CPU promise (oneDNN picks kernels by ISA): tolerances instead
            det = False
        variant = a.get("variant")
        repeats = spreads.get(run_key(a)[:3], {})
        for metric in RUN_METRICS:
            tol = TOLERANCES[metric]
            verdict, words, detail = judge(tol, a.get(metric), b.get(metric), variant=variant, deterministic=det,
                                           repeats=repeats.get(metric, []))
            report.checks.append(Check(rid, nid, fw, metric, a.get(metric), b.get(metric), words, verdict, detail,
                                       _cause(metric, verdict, a, b)))
        tol = TOLERANCES["latency_per_image_ms"]
        for bs, value in sorted(lat_o.get(rid, {}).items()):
            new_value = lat_n.get(nid, {}).get(bs)
            verdict, words, detail = judge(tol, value, new_value, variant=variant, deterministic=det, repeats=[])
            metric = f"latency_per_image_ms[batch={bs}]"
            report.checks.append(Check(rid, nid, fw, metric, value, new_value, words, verdict, detail,
                                       _cause(metric, verdict, a, b)))
        if det:
            verdict, detail = compare_steps(steps_o.get(rid), steps_n.get(nid))
            n_o, n_n = len(steps_o.get(rid, ((),))[0]), len(steps_n.get(nid, ((),))[0])
            report.checks.append(Check(rid, nid, fw, "step_losses", f"{n_o} steps", f"{n_n} steps",
                                       "bit-identical (deterministic CPU run)", verdict, detail))
        else:
            why = (f"deterministic, but bit-identity holds on the same CPU only: {other_cpu}" if other_cpu
                   else "not a deterministic CPU run: the sequence is not expected to match")
            report.checks.append(Check(rid, nid, fw, "step_losses", None, None, "-", SKIP, why))
    if with_provenance:
        report.provenance = provenance_diff(fo, fn)
    return report


def report_json(report: ReproductionReport) -> dict[str, Any]:
    """The report as plain JSON (for --json and for saving beside a reproduction)."""
    return json.loads(json.dumps({
        "original": str(report.original), "new": str(report.new), "ok": report.ok, "summary": report.summary(),
        "checks": [c.__dict__ for c in report.checks], "unmatched": report.unmatched, "extra": report.extra,
        "provenance": [{"group": d.group, "field": d.field, "a": d.a, "b": d.b, "rank": d.rank, "runs": d.runs}
                       for d in report.provenance],
    }, default=str))
