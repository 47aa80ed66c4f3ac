"""Temporary folders owned by a process: the owner's pid is written inside, so a later run
can tell a folder left by a killed process from one a live process is still writing."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def mark_owner(folder: str, name: str) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(os.getpid()))


def abandoned(folder: str, name: str) -> bool:
    """True when ``folder``'s owner file is missing or names a process that is gone."""
    try:
        with open(os.path.join(folder, name)) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return True
    return not pid_alive(pid)
