"""CPU time and RSS of process trees, read straight from ``/proc``.

CPU is ``utime + stime`` of every live process in the tree (threads included, since
``/proc/PID/stat`` sums them); RSS is the sum of ``VmRSS``. Shared pages are counted
once per process, which overstates forked workers a little; good enough to compare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(_children(p))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (dead ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        # The command name may contain spaces: fields start after the last ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total * _TICK_S


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of ``VmRSS`` over ``pids``."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a process group."""

    wall_s: float
    cpu_s: float
    rss: int
    per_pid_cpu_s: dict[int, float]


def sample(pids: Iterable[int], *, follow_tree: bool = True) -> Sample:
    """Read CPU and RSS of ``pids`` (and of their descendants if ``follow_tree``)."""
    roots = list(pids)
    every = [p for r in roots for p in tree(r)] if follow_tree else roots
    per = {r: cpu_seconds(tree(r) if follow_tree else [r]) for r in roots}
    return Sample(time.monotonic(), cpu_seconds(every), rss_bytes(every), per)


def cpu_fraction(a: Sample, b: Sample) -> float:
    """CPU used between two samples, in cores (1.0 = one core busy)."""
    wall = b.wall_s - a.wall_s
    return (b.cpu_s - a.cpu_s) / wall if wall > 0 else 0.0


def max_proc_fraction(a: Sample, b: Sample) -> float:
    """The busiest single root (with its tree) between two samples, in cores."""
    wall = b.wall_s - a.wall_s
    if wall <= 0:
        return 0.0
    return max(((b.per_pid_cpu_s[p] - a.per_pid_cpu_s.get(p, 0.0)) / wall for p in b.per_pid_cpu_s), default=0.0)


def system_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) * _TICK_S
