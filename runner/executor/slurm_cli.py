"""The Slurm command line, as runner uses it: sinfo, sbatch, squeue, sacct, scancel.

Every call is an argv list with a timeout (never a shell string); every output is read with
`--parsable`/`-o` formats and parsed by the small pure functions below, which the tests feed
real Slurm output. The CLI was chosen over submitit (PyPI): submitit pickles a Python callable
per job and unpickles it on the node, one `sbatch` per job unless batched in its own executor,
and hides the batch script; runner ships a plain JSON launch file to the node, wants one
`sbatch --array` per sweep, one `squeue` per poll for all jobs, and a batch script a person can
read. pyslurm binds libslurm of one exact Slurm version (and is not in Debian), which a cluster
user cannot choose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runner.errors import ExecutorError

CALL_TIMEOUT_S = 30.0  # a controller that takes longer than this to answer is "not reachable"

# squeue/sacct states that mean the job is over (Slurm's JOB_STATE_BASE names, long form).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})
PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})

QUEUE_FORMAT = "%i|%T|%r|%N"  # task id (123_4 for array tasks), state, reason, node


@dataclass(frozen=True)
class QueueRow:
    """One job (or array task) as squeue or sacct reports it."""

    task_id: str  # "123" or "123_4"
    state: str  # long form: PENDING, RUNNING, COMPLETED, TIMEOUT, ...
    reason: str  # squeue's reason (None when there is none), or sacct's exit code
    node: str

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES


@dataclass(frozen=True)
class Partition:
    name: str
    available: str  # up | down | drain | inact
    default: bool
    gres: frozenset[str]  # GRES names the partition's nodes declare ("gpu"), empty when none
    max_time: str


def parse_queue(text: str) -> dict[str, QueueRow]:
    """`squeue -h -r -o '%i|%T|%r|%N'` -> task id -> row (array tasks one per line with -r)."""
    rows = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        state = parts[1].split()[0].rstrip("+") if parts[1] else ""
        rows[parts[0]] = QueueRow(parts[0], state, parts[2], parts[3])
    return rows


def parse_sacct(text: str) -> dict[str, QueueRow]:
    """`sacct -n -P -X -o JobID,State,ExitCode,NodeList` -> task id -> row.

    Real sacct 22.05 output: "CANCELLED by 0" for a cancelled job (the state is its first word);
    array tasks that never started share one record, `356_[0-2]` (or `356_[0-9%2]` throttled),
    which is every task's row here; a job that never ran has the node "None assigned".
    """
    rows = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        state = parts[1].split()[0].rstrip("+") if parts[1] else ""
        node = "" if parts[3] == "None assigned" else parts[3]
        for task_id in expand_task_ids(parts[0]):
            rows[task_id] = QueueRow(task_id, state, f"exit code {parts[2]}", node)
    return rows


MAX_ARRAY_TASKS = 4_000_001  # Slurm's largest MaxArraySize


def expand_task_ids(job_id: str) -> list[str]:
    """sacct's JobID -> the task ids it stands for: `356_[0-2,5%2]` -> 356_0, 356_1, 356_2, 356_5.

    Anything else ("123", "123_4") is one id, as given.
    """
    array, sep, spec = job_id.partition("_[")
    if not sep or not spec.endswith("]"):
        return [job_id]
    ids = []
    for part in spec[:-1].split("%")[0].split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or not (last or first).isdigit():
            return [job_id]  # a form this parser does not know: kept whole, never guessed
        lo, hi = int(first), int(last or first)
        if hi - lo + len(ids) >= MAX_ARRAY_TASKS:
            return [job_id]  # beyond any Slurm array (MaxArraySize <= 4,000,001): kept whole, memory bounded
        ids.extend(f"{array}_{i}" for i in range(lo, hi + 1))
    return ids


def parse_partitions(text: str) -> dict[str, Partition]:
    """`sinfo -h -o '%P|%a|%G|%l'` -> name -> Partition (one line per node set; GRES merged).

    The default partition carries a `*` after its name; a GRES entry reads `gpu:a100:2(S:0-1)`
    or `(null)` when a node declares none.
    """
    merged: dict[str, Partition] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        name, default = parts[0].rstrip("*"), parts[0].endswith("*")
        gres = {g.split(":")[0] for g in parts[2].split(",") if g and g != "(null)"}
        old = merged.get(name)
        if old is not None:
            gres |= old.gres
        merged[name] = Partition(name, parts[1], default or (old.default if old else False), frozenset(gres),
                                 parts[3])
    return merged


def array_job_ids(task_ids: Iterable[str]) -> list[str]:
    """The distinct array job ids of task ids ("123_4" -> "123"), in first-seen order."""
    return list(dict.fromkeys(t.split("_")[0] for t in task_ids))


class SlurmCli:
    """The Slurm commands on this machine's PATH (or in `bin_dir`)."""

    def __init__(self, bin_dir: str | None = None, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.bin_dir, self.timeout_s = bin_dir, timeout_s
        self.calls = 0  # commands run (the follow-cost benchmark reads it)
        self.cpu_s = 0.0  # CPU seconds those commands took (user + system, from os.times)

    def path(self, command: str) -> str | None:
        if self.bin_dir is not None:
            candidate = os.path.join(self.bin_dir, command)
            return candidate if os.access(candidate, os.X_OK) else None
        return shutil.which(command)

    def run(self, command: str, args: Sequence[str], *, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run one Slurm command. Missing command, timeout, or (check=True) a non-zero exit: ExecutorError."""
        exe = self.path(command)
        if exe is None:
            raise ExecutorError(f"no Slurm here: `{command}` is not on PATH", field="execution.executor",
                                fix="run on a Slurm login node, or use executor: inline")
        before = os.times()
        try:
            proc = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout_s, env=_slurm_env())
        except subprocess.TimeoutExpired:
            raise ExecutorError(f"`{command}` did not answer within {self.timeout_s:g} s (is slurmctld up?)",
                                field="execution.executor", fix="check the cluster: sinfo; scontrol ping") from None
        finally:
            after = os.times()
            self.calls += 1
            self.cpu_s += (after.children_user - before.children_user) + (after.children_system
                                                                           - before.children_system)
        if check and proc.returncode != 0:
            raise ExecutorError(f"`{command}` failed: {first_line(proc.stderr or proc.stdout)}",
                                field="execution.executor", fix="check the cluster: sinfo; scontrol ping")
        return proc

    def partitions(self) -> dict[str, Partition]:
        """The cluster's partitions; raises ExecutorError when the controller does not answer."""
        proc = self.run("sinfo", ["-h", "-o", "%P|%a|%G|%l"], check=False)
        if proc.returncode != 0:
            raise ExecutorError(f"Slurm does not answer: {first_line(proc.stderr or proc.stdout)}",
                                field="execution.executor", fix="start slurmctld, or use executor: inline")
        return parse_partitions(proc.stdout)

    def test_only(self, args: Sequence[str]) -> str | None:
        """`sbatch --test-only ARGS --wrap true`: None if Slurm would accept the job, else its refusal."""
        proc = self.run("sbatch", ["--test-only", *args, "--wrap", "true"], check=False)
        if proc.returncode == 0:
            return None
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
        return first_line("\n".join(errors) or proc.stderr or proc.stdout)

    def submit(self, args: Sequence[str], script: str) -> str:
        """`sbatch --parsable ARGS` with the script on stdin; the job id."""
        out = self.run("sbatch", ["--parsable", *args], stdin=script).stdout.strip()
        job_id = out.split(";")[0]  # "123;cluster" on a federated setup
        if not job_id.isdigit():
            raise ExecutorError(f"sbatch answered {first_line(out)!r}, not a job id", field="execution.executor",
                                fix="check the cluster: sinfo; scontrol ping")
        return job_id

    def queue(self, job_ids: Sequence[str]) -> dict[str, QueueRow]:
        """Every task of `job_ids` the controller still holds (any state), in ONE squeue call."""
        if not job_ids:
            return {}
        proc = self.run("squeue", ["-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", QUEUE_FORMAT],
                        check=False)
        if proc.returncode != 0:
            if "invalid job id" in proc.stderr.lower():
                return {}  # none of them is known any more (all purged after MinJobAge)
            raise ExecutorError(f"squeue failed: {first_line(proc.stderr)}", field="execution.executor",
                                fix="check the cluster: sinfo; scontrol ping")
        return parse_queue(proc.stdout)

    def accounting(self, job_ids: Sequence[str]) -> dict[str, QueueRow] | None:
        """The accounting records of `job_ids` (one sacct call); None when the cluster keeps none.

        Only "accounting storage is disabled" (or no sacct at all) is None, which the executor
        remembers; slurmdbd down or slow is no record this time ({}), asked again next poll.
        """
        if not job_ids:
            return {}
        if self.path("sacct") is None:
            return None
        try:
            proc = self.run("sacct", ["-n", "-P", "-X", "-j", ",".join(job_ids), "-o",
                                      "JobID,State,ExitCode,NodeList"], check=False)
        except ExecutorError:  # sacct did not answer in time
            return {}
        if proc.returncode != 0:
            return None if "accounting storage is disabled" in (proc.stderr + proc.stdout).lower() else {}
        return parse_sacct(proc.stdout)

    def cancel(self, ids: Sequence[str]) -> None:
        """`scancel` the given jobs or array tasks, a few hundred per call; already-ended ones are fine."""
        for start in range(0, len(ids), 500):
            self.run("scancel", list(ids[start:start + 500]), check=False)

    def ping(self) -> float:
        """Seconds one `sinfo` round trip takes (doctor)."""
        t0 = time.monotonic()
        self.partitions()
        return time.monotonic() - t0


def first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return " ".join(line.split())[:300]
    return "(no output)"


def _slurm_env() -> dict[str, str]:
    """The Slurm commands' environment: ours minus SLURM_* job variables (a runner started inside a
    job would otherwise submit into that job's allocation and account)."""
    keep = {"SLURM_CONF"}
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k in keep}
