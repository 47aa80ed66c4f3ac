"""``instmix report``: an HTML page (and PNGs) comparing build folders.

Modules: :mod:`.data` reads builds (manifest and ``.csv.gz`` indexes only), :mod:`.figures`
draws with matplotlib (Agg, imported lazily), :mod:`.page` assembles the self-contained HTML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from instmix.errors import InstmixError
from instmix.format.manifest import MANIFEST
from instmix.io.atomic import write_atomic

from .data import load_builds
from .figures import all_charts
from .page import render

HTML = "report.html"
FIGURES = ("share", "running_share", "doc_lengths", "repetitions", "pairs_per_text",
           "pair_kinds", "layouts")


@dataclass(frozen=True)
class ReportFiles:
    html: str
    pngs: list[str]
    builds: list[str]


def write_report(dirs: list[str], out: str, *, title: str | None = None) -> ReportFiles:
    """Read the builds in ``dirs`` and write ``out/report.html`` and ``out/<figure>.png``."""

    if not dirs:
        raise InstmixError("report: give at least one build folder")
    _check_out(out)
    builds = load_builds(dirs)
    try:
        import matplotlib  # noqa: F401  # lazy: an optional extra, instmix[report]
    except ImportError:
        raise InstmixError("instmix report needs matplotlib: pip install 'instmix[report]'"
                           ) from None

    charts = all_charts(builds)
    html = render(builds, charts, title)
    try:
        path = _write(out, charts, html)
    except OSError as e:
        raise InstmixError(f"{e.filename or out}: cannot write the report "
                           f"({e.strerror or e}); choose another --out") from None
    return ReportFiles(path, [os.path.join(out, c.name + ".png") for c in charts],
                       [b.root for b in builds])


def _write(out: str, charts, html: str) -> str:
    earlier = os.path.isfile(os.path.join(out, HTML))  # figures of an earlier report are ours
    os.makedirs(out, exist_ok=True)
    for chart in charts:
        write_atomic(os.path.join(out, chart.name + ".png"), chart.png)
    made = {c.name for c in charts}
    for name in FIGURES:  # a figure of an earlier report that no longer applies
        stale = os.path.join(out, name + ".png")
        if earlier and name not in made and os.path.isfile(stale):
            os.remove(stale)
    path = os.path.join(out, HTML)
    write_atomic(path, html.encode("utf-8"))
    return path


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise InstmixError(f"{out}: exists and is not a folder; --out names a folder")
    if os.path.isfile(os.path.join(out, MANIFEST)):
        raise InstmixError(f"{out}: is a build folder (a rebuild replaces it); choose another "
                           "--out")


__all__ = ["FIGURES", "HTML", "ReportFiles", "write_report"]
