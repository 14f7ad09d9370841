"""Writing a result bundle: `results/<experiment>/<UTC time>-<spec hash>/`.

Everything is first written into `<bundle>.partial/`, each file atomically (temp file, then
rename), and the folder is renamed to its final name by `finalize()` only; an existing
bundle is never overwritten. Every JSON document, log and text row passes through the
redaction given to `create` before it is written.

While partial, the folder also holds `.state.json` (the runs recorded so far, rewritten
atomically after each run), `.fragments/<table>/<run_id>.parquet` (each run's rows) and a
`.lock` held by the one writer; `finalize()` merges the fragments into `tables/*.parquet`,
writes `manifest.json` and removes the rest. `BundleWriter.resume()` reopens a partial
bundle after an interruption and says which runs it already holds.

Usage:
    writer = BundleWriter.create(results_root, plan, spec_text, redaction)
    writer.add_environment("host", host_fingerprint(client))
    writer.add_environment("gpu", gpu_fingerprint())
    writer.add_environment("images/pytorch-cpu", info_json)
    for run in plan.runs:                       # skip writer.completed_run_ids on --resume
        ...                                     # run it; sample telemetry meanwhile
        writer.add_run(run, status="ok", out_dir=out, log_text=log, image_id=image.id,
                       telemetry=sampler.samples, telemetry_status=sampler.status(),
                       environment={"engine": "docker", "dataset_sha256": root_hash})
    path = writer.finalize()
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

import runner
from runner.bundle.events import EventLog, parse_events, read_events
from runner.bundle.fsutil import PARTIAL_SUFFIX, fsync_dir, json_bytes, sha256_file, write_atomic
from runner.bundle.partial_state import (
    ENV_NAME,
    FIX,
    FRAGMENT_TABLES,
    FRAGMENTS,
    STATE_FILE,
    STATE_SCHEMA,
    read_state,
)
from runner.bundle.reader import FACTS_FILE, read_json_document
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, RUNS, TABLES, table_from_rows
from runner.bundle.summary import FAILED, NOT_RUN, OK, run_rows
from runner.errors import BundleError
from runner.fingerprint.code import CodeFile, code_fingerprint, workload_files
from runner.fingerprint.gpu import gpu_summary
from runner.fingerprint.host import host_summary
from runner.fingerprint.redact import Redaction, recorded_environment
from runner.telemetry.summary import gpu_energy_j, host_load_summary, throttle_flags

if TYPE_CHECKING:  # the writer only reads attributes; pydantic stays unimported for readers
    from runner.spec.plan import Plan, Run

LOCK_FILE = ".lock"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd"}
RUN_FILES = ("result.json", "run.json")


def bundle_name(spec_hash: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{spec_hash[:8]}"


def parquet_bytes(table: pa.Table) -> bytes:
    """zstd; dictionary encoding for text columns only (a million distinct floats gain nothing)."""
    sink = io.BytesIO()
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_list(f.type)]
    pq.write_table(table, sink, use_dictionary=text, **PARQUET_OPTIONS)
    return sink.getvalue()


class BundleWriter:
    """Writes one bundle; see the module docstring for the life cycle."""

    def __init__(self, partial: Path, state: dict[str, Any], redaction: Redaction, fsync: bool = True) -> None:
        self.partial = partial
        self.state = state
        self.redaction = redaction
        self.fsync = fsync
        self._lock_fd: int | None = None

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, plan: Plan, spec_text: str, redaction: Redaction, *,
               now: datetime | None = None, fsync: bool = True, code_root: Path | None = None) -> BundleWriter:
        """Start `<root>/<experiment>/<time>-<hash>.partial/` with the spec, code and host variables.

        code_root: where the workload code comes from (a bundle's `code/` when rerunning it);
        default: this runner installation.
        """
        name = bundle_name(plan.spec_hash, now)
        folder = Path(root) / plan.experiment.name
        final, partial = folder / name, folder / (name + PARTIAL_SUFFIX)
        if final.exists():
            raise BundleError("already exists; bundles are never overwritten", file=final,
                              fix="wait a second and run again, or move the old bundle away")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            partial.mkdir()
        except FileExistsError:
            raise BundleError("already exists (another run is writing it, or it was interrupted)", file=partial,
                              fix="resume it with --resume, or remove it") from None
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        state: dict[str, Any] = {
            "state_schema": STATE_SCHEMA, "bundle_schema_version": BUNDLE_SCHEMA_VERSION,
            "runner_version": runner.__version__, "created": created, "name": name,
            "experiment": plan.experiment.name, "spec_sha256": plan.spec_hash,
            "spec": redaction(plan.experiment.model_dump(mode="json")), "redacted": redaction.enabled,
            "plan": [redaction(_plan_row(run)) for run in plan.runs],
            "runs": {}, "environment": [], "files": {}, "fragments": {}, "code": None,
        }
        writer = cls(partial, state, redaction, fsync)
        writer._lock()
        writer._write("spec.yaml", redaction.text(spec_text).encode())
        writer._copy_code(code_root)
        writer.add_environment("variables", recorded_environment(redaction))
        writer._save_state()
        return writer

    @staticmethod
    def check_resumable(partial: str | Path, redaction: Redaction, plan: Plan | None = None) -> dict[str, Any]:
        """The state of an interrupted bundle that `resume` would reopen, or one BundleError line:
        not a partial folder, a state edited or damaged (partial_state.read_state), another spec,
        another plan of it, or the other redaction setting. Takes no lock and writes nothing."""
        partial = Path(partial)
        state_path = partial / STATE_FILE
        if not partial.name.endswith(PARTIAL_SUFFIX) or not state_path.is_file():
            raise BundleError("is not an interrupted bundle (no .partial folder with its state)", file=partial,
                              fix="give the <bundle>.partial folder that an interrupted run left")
        state = read_state(partial)
        if plan is None:
            return state
        if plan.spec_hash != state["spec_sha256"]:
            raise BundleError("was started from a different spec", file=partial,
                              fix="resume with the same spec file, or start a new bundle")
        if state["redacted"] != redaction.enabled:
            raise BundleError(f"was written with redaction {'on' if state['redacted'] else 'off'}", file=partial,
                              fix="resume it " + ("without" if state["redacted"] else "with") + " --no-redact")
        if state["spec"] != redaction(plan.experiment.model_dump(mode="json")) or \
                state["plan"] != [redaction(_plan_row(run)) for run in plan.runs]:
            raise BundleError("was planned differently from this spec's plan today (another runner version, "
                              "or an edited state)", file=state_path, fix=FIX)
        return state

    @classmethod
    def resume(cls, partial: str | Path, redaction: Redaction, plan: Plan | None = None, *,
               fsync: bool = True) -> BundleWriter:
        """Reopen an interrupted bundle (check_resumable); runs whose files are all present count as complete."""
        partial = Path(partial)
        state_path = partial / STATE_FILE
        state = cls.check_resumable(partial, redaction, plan)
        writer = cls(partial, state, redaction, fsync)
        writer._lock()
        try:  # what finalize will make of the recorded runs, made now: a bad summary fails here, not at the end
            writer._runs_table()
        except (pa.ArrowException, TypeError, ValueError) as e:
            writer._unlock()
            raise BundleError(f"its recorded runs do not make a runs table ({str(e).splitlines()[0][:120]})",
                              file=state_path, fix=FIX) from None
        for run_id in list(state["runs"]):
            if not writer._run_files_present(run_id):
                del state["runs"][run_id]  # half-written: it will run again
        return writer

    @property
    def final_path(self) -> Path:
        return self.partial.with_name(self.state["name"])

    @property
    def completed(self) -> dict[str, str]:
        """run id -> status ("ok" or "failed") of the runs recorded so far."""
        return {rid: rec["status"] for rid, rec in self.state["runs"].items()}

    @property
    def completed_run_ids(self) -> set[str]:
        return set(self.state["runs"])

    # -- adding -----------------------------------------------------------------------------
    def add_environment(self, name: str, data: dict[str, Any]) -> None:
        """`environment/<name>.json` (e.g. "host", "gpu", "images/pytorch-cpu"), redacted.

        A `packages` list in `data` (a pip freeze) is also written as `<name>.pip-freeze.txt`.
        """
        if not ENV_NAME.match(name):
            raise ValueError(f"environment name {name!r}: lowercase words, at most one '/'")
        clean = self.redaction(data)
        self._write(f"environment/{name}.json", json_bytes(clean))
        packages = clean.get("packages") if isinstance(clean, dict) else None
        if isinstance(packages, list) and all(isinstance(p, str) for p in packages):
            self._write(f"environment/{name}.pip-freeze.txt", "".join(p + "\n" for p in packages).encode())
        if name not in self.state["environment"]:
            self.state["environment"].append(name)
        self._save_state()

    def add_run(self, run: Run, *, status: str, reason: str | None = None, out_dir: str | Path | None = None,
                log_text: str = "", image_id: str | None = None,
                telemetry: list[dict[str, Any]] | None = None, telemetry_status: dict[str, Any] | None = None,
                environment: dict[str, Any] | None = None, events: EventLog | None = None) -> dict[str, Any]:
        """Record one finished run (ok or failed) from its out dir; returns its runs-table summary.

        status/reason: what the engine saw ("ok", or "failed" with a reason: timeout, exit code).
        The workload's own events decide too: a run without `run_end` is failed.
        environment: per-run facts (engine, dataset_sha256, container variables, ...).
        events: the run's events already read (`read_events`), else they are read from out_dir.
        """
        if status not in (OK, FAILED):
            raise ValueError(f"status must be {OK!r} or {FAILED!r}, not {status!r}")
        planned = {row["run_id"]: row for row in self.state["plan"]}
        if run.id not in planned:
            raise ValueError(f"run {run.id} is not in this bundle's plan")
        out = Path(out_dir) if out_dir is not None else None
        if events is not None:
            log = events
        else:
            log = read_events(out / "events.jsonl", run.id) if out is not None else parse_events(b"", run.id)
        target = planned[run.id].get("target_accuracy")
        rows = run_rows(log, run.id, status, reason, target)
        env = self.redaction(environment or {})
        samples = [dict(s, run_id=run.id) for s in (telemetry or [])]
        energy, method = gpu_energy_j(samples)
        tstatus = self.redaction(telemetry_status or {})
        summary = dict(rows.summary)
        summary.update(
            image_id=image_id, engine=env.get("engine"), dataset_sha256=env.get("dataset_sha256"),
            gpu_energy_j=energy, gpu_energy_method=method, throttle_flags=throttle_flags(samples),
            telemetry_errors=sum((tstatus.get("errors") or {}).values()) if telemetry_status else None,
            **host_load_summary(samples),
        )
        summary = self.redaction(summary)

        base = f"runs/{run.id}"
        files = [self._write_events(f"{base}/events.jsonl", log)] if out is not None or events else []
        for name in RUN_FILES:
            src = out / name if out is not None else None
            if src is not None and src.is_file():
                files.append(self._write(f"{base}/{name}", json_bytes(self.redaction(_load_json(src)))))
        files.append(self._write(f"{base}/environment.json", json_bytes(
            {"environment": env, "telemetry": tstatus, "events_skipped_lines": log.skipped_lines,
             "image_id": image_id})))
        files.append(self._write(f"logs/{run.id}.log", self.redaction.text(log_text).encode()))
        tables = {"epochs": table_from_rows("epochs", rows.epochs), "steps": log.steps,
                  "latency": table_from_rows("latency", rows.latency),
                  "inference": table_from_rows("inference", rows.inference),
                  "telemetry": table_from_rows("telemetry", samples)}
        for table, data in tables.items():
            rel = f"{FRAGMENTS}/{table}/{run.id}.parquet"
            self._write(rel, parquet_bytes(data), record=False)
            self.state["fragments"].setdefault(table, {})[run.id] = rel
        self.state["runs"][run.id] = {"status": summary["status"], "reason": summary["failure_reason"],
                                      "image_id": image_id, "engine": env.get("engine"), "files": files,
                                      "summary": summary}
        self._save_state()
        return summary

    # -- finishing --------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Merge the tables, write manifest.json, and rename `.partial` to the final name."""
        final = self.final_path
        if final.exists():
            raise BundleError("already exists; bundles are never overwritten", file=final,
                              fix="move the existing bundle away, then finalize again")
        tables = {"runs": self._runs_table()}
        for name in FRAGMENT_TABLES:
            tables[name] = self._merged(name)
        table_info = {}
        for name, table in tables.items():
            rel = f"tables/{name}.parquet"
            if isinstance(table, Path):  # a single fragment: moved into place, not rewritten
                (self.partial / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(table, self.partial / rel)
                self.state["files"][rel] = list(sha256_file(self.partial / rel))
                rows = pq.ParquetFile(self.partial / rel).metadata.num_rows
            else:
                self._write(rel, parquet_bytes(table))
                rows = table.num_rows
            table_info[name] = {"path": rel, "rows": rows}
        shutil.rmtree(self.partial / FRAGMENTS, ignore_errors=True)
        (self.partial / STATE_FILE).unlink(missing_ok=True)
        self._unlock()
        (self.partial / LOCK_FILE).unlink(missing_ok=True)
        self._write("manifest.json", json_bytes(self._manifest(table_info)), record=False)
        if final.exists():
            raise BundleError("already exists; bundles are never overwritten", file=final)
        os.rename(self.partial, final)
        if self.fsync:
            fsync_dir(final.parent)
        return final

    def close(self) -> None:
        """Release the lock without finalizing (the partial bundle stays, resumable)."""
        self._unlock()

    # -- internals --------------------------------------------------------------------------
    def _write(self, rel: str, data: bytes | list[bytes | memoryview], record: bool = True) -> str:
        size, sha = write_atomic(self.partial / rel, data, fsync=self.fsync)
        if record:
            self.state["files"][rel] = [size, sha]
        return rel

    def _write_events(self, rel: str, log: EventLog) -> str:
        """The events file, redacted: each non-step event as a structure, then the whole text.

        Step lines checked to hold only numbers (`EventLog.steps_plain`) are copied as they
        are; otherwise the whole text is scanned too (a quick search for each identity or
        secret, a rewrite only where one occurs). Invalid lines and a torn last line are kept,
        scrubbed, as evidence.
        """
        body, scrub = memoryview(log.body), self.redaction.data
        parts: list[bytes | memoryview] = []
        prev = 0
        for (start, end), event in zip(log.event_spans, log.events, strict=True):
            parts += [body[prev:start], json.dumps(self.redaction(event), separators=(",", ":")).encode()]
            prev = end
        parts.append(body[prev:])
        if not log.steps_plain or log.invalid_spans:
            parts = [scrub(b"".join(parts))]
        # else: events redacted above, step lines hold nothing to redact; written without a copy
        if log.torn is not None:
            parts.append(scrub(log.torn))  # kept, unterminated, as evidence of how the run ended
        return self._write(rel, parts)

    def _copy_code(self, root: Path | None = None) -> None:
        files = workload_files(root) if root is not None else workload_files()
        copied = []
        for f in files:  # hash what is copied, so the copy and the recorded tree hash agree
            data = f.path.read_bytes()
            self._write(f"code/{f.relpath}", data)
            copied.append(CodeFile(f.relpath, f.path, len(data), hashlib.sha256(data).hexdigest()))
        fp = code_fingerprint(files=copied)
        if root is not None:  # rerun of a bundle's code: the checkout's git state says nothing about it
            fp["git"] = None
            fp["source"] = "bundle"
        self.state["code"] = self.redaction(fp)
        self._write("environment/code.json", json_bytes(self.state["code"]))

    def _save_state(self) -> None:
        write_atomic(self.partial / STATE_FILE, json_bytes(self.state), fsync=self.fsync)

    def _lock(self) -> None:
        fd = os.open(self.partial / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BundleError("is being written by another runner process", file=self.partial,
                              fix="wait for it to finish") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _run_files_present(self, run_id: str) -> bool:
        rec = self.state["runs"][run_id]
        rels = list(rec.get("files", []))
        rels += [frags[run_id] for frags in self.state["fragments"].values() if run_id in frags]
        return all((self.partial / rel).is_file() for rel in rels)

    def _environment(self, name: str) -> dict[str, Any]:
        if name not in self.state["environment"]:
            return {}
        # bounded (a resumed folder is input), not shape-checked: the readers of the finished bundle
        # judge its shape; the writer never refuses to finish a bundle over it
        doc = read_json_document(self.partial / f"environment/{name}.json", shaped=False)
        return doc if isinstance(doc, dict) else {}

    def _row_environment(self) -> dict[str, Any]:
        code = self.state["code"] or {}
        dataset = self._environment("dataset")
        return {
            **host_summary(self._environment("host")), **gpu_summary(self._environment("gpu")),
            "runner_version": runner.__version__, "code_tree_sha256": code.get("tree_sha256"),
            "git_commit": (code.get("git") or {}).get("commit"), "spec_sha256": self.state["spec_sha256"],
            "dataset_sha256": dataset.get("root_sha256") or dataset.get("source_root_sha256"),
        }

    def _runs_table(self) -> pa.Table:
        env = self._row_environment()
        rows = []
        for planned in self.state["plan"]:
            row = {k: v for k, v in planned.items() if k in RUNS.names}
            row.update(env)
            rec = self.state["runs"].get(planned["run_id"])
            if rec is None:
                row.update(status=NOT_RUN, failure_reason="not run before the bundle was finalized")
            else:
                row.update({k: v for k, v in rec["summary"].items() if v is not None or k not in env})
            rows.append(row)
        return table_from_rows("runs", rows)

    def _merged(self, name: str) -> pa.Table | Path:
        frags = self.state["fragments"].get(name, {})
        order = [r["run_id"] for r in self.state["plan"] if r["run_id"] in frags and r["run_id"] in self.state["runs"]]
        paths = [self.partial / frags[rid] for rid in order]
        if len(paths) == 1:
            return paths[0]
        if not paths:
            return TABLES[name].empty_table()
        return pa.concat_tables([pq.read_table(p) for p in paths]).cast(TABLES[name])

    def _manifest(self, tables: dict[str, Any]) -> dict[str, Any]:
        for path in sorted(self.partial.rglob("*")):  # anything not written through _write
            rel = path.relative_to(self.partial).as_posix()
            if path.is_file() and rel not in self.state["files"] and rel not in ("manifest.json", FACTS_FILE):
                self.state["files"][rel] = list(sha256_file(path))
        facts = self._facts(tables)  # hashed like any file, so no manifest fact escapes the digest
        self._write(FACTS_FILE, json_bytes(facts))
        files = dict(self.state["files"])
        return {**facts, "files": [{"path": rel, "size": files[rel][0], "sha256": files[rel][1]}
                                   for rel in sorted(files)]}

    def _facts(self, tables: dict[str, Any]) -> dict[str, Any]:
        runs = []
        for planned in self.state["plan"]:
            rec = self.state["runs"].get(planned["run_id"])
            runs.append({
                "id": planned["run_id"], "framework": planned["framework"], "sweep": planned["sweep"],
                "repeat": planned["repeat"], "seed": planned["seed"],
                "status": rec["status"] if rec else NOT_RUN, "reason": rec["reason"] if rec else None,
                "image_id": rec["image_id"] if rec else None, "engine": rec["engine"] if rec else None,
                "files": rec["files"] if rec else [],
            })
        code = self.state["code"] or {}
        return {
            "bundle_schema_version": BUNDLE_SCHEMA_VERSION,
            "runner_version": runner.__version__,
            "created": self.state["created"],
            "finalized": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "experiment": self.state["experiment"],
            "spec_sha256": self.state["spec_sha256"],
            "spec_file": "spec.yaml",
            "spec": self.state["spec"],
            "redacted": self.state["redacted"],
            "runs": runs,
            "tables": tables,
            "fingerprint": {
                "host": host_summary(self._environment("host")),
                "gpu": gpu_summary(self._environment("gpu")),
                "code": {"tree_sha256": code.get("tree_sha256"), "git": code.get("git"),
                         "runner_version": code.get("runner_version")},
                "dataset": self._environment("dataset") or None,
                "environment": sorted(self.state["environment"]),
            },
        }


def _plan_row(run: Run) -> dict[str, Any]:
    row = run.row()
    return {
        "run_id": row["id"], "experiment": run.experiment, "sweep": row["sweep"], "framework": row["framework"],
        "repeat": row["repeat"], "seed": row["seed"], "model": row["model"], "dataset": row["dataset"],
        "variant": row["variant"], "epochs": row["epochs"], "batch_size": row["batch_size"],
        "optimizer": row["optimizer"], "lr": row["lr"], "params_json": json.dumps(row["params"], sort_keys=True),
        "target_accuracy": run.resolved.get("measurement", {}).get("target_accuracy"),
    }


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        # A torn result.json (killed while writing) is kept as text, redacted like a log.
        return {"unreadable": path.read_text(encoding="utf-8", errors="replace")}

