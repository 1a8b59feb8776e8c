"""Who owns a claim: ``host:pid:start-time`` tokens of processes, and whether they still run.

A runner's claims in the store carry its token; the start time (from ``/proc``) keeps a
reused pid from being mistaken for the original process.

Example:
    >>> owner_alive(owner_token())
    True
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), or ``None`` if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of proc(5): starttime; fields[0] is field 3


def _process_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def owner_token(pid: int | None = None) -> str:
    """``host:pid:start-time`` of a process (this one by default): a claim's owner."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or '?'}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process behind an owner token runs; ``None`` if it ran on another host."""
    host, pid_text, start = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _process_state(pid) in ("Z", "X"):  # a zombie is a dead process not yet reaped
        return False
    current = _process_start(pid)
    return start == "?" or current is None or current == start
