"""CPU time by process group, from /proc: what each request costs, whoever else is running.

Throughput on a shared 2-core machine moves with whatever else runs on it; the CPU seconds
the web processes (and PostgreSQL's backends, and Redis) spend per request hardly do. The
benchmarks report both, and how busy the machine was with other work during the run.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """Sum each group's CPU seconds between start() and stop(); groups name their pids."""

    groups: dict[str, Callable[[], list[int]]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _children: float = 0.0

    def start(self) -> None:
        self._before = {
            name: {pid: process_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }
        self._machine = machine_seconds()
        self._children = children_seconds()

    def stop(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for name, pids in self.groups.items():
            before = self._before.get(name, {})
            now = {pid: process_seconds(pid) for pid in set(pids()) | set(before)}
            spent[name] = sum(max(0.0, now[pid] - before.get(pid, 0.0)) for pid in now)
        busy, total = machine_seconds()
        spent["load_generator"] = children_seconds() - self._children
        spent["machine_busy"] = busy - self._machine[0]
        spent["machine_total"] = total - self._machine[1]
        measured = sum(v for k, v in spent.items() if k not in ("machine_busy", "machine_total"))
        spent["others"] = max(0.0, spent["machine_busy"] - measured)
        return spent
