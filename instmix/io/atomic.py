"""Atomic files and folders: the one implementation build, cache, export, report and synth
use.

Every temporary entry is named ``<target>.instmix-<role>-<owner token>-<random>`` beside
its target (same file system, so renames are atomic) and carries its owner in its name
(:mod:`instmix.io.owner`). Only entries with that exact shape and a dead owner are ever
removed by :func:`clean_stale`; nothing else beside a target is touched.

Folders are replaced by :func:`swap_dir`: on Linux with ``renameat2(RENAME_EXCHANGE)``,
one atomic step; elsewhere by two renames, with :func:`recover` putting the previous
folder back when a process died between them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable

from .owner import owner_dead, owner_token

ROLES = ("tmp", "old")
_NAME = re.compile(r"^(?P<target>.+)\.instmix-(?P<role>tmp|old)-"
                   r"(?P<token>\d+@[A-Za-z0-9_.]+@\d+)-[0-9a-f]{8}$")


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name(target: str, role: str = "tmp") -> str:
    """A new owner-marked name beside ``target`` (nothing is created)."""
    assert role in ROLES
    folder, base = os.path.split(os.path.abspath(target))
    return os.path.join(folder, f"{base}.instmix-{role}-{owner_token()}-{secrets.token_hex(4)}")


def parse_temp_name(name: str) -> tuple[str, str, str] | None:
    """``(target name, role, owner token)`` of a name made by :func:`temp_name`, else None."""
    m = _NAME.match(name)
    return (m.group("target"), m.group("role"), m.group("token")) if m else None


def fsync_path(path: str) -> None:
    """fsync a file or folder by path; a path that cannot be opened or synced is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str, data: str | bytes, *, mode: int = 0o666) -> str:
    """Write ``data`` to an owner-marked sibling, fsync it, and rename it over ``path``:
    readers see the old content or the new, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_path(folder)
    return path


def make_temp_dir(target: str) -> str:
    """A new empty owner-marked folder beside ``target``, with the umask's permissions."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    while True:
        path = temp_name(target)
        try:
            os.mkdir(path, 0o777 & ~umask())
            return path
        except FileExistsError:
            continue


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False when unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), b)


def fsync_tree(folder: str) -> None:
    """fsync every file and folder under ``folder`` (so a power loss after a swap cannot
    publish a folder whose files were never written out)."""
    for root, _, names in os.walk(folder):
        for name in names:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def swap_dir(new: str, dest: str, *, check: Callable[[str], None] | None = None) -> None:
    """Put finished folder ``new`` at ``dest``, replacing a previous ``dest``.

    ``check(dest)`` runs right before the swap (it may refuse to replace ``dest``). With
    ``renameat2(RENAME_EXCHANGE)`` ``dest`` is at every instant the old folder or the new
    one; with the two-rename fallback a death between the renames leaves the old folder
    under an owner-marked ``old`` name, which :func:`recover` puts back. The previous
    folder is then renamed to a ``tmp`` name (never recovered) and removed, so a death
    while removing it can never bring a half-removed folder back.
    """
    fsync_tree(new)
    if check is not None:
        check(dest)
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.lexists(dest):
        try:
            os.rename(new, dest)
            fsync_path(parent)
            return
        except OSError as e:  # created meanwhile: replace it as below
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if _exchange(new, dest):
        # ``new`` (a tmp name) now holds the previous folder: remove it
        fsync_path(parent)
        shutil.rmtree(new, ignore_errors=True)
        return
    old = temp_name(dest, "old")
    os.rename(dest, old)
    os.rename(new, dest)  # a crash before this line is undone by recover(dest)
    fsync_path(parent)
    trash = temp_name(dest, "tmp")
    os.rename(old, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _stale(dest: str) -> list[tuple[str, str]]:
    parent, base = os.path.split(os.path.abspath(dest))
    try:
        names = os.listdir(parent or ".")
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        parsed = parse_temp_name(name)
        if parsed and parsed[0] == base and owner_dead(parsed[2]):
            found.append((parsed[1], os.path.join(parent, name)))
    return found


def recover(dest: str) -> None:
    """If a dead process left ``dest`` missing mid-swap, put its previous folder back."""
    if os.path.lexists(dest):
        return
    olds = [p for role, p in _stale(dest) if role == "old"]
    if olds:
        os.rename(max(olds, key=os.path.getmtime), dest)


def clean_stale(dest: str) -> None:
    """Recover ``dest`` if needed, then remove temporaries of ``dest`` whose owner died."""
    recover(dest)
    for _, path in _stale(dest):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


def clean_stale_in(folder: str) -> None:
    """:func:`clean_stale` for every target that has temporaries in ``folder``."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    targets = {p[0] for p in map(parse_temp_name, names) if p}
    for t in sorted(targets):
        clean_stale(os.path.join(folder, t))
