"""Writing export files atomically, and naming build files the way a trainer will see them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import yaml

REPORT = "instmix-export.json"


def write_atomic(path: str, data: str | bytes) -> str:
    """Write ``data`` to a temporary sibling, then rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def temp_dir_beside(path: str) -> str:
    """An empty folder on the same file system as ``path`` (for an atomic swap)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)


def swap_in(tmp: str, path: str) -> str:
    """Replace folder ``path`` with the finished folder ``tmp``."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; exports are shared like files
    old = None
    if os.path.exists(path):
        old = temp_dir_beside(path)
        os.rmdir(old)
        os.rename(path, old)
    os.rename(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return path


def trainer_path(root: str, path: str, data_root: str | None) -> str:
    """``path`` (inside build ``root``) as the trainer sees it: under ``data_root`` (a folder
    or URL prefix such as ``s3://bucket/mix``) when given, else the absolute local path."""
    if not data_root:
        return os.path.abspath(path)
    rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    return data_root.rstrip("/") + "/" + rel


def yaml_block(data: dict) -> str:
    """Block-style YAML that keeps the key order given."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100,
                          allow_unicode=True)


def read_report(folder: str) -> dict | None:
    path = os.path.join(folder, REPORT)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_report(out: str, report: dict) -> str:
    """Write ``instmix-export.json``; entries of an earlier export of the same build and
    framework that this one did not redo are kept (e.g. one route of two)."""
    old = read_report(out)
    if old and all(old.get(k) == report.get(k) for k in ("framework", "manifest_sha256")):
        report = {**old, **report}
    return write_atomic(os.path.join(out, REPORT),
                        json.dumps(report, indent=2, ensure_ascii=False) + "\n")
