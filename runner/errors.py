"""One error hierarchy for the whole tool.

Every error the user can cause or fix carries enough context to print ONE line naming the
file, the field and the fix. The CLI maps these to exit codes in a single place
(`runner.cli.main`); nothing else prints tracebacks or calls `sys.exit`.

Exit codes:
    1  the thing checked is bad (a bundle that fails verification, a run that did not reproduce)
    2  bad input: spec, dataset, bundle, flags, catalog, lockfile; or the environment is missing
       something the command needs (no engine, no disk)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunnerError(Exception):
    """Base class: a problem the user can act on."""

    message: str
    file: str | Path | None = None
    field: str | None = None
    line: int | None = None
    fix: str | None = None

    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def describe(self) -> str:
        """The one line shown to the user: where, what, and how to fix it."""
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split())  # one line, whatever the parts contained

    def __str__(self) -> str:
        return self.describe()


class SpecError(RunnerError):
    """An experiment spec that cannot be loaded or validated."""


class DatasetError(RunnerError):
    """A dataset that is missing, truncated, unsafe or does not match its checksum."""


class DatasetRefused(DatasetError):
    """Dataset input refused before use: a FIFO, device or link, a file or archive past its size
    cap (a gzip bomb), a name or value no dataset has. Bad input (exit 2), also for `data verify`,
    whose exit 1 means "a dataset that does not match its checksums"."""


class ModelError(RunnerError):
    """An unknown model or a model configuration that cannot be built."""


class ImageError(RunnerError):
    """A catalog entry, lockfile or image that is missing or inconsistent."""


class EngineError(RunnerError):
    """No container engine reachable, or the engine refused an operation."""


class ExecutorError(RunnerError):
    """An executor (inline, Slurm) that cannot place runs: unreachable, unknown partition or GRES."""


class BundleError(RunnerError):
    """A result bundle that cannot be read (unknown schema, truncated table, unsafe path)."""


class UsageError(RunnerError):
    """Flags or arguments that do not fit together."""


class CheckFailed(RunnerError):
    """A check ran and the thing checked failed (verification, reproduction)."""

    exit_code = 1
