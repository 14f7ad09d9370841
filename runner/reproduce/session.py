"""One reproduction session: validate, plan, prepare data, pick images, fingerprint, run, bundle.

The engine describes each run (`Engine.launch`), the executor places it (`runner/executor`:
inline on this machine, one after another; Slurm on a cluster). The session submits every run,
then follows the jobs: live progress from each run's events.jsonl, one row per run as it ends.
Failed runs are rows with a reason and the sweep goes on. Ctrl-C cancels every job (a running
container is stopped and removed), leaves the partial bundle in place, and says how to `--resume` it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.engine.base import Engine, Launch, RunOutcome, RunRequest
from runner.errors import RunnerError
from runner.executor.base import Executor, Job, JobState
from runner.executor.choose import ExecutionFlags
from runner.executor.inline import host_failure, one_line
from runner.spec.plan import Plan, Run
from runner.spec.workload_config import parallel_section, workload_config

POLL_S = 0.5


@dataclass
class SessionOptions:
    data_root: Path
    results_root: Path
    cache: Path
    engine: str = "auto"  # auto | docker | podman | local | spec
    build: str = "missing"  # missing | always | never
    resume: Path | None = None
    redact: bool = True
    telemetry_hz: float = 1.0
    base: str | None = None  # build base instead of the catalog's digest (no registry here)
    execution: ExecutionFlags = field(default_factory=ExecutionFlags)  # --executor, --partition, ... over the spec


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


@dataclass(frozen=True)
class RunEnvironment:
    """What a run's `runs/<id>/environment.json` records beside its telemetry status: where it
    ran (engine, executor, and once it ended, its node) and what it ran on (dataset, weights)."""

    engine: str
    isolated: bool
    executor: str
    dataset_sha256: str
    weights_sha256: str | None = None

    def as_dict(self, outcome: RunOutcome | None = None) -> dict[str, Any]:
        """The document; with the outcome: its wall time, node and the engine's extras (oom, container)."""
        doc: dict[str, Any] = {"engine": self.engine, "isolated": self.isolated, "executor": self.executor,
                               "dataset_sha256": self.dataset_sha256}
        if self.weights_sha256 is not None:
            doc["weights_sha256"] = self.weights_sha256
        if outcome is not None:
            doc |= {"wall_s": round(outcome.wall_s, 3), "node": outcome.node} | outcome.extra
        return doc


@dataclass
class Followed:
    """A submitted job as the session follows it: its events, and what to call as it goes."""

    job: Job
    out_dir: Path
    on_event: Callable[[dict], None]
    started: bool = False
    problems: list[str] = field(default_factory=list)
    _tail: object = None

    def tail(self, final: bool = False) -> None:
        """New events to on_event. A host-side error while following stops the run (the stop's reason
        says why); after the run's end (`final`) it is added to the run's reason. The sweep goes on."""
        from runner.reproduce.tail import EventTail

        if self._tail is None:
            self._tail = EventTail(self.out_dir / "events.jsonl")
        try:
            for event in self._tail.poll():
                self.on_event(event)
        except Exception as e:  # noqa: BLE001
            if final:
                self.problems.append(f"runner error: {one_line(e)}")
            else:
                self.job.cancel(f"runner error: {one_line(e)}")


def follow(followed: list[Followed], on_start: Callable[[Followed], None],
           on_end: Callable[[Followed, RunOutcome], None], poll_s: float = POLL_S) -> None:
    """Poll every job until each has ended and been finished; on_start when a job leaves the queue,
    on_end with its outcome. Ctrl-C (any BaseException): every job is cancelled, the started ones
    finished (bounded: the engines' grace periods), then it propagates."""
    active = list(followed)
    try:
        while active:
            ended_any = False
            for f in list(active):
                try:
                    state = f.job.poll()
                except Exception as e:  # noqa: BLE001 - an executor that lost track: stop it, finish() says
                    f.problems.append(f"runner error: {one_line(e)}")
                    f.job.cancel(f"runner error: {one_line(e)}")
                    state = JobState.ENDED
                if state is JobState.PENDING:
                    continue
                if not f.started:
                    f.started = True
                    on_start(f)
                if state is JobState.RUNNING:
                    f.tail()
                    continue
                outcome = _finish(f)
                active.remove(f)
                ended_any = True
                on_end(f, outcome)
            if active and not ended_any:
                time.sleep(poll_s)
    except BaseException:
        for f in active:
            _quietly(f.job.cancel, "interrupted")
        for f in active:
            if f.started:
                _quietly(f.job.finish)
        raise


def _finish(f: Followed) -> RunOutcome:
    t0 = time.monotonic()
    try:
        outcome = f.job.finish()
    except Exception as e:  # noqa: BLE001 - the executor lost the run: a failed row, the sweep goes on
        outcome = host_failure("the executor could not finish the run", e, t0)
    f.tail(final=True)  # the run's last events
    if f.problems:
        outcome.reason = "; ".join([outcome.reason or "failed on the host side", *f.problems])
    return outcome


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 - cleaning up after Ctrl-C: the interruption is what is reported
        pass


def execute_run(engine: Engine, request: RunRequest, on_event,
                sampler_factory=None) -> tuple[RunOutcome, list, dict | None]:
    """One run through the inline executor: started, followed (events, time limit), always finished.

    sampler_factory(sample_target) -> a sampler, or None. A run that fails on the host side is a
    failed outcome with the reason; only Ctrl-C (or another BaseException) propagates, after the
    run is stopped and finished.
    """
    from runner.executor.inline import InlineExecutor

    factory = (lambda launch, target, eng: sampler_factory(target)) if sampler_factory else None
    executor = InlineExecutor(engine, factory)
    t0 = time.monotonic()
    try:
        launch = engine.launch(request)
    except Exception as e:  # noqa: BLE001 - e.g. no image: a failed outcome, like a refused start
        return host_failure("the engine could not start the run", e, t0), [], None
    outcomes: list[RunOutcome] = []
    follow([Followed(executor.submit(request.run_id, launch, engine.name), request.out_dir, on_event)],
           on_start=lambda f: None, on_end=lambda f, o: outcomes.append(o))
    outcome = outcomes[0]
    return outcome, outcome.telemetry, outcome.telemetry_status


def write_run_config(run: Run, run_dir: Path) -> Path:
    """The run's run.json, beside its output; readable by the container's unprivileged user."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    tmp = path.with_suffix(".json.tmp")
    config = run.recorded_config if run.recorded_config is not None else workload_config(run)
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    return path


def describe_plan(plan: Plan, console: Console) -> None:
    exp = plan.experiment
    frameworks = ", ".join(f.value for f in exp.frameworks)
    console.print(f"[bold]{exp.name}[/]: {len(plan.runs)} runs ({frameworks}; {exp.model.name.value} on "
                  f"{exp.dataset.name.value}, {exp.variant.value})")


def _select_engine(choice: str, console: Console) -> Engine:
    """The engine object for `choice`; `auto`: docker when it answers, else podman when it answers, else
    local (each fallback said plainly).

    Each kind is its own type (DockerEngine, PodmanEngine, LocalEngine): no value stands for "local".
    """
    from runner.engine.local_engine import LocalEngine
    from runner.errors import EngineError

    if choice == "local":
        return LocalEngine()
    from runner.engine.docker_client import connect

    if choice == "podman":
        from runner.engine.podman_engine import PodmanEngine

        engine = PodmanEngine.connect()
        try:
            engine.docker = connect(answer_within=10)  # images are built by Docker and moved into podman
        except EngineError:
            console.print("[yellow]no Docker engine answers: podman builds and keeps the images in its own storage[/]")
        return engine
    try:
        client = connect(answer_within=10)
    except EngineError:
        if choice == "docker":
            raise
        return _auto_without_docker(console)
    from runner.engine.docker_engine import DockerEngine

    return DockerEngine(client)


def _auto_without_docker(console: Console) -> Engine:
    """`auto` where no Docker engine answers: podman when it answers (a cluster's login or compute
    node, where Docker is not allowed: the runs stay isolated), else the local Python."""
    from runner.engine.local_engine import LocalEngine
    from runner.engine.podman_engine import PodmanEngine
    from runner.errors import EngineError

    local = ("runs execute in the local Python, NOT isolated (no image digest); the bundle records this "
             "(`runner doctor` says why)")
    try:
        engine = PodmanEngine.connect()
    except EngineError:
        console.print(f"[yellow]no container engine answers: {local}[/]")
        return LocalEngine()
    if not engine.info():  # answers its version, cannot open its storage (a rootless user without subuids...)
        console.print(f"[yellow]no Docker engine answers and `podman info` fails: {local}[/]")
        return LocalEngine()
    console.print("[yellow]no Docker engine answers: podman runs the images, built and kept in its own "
                  "storage (--engine local for the host's Python)[/]")
    return engine


def _select_executor(plan: Plan, engine: Engine, opts: SessionOptions) -> Executor:
    """The spec's `execution` with the CLI's flags over it (runner/executor/choose.py: inline, slurm).
    Slurm is checked here (reachable, partition, GRES, sbatch --test-only): before anything is written."""
    from runner.executor.choose import make_executor, plan_shapes

    execution = opts.execution.apply(plan.experiment.execution, opts.engine)
    return make_executor(execution, engine, _sampler_factory(opts), lambda: plan_shapes(plan), opts.telemetry_hz)


def _sampler_factory(opts: SessionOptions):
    """A telemetry sampler beside each run: NVML for the run's own GPUs (the Launch's devices),
    the engine's view of the run (Docker stats, or the process tree), and the host's CPU load."""
    from runner.telemetry.sampler import TelemetrySampler

    def factory(launch: Launch, target: object, engine: Engine):
        return TelemetrySampler(1.0 / opts.telemetry_hz, gpus=launch.devices, host=True,
                                **engine.sampler_kwargs(target))

    return factory


def _resolve_images(engine: Engine, plan: Plan, opts: SessionOptions, console: Console,
                    rerun: Rerun | None) -> dict:
    """Each framework's image: built by Docker (runner.images); for podman, moved into its storage."""
    from runner.reproduce.images import ImageChoice, resolve_images

    if not engine.isolated:  # the local engine: the host's own Python runs every framework, no image
        return {f.value: ImageChoice(f.value, None, None) for f in plan.experiment.frameworks}
    if engine.name == "podman" and engine.docker is None:  # podman alone (clusters): built and kept by podman
        from runner.images.podman_store import PodmanStore

        return resolve_images(PodmanStore(engine), plan, opts.build, opts.base, console,
                              pinned=rerun.images if rerun else None)
    images = resolve_images(engine.docker, plan, opts.build, opts.base, console,
                            pinned=rerun.images if rerun else None)
    prepare = getattr(engine, "ensure_image", None)  # podman: images move from Docker
    if prepare is None:
        return images
    import dataclasses

    for fw, choice in list(images.items()):
        if choice.error or choice.image_id is None:
            continue
        try:
            prepare(choice.image_id)
            console.print(f"image {choice.name}: in {engine.name}'s storage")
        except RunnerError as e:
            images[fw] = dataclasses.replace(choice, error=e.describe())
            console.print(f"[yellow]{fw}: {e.describe()}; its runs will be failed rows[/]")
    return images


def _bind_rerun(plan: Plan, rerun: Rerun, console: Console) -> Plan:
    """Each planned run rebound to the bundle's record of it: its id and the run.json it read."""
    from runner.errors import BundleError
    from runner.reproduce.recorded import bind_recorded, recorded_runs

    binding = bind_recorded(plan, recorded_runs(rerun.bundle))
    for note in binding.notes:
        console.print(f"[yellow]{note}[/]", markup=True, highlight=False)
    if not binding.plan.runs:
        raise BundleError("none of its runs can be rerun: today's plan of its spec matches no recorded run",
                          file=rerun.bundle / "tables" / "runs.parquet",
                          fix="rerun its spec.yaml instead (`runner reproduce SPEC`)")
    return binding.plan


def reproduce_spec(spec_path: Path, opts: SessionOptions, max_runs: int | None = None,
                   console: Console | None = None, rerun: Rerun | None = None) -> Path:
    """The whole main job. Returns the finalized bundle's path.

    rerun: when reproducing a bundle, its code and recorded images are used instead of ours.
    """
    from runner.spec.plan import MAX_RUNS, plan_file

    console = console or Console()
    plan = plan_file(spec_path, max_runs=max_runs or MAX_RUNS)  # bad spec: one line, nothing written
    if rerun is not None:
        plan = _bind_rerun(plan, rerun, console)
    spec_text = Path(spec_path).read_text(encoding="utf-8")
    if opts.resume is not None:  # a partial bundle that cannot be resumed: one line before anything is done
        from runner.bundle.writer import BundleWriter
        from runner.fingerprint.redact import Redaction

        BundleWriter.check_resumable(opts.resume, Redaction.for_this_machine(enabled=opts.redact), plan)
    exp = plan.experiment
    engine_choice = exp.execution.engine if opts.engine == "spec" else opts.engine
    engine = _select_engine(engine_choice, console)
    if engine.isolated:
        from runner.engine.sandbox import check_mountable

        check_mountable([opts.data_root, opts.results_root, opts.cache])  # one line, exit 2, nothing written
    executor = _select_executor(plan, engine, opts)
    if executor.name == "inline":  # runs on this machine: variant cuda needs its GPUs here
        from runner.reproduce.gpu_check import check_gpus_here

        check_gpus_here(plan, Path(spec_path))
        from runner.reproduce.cpu_check import check_cpu_here

        check_cpu_here(plan, Path(spec_path))  # MXNet bf16: oneDNN's kernels need AVX-512 on this CPU
        check_limits = getattr(engine, "check_limits", None)  # rootless podman: a limit it would ignore
        if check_limits is not None:
            check_limits(plan)
    describe_plan(plan, console)
    from runner.weights.check import plan_weights

    weights = plan_weights(plan, opts.data_root)  # pinned weights: found, hashed, fit every model, or exit 2

    from runner.reproduce.dataset import resolve_dataset

    dataset = resolve_dataset(exp.dataset, opts.data_root, opts.cache, Path(spec_path))
    if engine.isolated and dataset.images is not None:  # decode: jpeg mounts the JPEG folder itself
        from runner.engine.sandbox import check_mountable

        check_mountable([dataset.images])
    console.print(f"dataset {dataset.name}: verified, root sha256 {dataset.source_root_hash[:16]}"
                  f"{' (synthetic)' if dataset.synthetic else ''}")

    images = _resolve_images(engine, plan, opts, console, rerun)
    if getattr(executor, "ships_images", False):  # execution.ship_images: archives on the shared cache
        from runner.executor.image_ship import ARCHIVE_FOLDER
        from runner.reproduce.images import ship_images

        images = ship_images(engine, images, (opts.cache / ARCHIVE_FOLDER).resolve(), console)

    from runner.bundle.writer import BundleWriter
    from runner.fingerprint.redact import Redaction

    redaction = Redaction.for_this_machine(enabled=opts.redact)
    if opts.resume is not None:
        writer = BundleWriter.resume(opts.resume, redaction, plan)
    else:
        writer = BundleWriter.create(opts.results_root, plan, spec_text, redaction,
                                     code_root=rerun.code if rerun else None)
    try:
        _fingerprint(writer, engine, executor, images, dataset, requested=engine_choice)
        if weights is not None:
            writer.add_environment("weights", weights.fingerprint())
        records = _run_all(plan, writer, engine, executor, images, dataset, opts, console, weights)
    except KeyboardInterrupt:
        writer.close()
        try:
            engine.remove_leftovers(writer.partial.name)
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


def framework_info(engine: Engine, image_id: str | None, framework: str, code_dir: Path) -> dict:
    """`python -m runner.workload info` where the runs will run: in the image, or the local Python."""
    argv = ["-m", "runner.workload", "info", "--framework", framework]
    try:
        out = engine.workload_tool(image_id, argv, code_dir, timeout=300)
    except Exception as e:  # noqa: BLE001 - recorded; the runs themselves will show the failure
        return {"framework": framework, "error": " ".join(one_line(e).split())[-500:]}
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {"framework": framework, "error": f"not JSON: {out[:200]}"}


def _fingerprint(writer, engine: Engine, executor: Executor, images, dataset, requested: str) -> None:
    """The submitting machine's facts (each run adds its own node's: runs/<id>/environment.json).
    engine.json says which engine was asked for (`requested`: auto, docker, ...) beside the one that ran."""
    from runner.fingerprint.gpu import gpu_fingerprint
    from runner.fingerprint.host import host_fingerprint

    docker = getattr(engine, "docker", None)  # the Docker engine's facts, when one builds the images
    writer.add_environment("host", host_fingerprint(docker))
    writer.add_environment("gpu", gpu_fingerprint())
    writer.add_environment("engine", {**engine.describe(), "requested": requested})
    writer.add_environment("executor", executor.describe())
    writer.add_environment("dataset", dataset.fingerprint())
    code_dir = writer.partial / "code"
    _readable_tree(code_dir)
    for fw, choice in images.items():
        if choice.error:
            continue
        info = framework_info(engine, choice.image_id, fw, code_dir)
        info["image"] = {"name": choice.name, "id": choice.image_id}
        if choice.archive is not None:
            info["image"]["shipped_archive"] = choice.archive.facts()
        if docker is not None and choice.image_id is not None:
            from runner.images.inspect import image_fingerprint

            info["image"] |= image_fingerprint(docker, choice.image_id)
        facts = getattr(engine, "image_facts", None)  # podman: its own facts; Docker's win where both say
        if facts is not None and choice.image_id is not None:
            info["image"] = facts(choice.image_id) | info["image"]
        writer.add_environment(f"images/{choice.name or 'local-' + fw}", info)


@contextmanager
def removed_after(folder: Path) -> Iterator[Path]:
    """The runs' scratch folder: removed when the block ends, however it ends."""
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _request(run: Run, writer, dataset, code_dir: Path, image_id: str | None, run_dir: Path,
             weights) -> RunRequest:
    """The run's scratch folder (run.json, out/) and its request."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out_dir = run_dir / "out"
    out_dir.mkdir(parents=True)
    config = write_run_config(run, run_dir)
    res = run.resolved["resources"]
    return RunRequest(
        run_id=run.id, bundle_id=writer.partial.name, framework=run.framework, variant=run.resolved["variant"],
        config_path=config, data_dir=dataset.prepared.resolve(), out_dir=out_dir, code_dir=code_dir,
        image_id=image_id, threads=res["threads"], cpus=res["cpus"], memory=res["memory"],
        shm=res["shm"], gpus=res["gpus"], time_limit_s=res["time_limit_s"],
        weights_path=weights.path.resolve() if weights is not None else None,
        replicas=parallel_section(res, run.recipe)["replicas"],
        images_dir=dataset.images.resolve() if dataset.images is not None else None)


def _run_all(plan: Plan, writer, engine: Engine, executor: Executor, images, dataset, opts: SessionOptions,
             console: Console, weights=None) -> list[RunRecord]:
    """Submit every run that is still to do, then follow them all; a row per run as it ends."""
    from runner.reproduce.live import LiveView

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
    run_env = RunEnvironment(engine.name, engine.isolated, executor.name, dataset.source_root_hash,
                             weights.sha256 if weights is not None else None)
    with removed_after(scratch), LiveView(console, len(todo)) as live:  # on every exit path, Ctrl-C too
        followed: list[Followed] = []
        runs: dict[int, tuple[Run, Path]] = {}
        shown: list[Followed] = []  # the run the live view follows: the last one started

        def shown_only(f: Followed) -> Callable[[dict], None]:
            return lambda event: live.on_event(event) if shown and shown[-1] is f else None

        def record(run: Run, status: str, reason: str | None, **kw) -> None:
            summary = writer.add_run(run, status=status, reason=reason, image_id=images[run.framework].image_id,
                                     **kw)
            final = summary.get("status", status)
            records.append(RunRecord(run, final, summary.get("failure_reason", reason),
                                     kw.get("environment", {}).get("wall_s", 0.0), images[run.framework].image_id,
                                     summary))
            live.end_run(final)

        for run in todo:  # submit every run
            choice = images[run.framework]
            if choice.error:
                live.start_run(f"{run.id} {run.framework}", run.recipe["epochs"])
                record(run, "failed", choice.error, log_text=choice.error, environment=run_env.as_dict())
                continue
            request = _request(run, writer, dataset, code_dir, choice.image_id, scratch / run.id, weights)
            try:
                launch = engine.launch(request)
                if choice.archive is not None:  # a node lacking the image loads it (executor/image_ship.py)
                    launch = replace(launch, image_archive=str(choice.archive.path))
                job = executor.submit(run.id, launch, engine.name)
            except RunnerError as e:
                live.start_run(f"{run.id} {run.framework}", run.recipe["epochs"])
                record(run, "failed", e.describe(), log_text=e.describe() + "\n", environment=run_env.as_dict())
                continue
            f = Followed(job, request.out_dir, live.on_event)
            f.on_event = shown_only(f)
            followed.append(f)
            runs[id(f)] = (run, scratch / run.id)

        def on_start(f: Followed) -> None:
            run, _ = runs[id(f)]
            shown.append(f)
            live.start_run(f"{run.id} {run.framework}", run.recipe["epochs"])

        def on_end(f: Followed, outcome: RunOutcome) -> None:
            run, run_dir = runs[id(f)]
            out_dir = run_dir / "out"
            shutil.copyfile(run_dir / "run.json", out_dir / "run.json")  # the bundle keeps the config the host wrote
            env = run_env.as_dict(outcome)
            record(run, "ok" if outcome.ok else "failed", outcome.reason, out_dir=out_dir, log_text=outcome.log,
                   telemetry=outcome.telemetry, telemetry_status=outcome.telemetry_status, environment=env)
            shutil.rmtree(run_dir, ignore_errors=True)

        follow(followed, on_start, on_end)
    return records
