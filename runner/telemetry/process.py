"""The local engine's process tree through psutil: CPU % and resident memory, children included."""

from __future__ import annotations

from typing import Any

import psutil

from runner.telemetry.schema import empty_sample


class ProcessTreeProbe:
    source = "process"

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        # psutil's cpu_percent compares with the previous call on the SAME object: keep them.
        self._procs: dict[int, psutil.Process] = {}
        self._first = True

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]:
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []  # the run has ended; nothing to read, and not an error
        cpu, rss, alive = 0.0, 0, {}
        for proc in tree:
            known = self._procs.get(proc.pid)
            if known is not None and known.is_running():
                proc = known
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            alive[proc.pid] = proc
        self._procs = alive
        row = empty_sample(t, elapsed_s, self.source)
        row.update(cpu_pct=None if self._first else cpu, mem_bytes=rss, processes=len(alive))
        self._first = False
        return [row]

    def close(self) -> None:
        pass
