"""The browser's processes as Linux shows them: its root process by a marker switch, its process tree, its memory."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def marker_switch(marker: str) -> str:
    """A switch Chromium ignores, put on its command line so its root process can be found among many browsers."""
    return f"--bridge-joiner={marker}"


def find_root(marker: str) -> int | None:
    """The pid of the Chromium process started with this marker, if it is running."""
    wanted = marker_switch(marker).encode()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if wanted in args:
            return int(entry.name)
    return None


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after its last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int) -> list[int]:
    """The root and every process descended from it (renderers, GPU and utility processes, zygotes)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of these processes together: shared pages counted once across them, not per process."""
    total = 0
    for pid in pids:
        try:
            text = (PROC / str(pid) / "smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time these processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def kill(pid: int) -> None:
    """SIGKILL, for a browser that no longer answers; a process already gone is no error."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
