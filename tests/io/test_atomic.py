"""The one atomic-write implementation: files, folder swaps, owner-marked temporaries."""

import os
import subprocess
import sys
import time

import pytest

from instmix.io import atomic
from instmix.io.atomic import (
    clean_stale,
    make_temp_dir,
    parse_temp_name,
    swap_dir,
    temp_name,
    write_atomic,
)
from instmix.io.owner import owner_dead, owner_token


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a" / "f.txt"
    write_atomic(str(p), "one")
    write_atomic(str(p), b"two")
    assert p.read_text() == "two" and os.listdir(p.parent) == ["f.txt"]


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    write_atomic(str(path), b"old")

    def boom(*_a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.png"]


def test_swap_dir_replaces_a_folder(tmp_path):
    d = tmp_path / "d"
    for content in ("x", "y"):
        tmp = make_temp_dir(str(d))
        with open(os.path.join(tmp, "f"), "w") as f:
            f.write(content)
        swap_dir(tmp, str(d))
    assert (d / "f").read_text() == "y" and os.listdir(tmp_path) == ["d"]


def test_swap_dir_without_exchange_is_recovered_after_a_kill_between_renames(tmp_path,
                                                                             monkeypatch):
    """The two-rename fallback: a death between the renames leaves the old folder under an
    owner-marked name, which the next run puts back before anything else."""
    d = tmp_path / "out"
    d.mkdir()
    (d / "f").write_text("old")
    new = make_temp_dir(str(d))
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for kill -9 between the two renames
        real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        swap_dir(new, str(d))
    monkeypatch.setattr(os, "rename", real_rename)
    assert not d.exists()
    # the owner (this test process) is alive: nothing is recovered by a concurrent run
    clean_stale(str(d))
    assert not d.exists()
    # once the owner is dead, the next run restores the old folder
    monkeypatch.setattr(atomic, "owner_dead", lambda token: True)
    clean_stale(str(d))
    assert (d / "f").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_only_owner_marked_entries_of_dead_owners_are_removed(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    user = [tmp_path / "out.old-mine", tmp_path / "out.tmp-1234", tmp_path / "out.instmix-old-x"]
    for u in user:
        u.mkdir()
    live = make_temp_dir(str(target))
    # a temporary made by a process that has exited
    code = ("import sys; from instmix.io.atomic import make_temp_dir; "
            "print(make_temp_dir(sys.argv[1]))")
    dead = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert os.path.isdir(dead)
    clean_stale(str(target))
    assert not os.path.exists(dead)
    assert os.path.isdir(live) and all(u.is_dir() for u in user) and target.is_dir()


def test_owner_tokens():
    me = owner_token()
    assert not owner_dead(me)
    pid, host, start = me.split("@")
    assert owner_dead(f"{pid}@{host}@{int(start) + 1}")  # same pid, another process
    assert not owner_dead("1@another_host@5")  # other hosts are never judged
    name = os.path.basename(temp_name("/x/build"))
    assert parse_temp_name(name)[:2] == ("build", "tmp")
    assert parse_temp_name("build.old-123") is None


def test_a_death_while_removing_the_previous_folder_never_brings_it_back(tmp_path,
                                                                        monkeypatch):
    """After the swap the previous folder is renamed to a tmp name before removal: if the
    process dies half-way through removing it, recovery can never restore a partial folder
    (even when the output is gone by then)."""
    d = tmp_path / "out"
    for content, exchange in (("old", True), ("new", False), ("newer", True)):
        new = make_temp_dir(str(d))
        (tmp_path / new / "f").write_text(content)
        if not exchange:
            monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)

        def die(path, **_kw):
            raise KeyboardInterrupt  # stands for kill -9 inside rmtree

        if d.exists():
            monkeypatch.setattr(atomic.shutil, "rmtree", die)
            with pytest.raises(KeyboardInterrupt):
                swap_dir(new, str(d))
        else:
            swap_dir(new, str(d))
        monkeypatch.undo()
        assert (d / "f").read_text() == content
        left = [n for n in os.listdir(tmp_path) if n != "out"]
        assert all(parse_temp_name(n)[1] == "tmp" for n in left)
    monkeypatch.setattr(atomic, "owner_dead", lambda token: True)
    import shutil

    shutil.rmtree(d)  # the user removes the output
    clean_stale(str(d))
    assert os.listdir(tmp_path) == []  # nothing half-removed came back


def test_a_zombie_owner_is_dead():
    """A worker killed with its build becomes a zombie until someone reaps it; its
    temporaries are abandoned all the same."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its token, then exit without being reaped
        os.write(w, owner_token().encode())
        os._exit(0)
    os.close(w)
    token = os.read(r, 200).decode()
    os.close(r)
    try:
        for _ in range(200):
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        assert owner_dead(token)
    finally:
        os.waitpid(pid, 0)
    assert owner_dead(token)
