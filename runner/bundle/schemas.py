"""The declared Parquet schemas of a bundle, with units in each field's metadata.

Every field carries `unit` (b"s", b"images/s", b"ms", b"bytes", b"W", b"J", b"fraction", ...;
empty for identifiers and text) and `description`. Each file's schema metadata carries
`bundle_schema_version` and `table`. Bump BUNDLE_SCHEMA_VERSION on any change a reader of
the previous version could misread (a removed or retyped column); readers refuse newer
versions and accept older ones.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from runner.telemetry.schema import SAMPLE_FIELDS

BUNDLE_SCHEMA_VERSION = 4  # 4: runs.warmup_peak_device_memory_bytes (peak_device_memory_bytes now covers
# the timed steps only), inference.cpu_p50_ms; 3: the inference table (TABLE_ADDED_IN); 2: bundle.json (the
# manifest's facts, hashed), host-load columns (ADDED_IN); 1 to 3 read. tests/bundle/test_schema_versions.py
# holds every released version's columns: a column added without a bump fails there.

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32(),
    "bool": pa.bool_(), "strings": pa.list_(pa.field("element", pa.string())),  # Parquet's own name
}


def _f(name: str, type_: str, unit: str = "", description: str = "") -> pa.Field:
    return pa.field(name, _TYPES[type_], nullable=True,
                    metadata={b"unit": unit.encode(), b"description": description.encode()})


def _schema(table: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={b"bundle_schema_version": str(BUNDLE_SCHEMA_VERSION).encode(),
                                       b"table": table.encode()})


RUNS = _schema("runs", [
    # what the run was
    _f("run_id", "string", "", "content hash of the fully resolved run"),
    _f("experiment", "string", "", "experiment name from the spec"),
    _f("sweep", "string", "", "sweep name (\"main\" without sweeps)"),
    _f("framework", "string", "", "pytorch | tensorflow | mxnet"),
    _f("repeat", "int32", "", "repeat index, 0-based"),
    _f("seed", "int64", "", "the run's seed (spec seed + repeat)"),
    _f("model", "string", "", "model name"),
    _f("dataset", "string", "", "dataset name"),
    _f("variant", "string", "", "cpu | cuda | ppc64le"),
    _f("epochs", "int32", "epochs", "epochs planned"),
    _f("batch_size", "int32", "images", "batch size of the recipe"),
    _f("optimizer", "string", "", "sgd | adam | rmsprop"),
    _f("lr", "float64", "", "base learning rate"),
    _f("params_json", "string", "", "the sweep's grid point (JSON object)"),
    # how it ended
    _f("status", "string", "", "ok | failed | not_run"),
    _f("failure_reason", "string", "", "why a run failed (null when ok)"),
    _f("error", "string", "", "the error the workload reported, if any"),
    _f("image_id", "string", "", "container image id (sha256:...), null for the local engine"),
    _f("engine", "string", "", "docker | podman | local"),
    # summary metrics
    _f("epochs_completed", "int32", "epochs", "epochs the run finished"),
    _f("final_train_loss", "float64", "", "mean training loss of the last epoch"),
    _f("final_train_accuracy", "float64", "fraction", "training accuracy of the last epoch"),
    _f("final_test_loss", "float64", "", "test loss at the last evaluation"),
    _f("final_test_accuracy", "float64", "fraction", "test accuracy at the last evaluation"),
    _f("best_test_accuracy", "float64", "fraction", "best test accuracy over evaluations"),
    _f("training_time_s", "float64", "s", "sum of epoch times (training, evaluation excluded)"),
    _f("mean_images_per_s", "float64", "images/s", "training throughput over all epochs, warm-up steps "
                                                   "excluded (as the workload times it)"),
    _f("target_accuracy", "float64", "fraction", "measurement.target_accuracy of the spec"),
    _f("time_to_target_s", "float64", "s", "training time until test accuracy reached the target"),
    _f("compile_time_s", "float64", "s", "first step's compute time (tracing, graph build, compile)"),
    _f("wall_s", "float64", "s", "wall time of the workload process"),
    _f("params_trainable", "int64", "parameters", "trainable parameters"),
    _f("params_total", "int64", "parameters", "all parameters (buffers excluded)"),
    _f("flops_per_image", "int64", "FLOP", "forward-pass floating-point operations per image"),
    _f("latency_p50_ms_json", "string", "ms", "inference latency p50 by batch size (JSON {batch: ms})"),
    _f("peak_device_memory_bytes", "int64", "bytes", "peak accelerator memory over the timed steps (after warm-up)"),
    _f("warmup_peak_device_memory_bytes", "int64", "bytes", "peak accelerator memory over the warm-up steps"),
    _f("peak_host_memory_bytes", "int64", "bytes", "peak resident memory of the workload process"),
    _f("gpu_energy_j", "float64", "J", "GPU energy over the run (from telemetry)"),
    _f("gpu_energy_method", "string", "", "counter | power_integral"),
    _f("throttle_flags", "strings", "", "throttling seen in telemetry: power, thermal, hw_slowdown"),
    _f("telemetry_errors", "int64", "count", "sampling errors counted during the run"),
    _f("host_other_cpu_mean_pct", "float64", "%", "CPU other processes used while the run ran (host busy less "
                                                  "the run's own), mean over telemetry; % of all host cores"),
    _f("host_other_cpu_max_pct", "float64", "%", "the same, highest reading"),
    _f("host_steal_mean_pct", "float64", "%", "CPU time the hypervisor gave to other guests, mean; % of all "
                                              "host cores"),
    _f("host_steal_max_pct", "float64", "%", "the same, highest reading"),
    _f("events_truncated", "bool", "", "the events file ended in a torn line"),
    # environment, repeated on every row so a row stands alone
    _f("framework_version", "string", "", "from the run's run_start event"),
    _f("python_version", "string", "", "Python the workload ran on"),
    _f("cuda_version", "string", "", "CUDA the framework was built with"),
    _f("cudnn_version", "string", "", "cuDNN the framework was built with"),
    _f("host_cpu_model", "string", "", "environment/host.json: cpu.model"),
    _f("host_cpu_threads", "int32", "threads", "logical CPUs of the host"),
    _f("host_memory_bytes", "int64", "bytes", "host memory in total"),
    _f("host_os", "string", "", "distribution (os-release PRETTY_NAME)"),
    _f("host_kernel", "string", "", "kernel release"),
    _f("engine_version", "string", "", "container engine version (null: local engine)"),
    _f("gpu_name", "string", "", "GPU model(s), from NVML"),
    _f("gpu_count", "int32", "GPUs", "GPUs NVML lists on the host"),
    _f("gpu_driver_version", "string", "", "NVIDIA driver version"),
    _f("cuda_driver_version", "string", "", "CUDA version the driver supports"),
    _f("runner_version", "string", "", "runner that wrote the bundle"),
    _f("code_tree_sha256", "string", "", "tree hash of runner/workload + runner/data"),
    _f("git_commit", "string", "", "commit of the runner checkout (null outside git)"),
    _f("dataset_sha256", "string", "", "root hash of the dataset manifest"),
    _f("spec_sha256", "string", "", "hash of the resolved experiment spec"),
    _f("config_sha256", "string", "", "hash of the run.json the workload read"),
])

EPOCHS = _schema("epochs", [
    _f("run_id", "string", "", "the run (runs.run_id)"),
    _f("epoch", "int32", "", "0-based"),
    _f("train_loss", "float64", "", "mean training loss of the epoch"),
    _f("train_accuracy", "float64", "fraction", "training accuracy of the epoch"),
    _f("images", "int64", "images", "training images in the epoch"),
    _f("timed_images", "int64", "images", "images outside warm-up steps (the throughput's numerator)"),
    _f("time_s", "float64", "s", "training time of the epoch"),
    _f("images_per_s", "float64", "images/s", "warm-up steps excluded"),
    _f("data_time_s", "float64", "s", "time taking batches and moving them to the device"),
    _f("compute_time_s", "float64", "s", "time in training steps"),
    _f("test_loss", "float64", "", "test loss after the epoch (null: not evaluated)"),
    _f("test_accuracy", "float64", "fraction", "test accuracy after the epoch"),
    _f("eval_time_s", "float64", "s", "time of the evaluation"),
])

STEPS = _schema("steps", [
    _f("run_id", "string", "", "the run (runs.run_id)"),
    _f("t", "float64", "s", "Unix time of the event"),
    _f("epoch", "int32", "", "0-based epoch"),
    _f("step", "int32", "", "step within the epoch"),
    _f("global_step", "int64", "", "step count over the run, 0-based"),
    _f("loss", "float64", "", "training loss of the step (null: not finite)"),
    _f("lr", "float64", "", "learning rate of the step"),
    _f("batch_size", "int32", "images", "images in the step's batch"),
    _f("data_time_s", "float64", "s", "time taking batches and moving them to the device"),
    _f("compute_time_s", "float64", "s", "time in training steps"),
    _f("warmup", "bool", "", "warm-up steps are excluded from throughput"),
])

LATENCY = _schema("latency", [
    _f("run_id", "string", "", "the run (runs.run_id)"),
    _f("batch_size", "int32", "images", "images per inference call"),
    _f("iterations", "int32", "count", "timed iterations"),
    _f("p50_ms", "float64", "ms", "median latency of one batch"),
    _f("p90_ms", "float64", "ms", "90th percentile"),
    _f("p99_ms", "float64", "ms", "99th percentile"),
    _f("mean_ms", "float64", "ms", "mean latency of one batch"),
    _f("per_image_ms", "float64", "ms", "p50 / batch size"),
])

INFERENCE = _schema("inference", [
    _f("run_id", "string", "", "the run (runs.run_id)"),
    _f("precision", "string", "", "fp32 | fp16 | bf16 | int8 (measurement.inference.precisions)"),
    _f("batch_size", "int32", "images", "images per inference call"),
    _f("runtime", "string", "", "what ran it: eager / tf.function (+ autocast or a Keras policy), torch.ao FX "
                                "int8 (x86), the TFLite interpreter"),
    _f("model_format", "string", "", "what model_bytes measured (state dict, .weights.h5, .tflite)"),
    _f("model_bytes", "int64", "bytes", "size of the serialized model this precision runs from"),
    _f("prepare_time_s", "float64", "s", "time to make the model (int8: calibration and conversion)"),
    _f("test_accuracy", "float64", "fraction", "accuracy on the whole test split at this precision"),
    _f("test_loss", "float64", "", "mean cross-entropy on the test split at this precision"),
    _f("test_images", "int64", "images", "test images evaluated"),
    _f("accuracy_drop", "float64", "fraction", "fp32 test accuracy minus this precision's (same run)"),
    _f("fp32_agreement", "float64", "fraction", "test images whose top-1 class equals fp32's"),
    _f("calibration_images", "int64", "images", "int8: calibration images (the first N training images)"),
    _f("calibration_indices_sha256", "string", "", "int8: sha256 of the calibration images' indices"),
    _f("calibration_sha256", "string", "", "int8: sha256 of the calibration pixels (equal in every framework)"),
    _f("inputs_sha256", "string", "", "sha256 of the timed input batch (equal in every framework)"),
    _f("iterations", "int32", "count", "timed iterations"),
    _f("warmup_iterations", "int32", "count", "untimed calls before them"),
    _f("p50_ms", "float64", "ms", "median latency of one batch"),
    _f("p90_ms", "float64", "ms", "90th percentile of one batch"),
    _f("p99_ms", "float64", "ms", "99th percentile of one batch"),
    _f("mean_ms", "float64", "ms", "mean latency of one batch"),
    _f("per_image_p50_ms", "float64", "ms", "p50 / batch size"),
    _f("per_image_p90_ms", "float64", "ms", "p90 / batch size"),
    _f("per_image_p99_ms", "float64", "ms", "p99 / batch size"),
    _f("images_per_s", "float64", "images/s", "batch size / mean latency"),
    _f("cpu_p50_ms", "float64", "ms", "process CPU time of one call (all threads), median: far below p50_ms "
                                      "means the process waited for a core"),
    _f("speedup", "float64", "x", "fp32 p50 / this precision's p50 at the same batch size (same run)"),
    _f("error", "string", "", "why this precision failed (null when measured)"),
])

TELEMETRY = _schema("telemetry", [
    _f("run_id", "string", "", "the run (runs.run_id)"),
    *(_f(s.name, s.type, s.unit, s.description) for s in SAMPLE_FIELDS),
])

TABLES: dict[str, pa.Schema] = {"runs": RUNS, "epochs": EPOCHS, "steps": STEPS, "latency": LATENCY,
                                "inference": INFERENCE, "telemetry": TELEMETRY}

# Tables added after schema 1, by the version that added them: an older bundle has none.
TABLE_ADDED_IN: dict[str, int] = {"inference": 3}


# Columns added after schema 1, by the version that added them: a bundle of an older version
# lacks them and is still read (a reader sees them as absent, e.g. "host load not recorded").
ADDED_IN: dict[tuple[str, str], int] = {
    **{("runs", c): 2 for c in ("host_other_cpu_mean_pct", "host_other_cpu_max_pct", "host_steal_mean_pct",
                                "host_steal_max_pct")},
    **{("telemetry", c): 2 for c in ("host_cpus", "host_cpu_pct", "host_steal_pct", "host_load_1m",
                                     "other_cpu_pct")},
    ("runs", "warmup_peak_device_memory_bytes"): 4,
    ("inference", "cpu_p50_ms"): 4,
}

# Columns that some bundles of an EARLIER version already hold: runner wrote them for a while before
# the version was bumped. Such a bundle may hold them or not; neither is a problem.
HELD_EARLY: dict[tuple[str, str], int] = {("inference", "cpu_p50_ms"): 3}


def may_hold(table: str, column: str, version: int) -> bool:
    """Whether a bundle of schema `version` may hold `column` beyond the ones it declares."""
    since = HELD_EARLY.get((table, column))
    return since is not None and since <= version


def tables_in(version: int = BUNDLE_SCHEMA_VERSION) -> list[str]:
    """The tables a bundle of schema `version` holds."""
    return [name for name in TABLES if TABLE_ADDED_IN.get(name, 1) <= version]


def declared(table: str, version: int = BUNDLE_SCHEMA_VERSION) -> pa.Schema | None:
    """The columns a bundle of schema `version` declares for `table` (None: not a table of that version)."""
    schema = TABLES.get(table)
    if schema is None or TABLE_ADDED_IN.get(table, 1) > version:
        return None
    if version >= BUNDLE_SCHEMA_VERSION:
        return schema
    keep = [f for f in schema if ADDED_IN.get((table, f.name), 1) <= version]
    return pa.schema(keep, metadata=schema.metadata)


def unit(schema: pa.Schema, column: str) -> str:
    return (schema.field(column).metadata or {}).get(b"unit", b"").decode()


def table_from_rows(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) -> a table of the declared schema; missing keys are null, unknown keys refused."""
    schema = TABLES[name]
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise ValueError(f"table {name}: unknown columns {sorted(extra)}")
    columns = {n: [row.get(n) for row in rows] for n in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)
