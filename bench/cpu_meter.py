"""CPU seconds spent by process trees, so a benchmark can say which side used which core.

Wall-clock ratios alone cannot tell "the code is slow" from "the machine has no core left":
on a small machine the client, the proxy and the server share the same cores. Each benchmark
that compares against a baseline also prints the CPU seconds both sides used, and from them
the best wall time any client doing the same work could reach on this machine's cores.

Linux only (``/proc``); elsewhere every reading is 0.0 and the benchmarks say so.
"""

from __future__ import annotations

import os
import resource

__all__ = ["tree_cpu", "self_cpu", "cores"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _own_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime of the process's threads


def tree_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    if pid is None:
        return 0.0
    kids = _children()
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _own_cpu(p)
        todo.extend(kids.get(p, ()))
    return total


def self_cpu(children: bool = False) -> float:
    """CPU seconds of this process (all threads), or of its reaped children with ``children``."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
