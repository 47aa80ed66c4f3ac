"""Export reports and YAML, and build files named the way a trainer will see them."""

from __future__ import annotations

import json
import os

import yaml

from instmix.errors import InstmixError
from instmix.io import fs
from instmix.io.atomic import write_atomic

from .guard import MADE, REPORT, ExportGuard, read_report

__all__ = ["REPORT", "export_folder", "read_report", "trainer_path", "write_report", "yaml_block"]



def trainer_path(root: str, path: str, data_root: str | None) -> str:
    """``path`` (inside build ``root``) as the trainer sees it: under ``data_root`` (a folder
    or URL prefix such as ``s3://bucket/mix``) when given, else the absolute local path."""
    if fs.is_url(path):  # a build on an object store: its URLs, or under data_root
        if not data_root:
            return path
        return data_root.rstrip("/") + "/" + path[len(root.rstrip("/")) + 1:]
    if not data_root:
        return os.path.abspath(path)
    rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    return data_root.rstrip("/") + "/" + rel


def export_folder(root: str, out: str | None, name: str) -> str:
    """``out``, or ``BUILD/<name>`` for a local build (a build at a URL needs ``--out``).

    ``out`` is a local folder: every trainer loads what an export writes from local files
    (OLMo's YAML, OLMo-core's module and YAML, LLaMA-Factory's ``dataset_dir``,
    transformers' tokenizer folder); only the data paths inside may be URLs."""
    if out and fs.is_url(out):
        raise InstmixError(f"{out}: --out must be a local folder: trainers read these configs "
                           "(OLMo/OLMo-core YAML and Python, LLaMA-Factory's dataset_dir, the "
                           "tokenizer folder) from local files, while the data paths in them "
                           "may be URLs (OLMo-core reads s3:// itself; see --data-root); write "
                           "the export locally and copy it where the trainer runs")
    if out:
        return os.path.abspath(out)
    if fs.is_url(root):
        raise InstmixError(f"{root}: the build is on an object store; write the export to a "
                           "local folder with --out")
    return os.path.abspath(os.path.join(root, name))


def yaml_block(data: dict) -> str:
    """Block-style YAML that keeps the key order given."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100,
                          allow_unicode=True)


def write_report(guard: ExportGuard, report: dict, written) -> str:
    """Write ``instmix-export.json`` into the guarded folder; entries of an earlier export of
    the same build and framework that this one did not redo are kept (e.g. one route of
    two), and ``made`` records the digest of every entry exports wrote there (``written``:
    this export's entry names)."""
    old = read_report(guard.out)
    if old and all(old.get(k) == report.get(k) for k in ("framework", "manifest_sha256")):
        report = {**old, **report}
    report[MADE] = guard.made_entries(written)
    return write_atomic(os.path.join(guard.out, REPORT),
                        json.dumps(report, indent=2, ensure_ascii=False) + "\n")
