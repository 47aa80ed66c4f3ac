"""Owner tokens: which process made a temporary file or folder.

A token is ``PID@HOST@START`` (``START`` is the process start time in clock ticks since
boot, read from ``/proc``, so a reused pid does not look alive). It is part of the
temporary name itself, written by the same ``mkdir``/``open`` that creates the entry, so
there is no moment at which a temporary entry exists without its owner.

A token names a *dead* owner only when its host is this host and that process (pid and
start time) is gone. Entries of other hosts (a shared file system) are never treated as
abandoned.
"""

from __future__ import annotations

import functools
import os
import re
import socket

_TOKEN = re.compile(r"(\d+)@([A-Za-z0-9_.]+)@(\d+)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "localhost"


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; None when it is not running (no
    such process, or a zombie: it has exited and waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    # fields after the parenthesised command name (which may hold spaces): state, ...;
    # the start time is field 22
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@functools.cache
def _own(pid: int) -> str:
    return f"{pid}@{_host()}@{_start_time(pid) or 0}"


def owner_token() -> str:
    """This process's token (computed per pid, so a forked child gets its own)."""
    return _own(os.getpid())


def find_token(name: str) -> str | None:
    """The owner token inside an entry name, or None."""
    m = _TOKEN.search(name)
    return m.group(0) if m else None


def owner_dead(token: str) -> bool:
    """True only when ``token`` names a process of this host that no longer runs."""
    m = _TOKEN.fullmatch(token)
    if not m:
        return False
    pid, host, start = int(m.group(1)), m.group(2), int(m.group(3))
    if host != _host():
        return False
    if pid == os.getpid():
        return token != owner_token()
    if os.path.exists("/proc/self/stat"):
        now = _start_time(pid)
        return now is None or (start != 0 and now != 0 and now != start)
    return not _alive(pid)
