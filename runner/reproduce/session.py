"""One reproduction session: validate, plan, prepare data, pick images, fingerprint, run, bundle.

Failed runs are rows with a reason and the sweep goes on. Ctrl-C stops the current run (its
container is removed), leaves the partial bundle in place, and says how to `--resume` it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from runner.engine.base import Engine, RunOutcome, RunRequest
from runner.errors import RunnerError
from runner.spec.plan import Plan, Run
from runner.spec.workload_config import workload_config

POLL_S = 0.5


@dataclass
class SessionOptions:
    data_root: Path
    results_root: Path
    cache: Path
    engine: str = "auto"  # auto | docker | local
    build: str = "missing"  # missing | always | never
    resume: Path | None = None
    redact: bool = True
    telemetry_hz: float = 1.0
    base: str | None = None  # build base instead of the catalog's digest (no registry here)


@dataclass(frozen=True)
class Rerun:
    """What a bundle being reproduced dictates: its workload code and its images (framework -> id)."""

    bundle: Path
    code: Path
    images: dict[str, str]
    engine: str


@dataclass
class RunRecord:
    run: Run
    status: str
    reason: str | None
    wall_s: float
    image_id: str | None
    summary: dict = field(default_factory=dict)


def _time_limit(run: Run) -> int | None:
    return run.resolved["resources"]["time_limit_s"]


def execute_run(engine: Engine, request: RunRequest, on_event,
                sampler_factory=None) -> tuple[RunOutcome, list, dict | None]:
    """Start one run, follow its events, enforce its time limit, always finish it.

    A run that fails on the host side (the engine refuses to start it, loses it, or the host
    errs while following it) comes back as a failed outcome with the reason: the sweep goes on.
    Only Ctrl-C (or another BaseException) propagates, after the run is stopped and finished.
    """
    from runner.reproduce.tail import EventTail

    tail = EventTail(request.out_dir / "events.jsonl")
    started = time.monotonic()
    try:
        handle = engine.start(request)
    except Exception as e:  # noqa: BLE001 - EngineError, the SDK's errors, OSError: a failed row
        return _host_failure("the engine could not start the run", e, started), [], None
    sampler = None
    problems: list[str] = []
    stop: BaseException | None = None
    stopped_for: str | None = None
    try:
        sampler = sampler_factory(handle.sample_target) if sampler_factory else None
        if sampler:
            sampler.start()
        while handle.poll() is None:
            for event in tail.poll():
                on_event(event)
            if request.time_limit_s and time.monotonic() - started > request.time_limit_s:
                stopped_for = f"time limit ({request.time_limit_s} s)"
                _stop(handle, stopped_for, problems)
                break
            time.sleep(POLL_S)
    except BaseException as e:  # Ctrl-C, or a host-side error: never leave the run (a container) behind
        stop = e
        stopped_for = f"runner error: {_one_line(e)}" if isinstance(e, Exception) else "interrupted"
        _stop(handle, stopped_for, problems)
    try:
        outcome = handle.finish()
    except Exception as e:  # noqa: BLE001 - the engine lost the run: a failed row, the sweep goes on
        outcome = _host_failure("the engine could not finish the run", e, started, stopped_for)
    finally:
        samples = _stop_sampler(sampler, problems)
    if stop is not None and not isinstance(stop, Exception):
        raise stop
    try:
        for event in tail.poll():
            on_event(event)
    except Exception as e:  # noqa: BLE001
        problems.append(f"runner error: {_one_line(e)}")
    if problems:
        outcome.reason = "; ".join([outcome.reason or "failed on the host side", *problems])
    return outcome, samples, sampler.status() if sampler else None


def _one_line(e: BaseException) -> str:
    text = e.describe() if isinstance(e, RunnerError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:500]


def _host_failure(what: str, e: Exception, started: float, stopped_for: str | None = None) -> RunOutcome:
    reason = f"{stopped_for + '; ' if stopped_for else ''}{what}: {_one_line(e)}"
    return RunOutcome(exit_code=None, reason=reason, log=reason + "\n", wall_s=time.monotonic() - started)


def _stop(handle, reason: str, problems: list[str]) -> None:
    """Stop a run; an engine that fails to is noted in the run's reason (finish() still bounds the wait)."""
    try:
        handle.kill(reason)
    except Exception as e:  # noqa: BLE001 - EngineError and the SDK's errors: noted, finish() goes on
        problems.append(f"stopping it failed: {_one_line(e)}")


def _stop_sampler(sampler, problems: list[str]) -> list:
    if sampler is None:
        return []
    try:
        return sampler.stop()
    except Exception as e:  # noqa: BLE001 - telemetry is lost, the run's result is not
        problems.append(f"telemetry sampler: {_one_line(e)}")
        return []


def write_run_config(run: Run, run_dir: Path) -> Path:
    """The run's run.json, beside its output; readable by the container's unprivileged user."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(workload_config(run), indent=2, sort_keys=True))
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    return path


def describe_plan(plan: Plan, console: Console) -> None:
    exp = plan.experiment
    frameworks = ", ".join(f.value for f in exp.frameworks)
    console.print(f"[bold]{exp.name}[/]: {len(plan.runs)} runs ({frameworks}; {exp.model.name.value} on "
                  f"{exp.dataset.name.value}, {exp.variant.value})")


def reason_line(exc: RunnerError) -> str:
    return exc.describe()


def _select_engine(choice: str, console: Console):
    """`auto`: docker when an engine answers, else local (said plainly)."""
    from runner.engine.local_engine import LocalEngine
    from runner.errors import EngineError

    if choice == "local":
        return LocalEngine(), None
    from runner.engine.docker_client import connect

    try:
        client = connect(timeout=10)
    except EngineError:
        if choice == "docker":
            raise
        console.print("[yellow]no container engine answers: runs execute in the local Python, NOT isolated "
                      "(no image digest); the bundle records this[/]")
        return LocalEngine(), None
    from runner.engine.docker_engine import DockerEngine

    return DockerEngine(client), client


def reproduce_spec(spec_path: Path, opts: SessionOptions, max_runs: int | None = None,
                   console: Console | None = None, rerun: Rerun | None = None) -> Path:
    """The whole main job. Returns the finalized bundle's path.

    rerun: when reproducing a bundle, its code and recorded images are used instead of ours.
    """
    from runner.spec.plan import MAX_RUNS, plan_file

    console = console or Console()
    plan = plan_file(spec_path, max_runs=max_runs or MAX_RUNS)  # bad spec: one line, nothing written
    spec_text = Path(spec_path).read_text(encoding="utf-8")
    exp = plan.experiment
    engine_choice = exp.execution.engine if opts.engine == "spec" else opts.engine
    engine, client = _select_engine(engine_choice, console)
    describe_plan(plan, console)
    from runner.weights.check import plan_weights

    weights = plan_weights(plan, opts.data_root)  # pinned weights: found, hashed, fit every model, or exit 2

    from runner.reproduce.dataset import resolve_dataset

    dataset = resolve_dataset(exp.dataset, opts.data_root, opts.cache, Path(spec_path))
    console.print(f"dataset {dataset.name}: verified, root sha256 {dataset.source_root_hash[:16]}"
                  f"{' (synthetic)' if dataset.synthetic else ''}")

    from runner.reproduce.images import resolve_images

    images = resolve_images(client, plan, opts.build, opts.base, console,
                            pinned=rerun.images if rerun else None)

    from runner.bundle.writer import BundleWriter
    from runner.fingerprint.redact import Redaction

    redaction = Redaction.for_this_machine(enabled=opts.redact)
    if opts.resume is not None:
        writer = BundleWriter.resume(opts.resume, redaction, plan)
    else:
        writer = BundleWriter.create(opts.results_root, plan, spec_text, redaction,
                                     code_root=rerun.code if rerun else None)
    try:
        _fingerprint(writer, engine, client, images, dataset)
        if weights is not None:
            writer.add_environment("weights", weights.fingerprint())
        records = _run_all(plan, writer, engine, images, dataset, opts, console, weights)
    except KeyboardInterrupt:
        writer.close()
        if client is not None:
            from runner.engine.docker_engine import remove_containers

            try:
                remove_containers(client, writer.partial.name)
            except RunnerError as e:  # said, and the interruption still ends the command
                console.print(f"[yellow]{e.describe()}[/]")
        console.print(f"[yellow]interrupted[/]: partial bundle kept at {writer.partial}; "
                      f"finish it with `runner reproduce {spec_path} --resume {writer.partial}`")
        raise
    path = writer.finalize()
    from runner.reproduce.summary import print_summary

    print_summary(console, records, path)
    return path


def _readable_tree(path: Path) -> None:
    """The bundle's code/ is mounted for the container's unprivileged user: world-readable."""
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def framework_info(engine, client, image_id: str | None, framework: str, code_dir: Path) -> dict:
    """`python -m runner.workload info` where the runs will run: in the image, or the local Python."""
    argv = ["-m", "runner.workload", "info", "--framework", framework]
    if client is None:
        from runner.engine.local_engine import run_workload_tool as run_local

        try:
            proc = run_local(argv, code_dir, timeout=300)
            out, ok, err = proc.stdout, proc.returncode == 0, proc.stderr
        except (OSError, subprocess.TimeoutExpired) as e:  # recorded; the runs themselves will show it
            out, ok, err = "", False, f"{type(e).__name__}: {e}"
    else:
        from runner.engine.docker_engine import run_workload_tool

        try:
            out, ok, err = run_workload_tool(client, image_id, argv, code_dir, timeout=300), True, ""
        except Exception as e:  # noqa: BLE001 - recorded, the runs themselves will show the failure
            out, ok, err = "", False, str(e)
    if ok:
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            err = f"not JSON: {out[:200]}"
    return {"framework": framework, "error": " ".join(err.split())[-500:]}


def _fingerprint(writer, engine, client, images, dataset) -> None:
    from runner.fingerprint.gpu import gpu_fingerprint
    from runner.fingerprint.host import host_fingerprint

    writer.add_environment("host", host_fingerprint(client))
    writer.add_environment("gpu", gpu_fingerprint())
    writer.add_environment("engine", engine.describe())
    writer.add_environment("dataset", dataset.fingerprint())
    code_dir = writer.partial / "code"
    _readable_tree(code_dir)
    for fw, choice in images.items():
        if choice.error:
            continue
        info = framework_info(engine, client, choice.image_id, fw, code_dir)
        info["image"] = {"name": choice.name, "id": choice.image_id}
        if client is not None:
            from runner.images.inspect import image_fingerprint

            info["image"] |= image_fingerprint(client, choice.image_id)
        writer.add_environment(f"images/{choice.name or 'local-' + fw}", info)


@contextmanager
def removed_after(folder: Path) -> Iterator[Path]:
    """The runs' scratch folder: removed when the block ends, however it ends."""
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_all(plan: Plan, writer, engine, images, dataset, opts: SessionOptions, console: Console,
             weights=None) -> list[RunRecord]:
    from runner.reproduce.live import LiveView
    from runner.telemetry.sampler import TelemetrySampler

    done = writer.completed
    todo = [r for r in plan.runs if r.id not in done]
    if done:
        console.print(f"resuming: {len(done)} runs already recorded, {len(todo)} to go")
    scratch = (opts.cache / "scratch" / writer.partial.name).resolve()
    code_dir = (writer.partial / "code").resolve()
    records: list[RunRecord] = []
    for run in plan.runs:
        if run.id in done:
            rec = writer.state["runs"][run.id]
            records.append(RunRecord(run, rec["status"], rec.get("reason"), 0.0, rec.get("image_id"),
                                     rec.get("summary", {})))
    with removed_after(scratch), LiveView(console, len(todo)) as live:  # on every exit path, Ctrl-C too
        for run in todo:
            choice = images[run.framework]
            live.start_run(f"{run.id} {run.framework}", run.recipe["epochs"])
            env = {"engine": engine.name, "isolated": engine.isolated, "dataset_sha256": dataset.source_root_hash}
            if weights is not None:
                env["weights_sha256"] = weights.sha256
            if choice.error:
                summary = writer.add_run(run, status="failed", reason=choice.error, image_id=None,
                                         log_text=choice.error, environment=env)
                records.append(RunRecord(run, "failed", choice.error, 0.0, None, summary))
                live.end_run("failed")
                continue
            run_dir = scratch / run.id
            if run_dir.exists():
                shutil.rmtree(run_dir)
            out_dir = run_dir / "out"
            out_dir.mkdir(parents=True)
            config = write_run_config(run, run_dir)
            res = run.resolved["resources"]
            request = RunRequest(
                run_id=run.id, bundle_id=writer.partial.name, framework=run.framework, variant=run.resolved["variant"],
                config_path=config, data_dir=dataset.prepared.resolve(), out_dir=out_dir, code_dir=code_dir,
                image_id=choice.image_id, threads=res["threads"], cpus=res["cpus"], memory=res["memory"],
                shm=res["shm"], gpus=res["gpus"], time_limit_s=res["time_limit_s"],
                weights_path=weights.path.resolve() if weights is not None else None)

            def sampler_factory(target, _docker=choice.image_id is not None, _gpus=tuple(range(res["gpus"]))):
                # the run's GPUs: NVML indices 0..N-1, as docker's device request (count=N) assigns them;
                # the host's CPU load is sampled too, so a busy machine shows in the bundle
                return TelemetrySampler(1.0 / opts.telemetry_hz, gpus=_gpus, container=target if _docker else None,
                                        pid=None if _docker else target, host=True)

            outcome, samples, telemetry_status = execute_run(engine, request, live.on_event, sampler_factory)
            shutil.copyfile(config, out_dir / "run.json")  # the bundle keeps the config the host wrote
            status = "ok" if outcome.ok else "failed"
            summary = writer.add_run(run, status=status, reason=outcome.reason, out_dir=out_dir,
                                     log_text=outcome.log, image_id=choice.image_id, telemetry=samples,
                                     telemetry_status=telemetry_status,
                                     environment=env | {"wall_s": round(outcome.wall_s, 3)} | outcome.extra)
            final = summary.get("status", status)
            records.append(RunRecord(run, final, summary.get("failure_reason", outcome.reason), outcome.wall_s,
                                     choice.image_id, summary))
            live.end_run(final)
            shutil.rmtree(run_dir, ignore_errors=True)
    return records
