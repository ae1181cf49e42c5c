"""CPU time and resident memory of running processes, read from /proc.

Shared by the benchmarks (scripts/bench/) and the fleet load (scripts/load/fleet.py): a
server's cost is its whole process tree or group (gunicorn's master and workers), and on
PostgreSQL the database's too (the postmaster and its backends). Linux only.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its closing one.
    return stat[stat.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """Return `root` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_usage(root: int) -> tuple[float, int]:
    """Return the CPU seconds used so far and the resident bytes of `root`'s process tree."""
    cpu, rss = 0.0, 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue  # it exited between the listing and the read
        cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        rss += int(fields[21]) * PAGE
    return cpu, rss


def group_cpu_seconds(leader: int) -> float:
    """Return the CPU time (user + system) used so far by the live processes of a group.

    Requests per CPU-second hold steady when other jobs share the machine; requests per second
    of wall time do not.
    """
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is not None and int(fields[2]) == leader:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK
