"""The tables the published studies made, built from bundles, frameworks side by side.

- summary: final train/test accuracy and loss, training time, parameters, epochs, batch,
  optimizer, accelerator; one row per configuration and framework.
- throughput: images/s (and epoch time) vs mini-batch size.
- accuracy_by_epoch: test accuracy after each epoch, per optimizer and learning rate.
- latency: inference latency per image, per inference batch size.
- inference: `measurement.inference` per precision (fp32 / fp16 / bf16 / int8) and batch size:
  latency p50/p90/p99 per image and per batch, throughput, model size, test accuracy, and the
  accuracy drop and speedup against the same run's fp32.
- time_to_target: training time until the target accuracy, and how many runs got there.
- energy: GPU energy per epoch (only where it was measured).

A configuration is everything that says what ran except the framework and the seed
(CONFIG below, the accelerator included: the same spec on two machines is two
configurations). Only runs that ended ok enter the statistics. A spec's `references` are
set beside the rows they match, marked "reported by the study".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.report.load import Loaded
from runner.report.model import Cell, Column, ReportTable
from runner.report.stats import CI_METHOD, Stat, within_noise

CONFIG = ("experiment", "model", "dataset", "variant", "accelerator", "sweep", "epochs", "batch_size", "optimizer",
          "lr", "params_json")
OURS = "ours"
STUDY = "reported by the study"
_SHOWN_PARAMS = {"epochs", "batch_size", "optimizer", "lr"}
_CONFIG_HEADERS = {"params_json": "grid point", "batch_size": "batch", "accelerator": "accelerator"}

# Reference metric names (as the specs write them) -> (table, our column key).
REFERENCE_METRICS: dict[str, tuple[str, str]] = {
    "test_accuracy": ("summary", "final_test_accuracy"), "final_test_accuracy": ("summary", "final_test_accuracy"),
    "train_accuracy": ("summary", "final_train_accuracy"),
    "final_train_accuracy": ("summary", "final_train_accuracy"),
    "test_loss": ("summary", "final_test_loss"), "final_test_loss": ("summary", "final_test_loss"),
    "train_loss": ("summary", "final_train_loss"), "final_train_loss": ("summary", "final_train_loss"),
    "training_time_s": ("summary", "training_time_s"), "params_trainable": ("summary", "params"),
    "images_per_s": ("throughput", "images_per_s"), "mean_images_per_s": ("throughput", "images_per_s"),
    "epoch_time_s": ("throughput", "epoch_time_s"),
    "latency_per_image_ms": ("latency", "per_image_ms"),
    "time_to_target_s": ("time_to_target", "time_to_target_s"),
    "energy_per_epoch_j": ("energy", "energy_per_epoch_j"),
}
_EPOCH_METRIC = re.compile(r"^(?:test_)?accuracy_epoch_(\d+)$")


@dataclass
class Report:
    tables: list[ReportTable]
    bundles: list[dict[str, Any]]
    frameworks: list[str]
    notes: list[str] = field(default_factory=list)

    def table(self, name: str) -> ReportTable | None:
        return next((t for t in self.tables if t.name == name), None)


def _sort_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v).__name__), v if isinstance(v, int | float | str) else str(v))
                 for v in values)


def _config(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in CONFIG)


def _params_text(params_json: str | None) -> str:
    """The grid point as `k=v` text; anything but a JSON object (an edited bundle) as it stands."""
    try:
        params = json.loads(params_json or "{}")
    except ValueError:
        return str(params_json)
    if not isinstance(params, dict):
        return str(params_json)
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in _SHOWN_PARAMS)


def _config_fields(config: tuple[Any, ...]) -> dict[str, Any]:
    """The configuration as row fields; `_params` (not a column) keeps the grid point for matching."""
    out = dict(zip(CONFIG, config, strict=True))
    try:
        params = json.loads(out["params_json"] or "{}")
    except ValueError:
        params = {}
    out["_params"] = params if isinstance(params, dict) else {}
    out["params_json"] = _params_text(out["params_json"])
    return out


def _varying(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if len({str(r.get(k)) for r in rows if r.get("source") == OURS}) > 1]


def _config_columns(rows: list[dict[str, Any]], always: tuple[str, ...] = ()) -> tuple[list[Column], list[str]]:
    """Columns for the configuration fields that vary (and those in `always`); a note for the rest."""
    shown = [k for k in CONFIG if k in always or k in _varying(rows, CONFIG)]
    if "params_json" in shown and not any(r.get("params_json") for r in rows):
        shown.remove("params_json")
    constant = []
    for k in CONFIG:
        if k in shown or k == "params_json":
            continue
        values = {str(r.get(k)) for r in rows if r.get("source") == OURS and r.get(k) is not None}
        if len(values) == 1:
            constant.append(f"{_CONFIG_HEADERS.get(k, k)} {values.pop()}")
    kinds = {"epochs": "int", "batch_size": "int", "lr": "number"}
    cols = [Column(k, _CONFIG_HEADERS.get(k, k), kind=kinds.get(k, "text")) for k in shown]
    notes = [f"all rows: {', '.join(constant)}"] if constant else []
    return cols, notes


def _hidden(columns: list[Column]) -> list[str]:
    """Configuration fields not displayed (constant), still written to CSV and Parquet."""
    shown = {c.key for c in columns}
    return [k for k in CONFIG if k not in shown]


def _groups(loaded: Loaded) -> dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]]:
    """config -> framework -> its runs (all statuses); computed once per Loaded."""
    cached = getattr(loaded, "_groups", None)
    if cached is not None:
        return cached
    out: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for row in loaded.runs:
        out.setdefault(_config(row), {}).setdefault(row.get("framework") or "?", []).append(row)
    result = dict(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))
    loaded._groups = result  # type: ignore[attr-defined]
    return result


def _ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("status") == "ok"]


def _mark(cells: dict[str, Cell]) -> dict[str, Cell]:
    """Mark the cells when the gap between the best and worst framework is within the noise."""
    stats = {fw: c.stat for fw, c in cells.items() if c.stat is not None}
    if len(stats) < 2:
        return cells
    hi = max(stats, key=lambda fw: stats[fw].median)
    lo = min(stats, key=lambda fw: stats[fw].median)
    verdict = within_noise(stats[hi], stats[lo])
    return {fw: Cell(c.stat, c.value, verdict if fw in stats else None) for fw, c in cells.items()}


def _gap(cells: dict[str, Cell]) -> str:
    points = {fw: c.stat.median for fw, c in cells.items() if c.stat is not None}
    if len(points) < 2:
        return ""
    hi, lo = max(points, key=points.__getitem__), min(points, key=points.__getitem__)
    if points[lo] == 0:
        return ""
    text = f"{hi} +{(points[hi] - points[lo]) / abs(points[lo]):.1%}"
    if any(c.within_noise for c in cells.values()):
        text += " ≈ noise"
    return text


def _epoch_time(r: dict[str, Any]) -> float | None:
    if r.get("training_time_s") is None or not r.get("epochs_completed"):
        return None
    return r["training_time_s"] / r["epochs_completed"]


def _energy(r: dict[str, Any]) -> float | None:
    if r.get("gpu_energy_j") is None or not r.get("epochs_completed"):
        return None
    return r["gpu_energy_j"] / r["epochs_completed"]


def _runs_text(runs: list[dict[str, Any]]) -> str:
    ok = len(_ok(runs))
    failed = len(runs) - ok
    return f"{ok} ok" + (f", {failed} not ok" if failed else "")


SUMMARY_METRICS = (("final_train_accuracy", "train acc", "fraction"), ("final_test_accuracy", "test acc", "fraction"),
                   ("final_train_loss", "train loss", ""), ("final_test_loss", "test loss", ""),
                   ("training_time_s", "training time (s)", "s"))


def summary_table(loaded: Loaded) -> ReportTable:
    rows = []
    for config, by_fw in _groups(loaded).items():
        cells: dict[str, dict[str, Cell]] = {m: {} for m, _, _ in SUMMARY_METRICS}
        for fw, runs in sorted(by_fw.items()):
            ok = _ok(runs)
            for metric, _, _ in SUMMARY_METRICS:
                cells[metric][fw] = Cell(Stat.of(r.get(metric) for r in ok))
        for metric in cells:
            cells[metric] = _mark(cells[metric])
        for fw, runs in sorted(by_fw.items()):
            ok = _ok(runs)
            params = Stat.of(r.get("params_trainable") for r in ok)
            row = _config_fields(config) | {"framework": fw, "source": OURS, "runs": _runs_text(runs),
                                            "params": int(params.median) if params else None}
            row.update({metric: cells[metric][fw] for metric, _, _ in SUMMARY_METRICS})
            rows.append(row)
    cols, notes = _config_columns(rows)
    columns = [*cols, Column("framework", "framework"), Column("source", "source"), Column("runs", "runs"),
               Column("params", "params", "parameters", "int"),
               *(Column(m, h, u, "cell") for m, h, u in SUMMARY_METRICS)]
    return ReportTable("summary", "Final results per configuration and framework", columns, rows,
                       notes + [CI_METHOD, "≈: the framework gap is within the seed-to-seed noise (Welch, 5%)"],
                       hidden=_hidden(columns))


def _wide(name: str, title: str, loaded: Loaded, frameworks: list[str],
          metrics: list[tuple[str, str, str, Callable[[dict[str, Any]], float | None]]],
          expand: Callable[[tuple[Any, ...], dict[str, list[dict[str, Any]]]], list[tuple[dict[str, Any],
                           dict[str, list[float | None]]]]] | None = None,
          always: tuple[str, ...] = (), extra_cols: list[Column] | None = None) -> ReportTable:
    """One row per configuration (or per configuration and sub-key, via `expand`), a column per
    framework and metric. metrics: (key, header, unit, value of a run)."""
    rows = []
    for config, by_fw in _groups(loaded).items():
        if expand is None:
            subrows = [({}, {f"{fw}|{m[0]}": [m[3](r) for r in _ok(runs)] for fw, runs in by_fw.items()
                             for m in metrics})]
        else:
            subrows = expand(config, by_fw)
        for extra, values in subrows:
            row = _config_fields(config) | {"source": OURS} | extra
            any_value = False
            for key, _, _, _ in metrics:
                cells = {}
                for fw in frameworks:
                    stat = Stat.of(values.get(f"{fw}|{key}", []))
                    any_value = any_value or stat is not None
                    cells[fw] = Cell(stat)
                cells = _mark(cells)
                for fw, cell in cells.items():
                    row[f"{fw}|{key}"] = cell
                if key == metrics[0][0]:
                    row["gap"] = _gap(cells)
            if any_value:
                rows.append(row)
    cols, notes = _config_columns(rows, always=always)
    fw_cols = [Column(f"{fw}|{key}", f"{fw} {header}", unit, "cell") for key, header, unit, _ in metrics
               for fw in frameworks]
    columns = [*cols, *(extra_cols or []), Column("source", "source"), *fw_cols, Column("gap", "gap")]
    return ReportTable(name, title, columns, rows, notes + [CI_METHOD], hidden=_hidden(columns))


def throughput_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    return _wide("throughput", "Training throughput (images/s) vs mini-batch size", loaded, frameworks,
                 [("images_per_s", "images/s", "images/s", lambda r: r.get("mean_images_per_s")),
                  ("epoch_time_s", "epoch (s)", "s", _epoch_time)], always=("batch_size",))


def accuracy_by_epoch_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    def expand(config, by_fw):
        per_epoch: dict[int, dict[str, list[float | None]]] = {}
        for fw, runs in by_fw.items():
            for r in _ok(runs):
                for e in loaded.epochs.get(r["uid"], []):
                    if e.get("epoch") is not None and e.get("test_accuracy") is not None:
                        per_epoch.setdefault(int(e["epoch"]) + 1, {}).setdefault(f"{fw}|test_accuracy", []).append(
                            e["test_accuracy"])
        return [({"epoch": ep}, vals) for ep, vals in sorted(per_epoch.items())]

    return _wide("accuracy_by_epoch", "Test accuracy after each epoch, per optimizer and learning rate", loaded,
                 frameworks, [("test_accuracy", "test acc", "fraction", lambda r: None)], expand=expand,
                 always=("optimizer", "lr"), extra_cols=[Column("epoch", "epoch", kind="int")])


def latency_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    def expand(config, by_fw):
        per_bs: dict[int, dict[str, list[float | None]]] = {}
        for fw, runs in by_fw.items():
            for r in _ok(runs):
                for lat in loaded.latency.get(r["uid"], []):
                    if lat.get("batch_size") is None:
                        continue
                    value = lat.get("per_image_ms")
                    if value is None and lat.get("p50_ms") is not None:
                        value = lat["p50_ms"] / lat["batch_size"]
                    per_bs.setdefault(int(lat["batch_size"]), {}).setdefault(f"{fw}|per_image_ms", []).append(value)
        return [({"latency_batch": bs}, vals) for bs, vals in sorted(per_bs.items())]

    return _wide("latency", "Inference latency per image (p50, ms) per inference batch size", loaded, frameworks,
                 [("per_image_ms", "ms/image", "ms", lambda r: None)], expand=expand,
                 extra_cols=[Column("latency_batch", "inference batch", kind="int")])


# (key, header, unit) of the inference table, per framework; the first is the gap's metric.
INFERENCE_METRICS = (
    ("per_image_p50_ms", "ms/image p50", "ms"), ("per_image_p90_ms", "ms/image p90", "ms"),
    ("per_image_p99_ms", "ms/image p99", "ms"), ("p50_ms", "ms/batch p50", "ms"), ("p90_ms", "ms/batch p90", "ms"),
    ("p99_ms", "ms/batch p99", "ms"), ("images_per_s", "images/s", "images/s"),
    ("model_bytes", "model bytes", "bytes"), ("test_accuracy", "test acc", "fraction"),
    ("accuracy_drop", "acc drop vs fp32", "fraction"), ("speedup", "speedup vs fp32", "x"),
)
_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


def inference_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    """Frameworks side by side per (precision, inference batch size); a precision that failed in a
    run is left out of its statistics and counted in the note."""
    failed: list[str] = []
    inputs: dict[tuple[Any, ...], set[str]] = {}

    def expand(config, by_fw):
        per_key: dict[tuple[int, str, int], dict[str, list[float | None]]] = {}
        for fw, runs in by_fw.items():
            for r in _ok(runs):
                for row in loaded.inference.get(r["uid"], []):
                    precision, bs = row.get("precision"), row.get("batch_size")
                    if precision is None or bs is None:
                        continue
                    if row.get("error"):
                        failed.append(f"{fw} {precision} ({row['error']})")
                        continue
                    inputs.setdefault((config, precision, bs), set()).add(str(row.get("inputs_sha256")))
                    values = per_key.setdefault((_PRECISION_ORDER.get(precision, 9), precision, int(bs)), {})
                    for key, _, _ in INFERENCE_METRICS:
                        values.setdefault(f"{fw}|{key}", []).append(row.get(key))
        return [({"precision": p, "inference_batch": bs}, vals) for (_, p, bs), vals in sorted(per_key.items())]

    table = _wide("inference", "Inference per precision: latency, throughput, size, accuracy (drop and speedup vs "
                  "fp32 of the same run)", loaded, frameworks,
                  [(k, h, u, lambda r: None) for k, h, u in INFERENCE_METRICS], expand=expand,
                  extra_cols=[Column("precision", "precision"), Column("inference_batch", "inference batch",
                                                                        kind="int")])
    if any(len(hashes) > 1 for hashes in inputs.values()):
        table.notes.append("the frameworks timed DIFFERENT inputs for some rows (inputs_sha256 differ)")
    if failed:
        table.notes.append("failed precisions (not in the statistics): " + "; ".join(sorted(set(failed))))
    return table


def time_to_target_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    def expand(config, by_fw):
        values: dict[str, list[float | None]] = {}
        reached, targets = [], set()
        for fw, runs in by_fw.items():
            ok = _ok(runs)
            got = [r.get("time_to_target_s") for r in ok if r.get("time_to_target_s") is not None]
            values[f"{fw}|time_to_target_s"] = got
            reached.append(f"{fw} {len(got)}/{len(ok)}")
            targets.update(r.get("target_accuracy") for r in ok if r.get("target_accuracy") is not None)
        if not targets:
            return []
        target = ", ".join(f"{100 * t:.1f}%" for t in sorted(targets))
        return [({"target": target, "reached": "; ".join(sorted(reached))}, values)]

    return _wide("time_to_target", "Training time to the target test accuracy", loaded, frameworks,
                 [("time_to_target_s", "time to target (s)", "s", lambda r: None)], expand=expand,
                 extra_cols=[Column("target", "target"), Column("reached", "runs reaching it")])


def energy_table(loaded: Loaded, frameworks: list[str]) -> ReportTable:
    return _wide("energy", "GPU energy per epoch (J), where measured", loaded, frameworks,
                 [("energy_per_epoch_j", "J/epoch", "J", _energy)])


def _matches(match: dict[str, Any], row: dict[str, Any], params: dict[str, Any]) -> bool:
    for key, want in match.items():
        if key == "framework":
            continue
        have = row.get(key, params.get(key)) if key != "params_json" else row.get(key)
        if key not in row and key not in params:
            return False
        if isinstance(want, int | float) and isinstance(have, int | float) and not isinstance(have, bool):
            if float(want) != float(have):
                return False
        elif str(want) != str(have):
            return False
    return True


def add_references(report: Report, loaded: Loaded) -> None:
    """Set each reference's numbers beside the rows its `match` selects, as rows of their own."""
    placed: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    unknown: set[str] = set()
    unmatched = []
    raw_rows = {t.name: [(_params_of(r), r) for r in t.rows] for t in report.tables}
    for ref in loaded.references:
        match = dict(ref.get("match") or {})
        if ref.get("experiment"):
            match.setdefault("experiment", ref["experiment"])
        framework = match.get("framework")
        by_table: dict[str, dict[str, float]] = {}
        for metric, value in (ref.get("metrics") or {}).items():
            m = _EPOCH_METRIC.match(metric)
            if m:
                by_table.setdefault(f"accuracy_by_epoch|{m.group(1)}", {})["test_accuracy"] = value
            elif metric in REFERENCE_METRICS:
                table, key = REFERENCE_METRICS[metric]
                by_table.setdefault(table, {})[key] = value
            else:
                unknown.add(metric)
        for target, values in by_table.items():
            name, _, epoch = target.partition("|")
            table = report.table(name)
            if table is None:
                continue
            want = match | ({"epoch": int(epoch)} if epoch else {})
            hits = [i for i, (params, row) in enumerate(raw_rows[name]) if row.get("source") == OURS
                    and (name != "summary" or framework is None or row.get("framework") == framework)
                    and _matches(want, row, params)]
            if not hits:
                unmatched.append(f"{ref.get('source')} {json.dumps(match, default=str)}")
                continue
            row = {k: v for k, v in raw_rows[name][hits[-1]][1].items() if k in want or k in ("epoch",)}
            row["source"] = f"{STUDY}: {ref.get('source')}"
            if name == "summary":
                row["framework"] = framework or "-"
                for key, value in values.items():
                    row[key] = value if key == "params" else Cell(value=float(value))
            elif framework is None:
                unmatched.append(f"{ref.get('source')} (no framework in its match: shown in the summary only)")
                continue
            else:
                for key, value in values.items():
                    row[f"{framework}|{key}"] = Cell(value=float(value))
            placed.setdefault(name, []).append((hits[-1], row))
    for name, items in placed.items():
        table = report.table(name)
        assert table is not None
        for index, row in sorted(items, key=lambda x: x[0], reverse=True):
            table.rows.insert(index + 1, row)
        table.notes.append(f"rows marked '{STUDY}' are the numbers a published study reported, not our runs")
    if unknown:
        report.notes.append(f"reference metrics not shown (no table for them): {', '.join(sorted(unknown))}")
    if unmatched:
        report.notes.append("references matching none of our runs: " + "; ".join(unmatched))


def _params_of(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("_params") or {}


def build_report(loaded: Loaded) -> Report:
    frameworks = sorted({r.get("framework") or "?" for r in loaded.runs})
    tables = [summary_table(loaded), throughput_table(loaded, frameworks),
              accuracy_by_epoch_table(loaded, frameworks), latency_table(loaded, frameworks),
              inference_table(loaded, frameworks), time_to_target_table(loaded, frameworks)]
    energy = energy_table(loaded, frameworks)
    notes = []
    if energy.rows:
        tables.append(energy)
    else:
        notes.append("energy per epoch: not measured (no GPU energy readings in these bundles)")
    tables = [t for t in tables if t.rows or t.name == "summary"]
    report = Report(tables, loaded.bundles, frameworks, notes)
    add_references(report, loaded)
    return report
