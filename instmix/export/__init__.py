"""Export a build to trainers: OLMo, OLMo-core and LLaMA-Factory (``instmix export``).

Each exporter reads the build's manifest once (:mod:`.facts`), writes its files atomically
into an output folder (default ``BUILD/export-<framework>``) with an ``instmix-export.json``
report, and returns an :class:`ExportResult`. :func:`check_config` compares an existing
trainer config with a build and raises on the first disagreement.
"""

from __future__ import annotations

from .check import check_config
from .facts import BuildFacts, load_facts
from .llamafactory import export_llamafactory
from .olmo import export_olmo
from .olmo_core import export_olmo_core
from .options import ExportResult

EXPORTERS = {"olmo": export_olmo, "olmo-core": export_olmo_core,
             "llamafactory": export_llamafactory}
FRAMEWORKS = tuple(EXPORTERS)

__all__ = ["FRAMEWORKS", "BuildFacts", "ExportResult", "check_config", "export", "load_facts"]


def export(framework: str, build: str, out: str | None = None, **options) -> ExportResult:
    """Run the exporter of ``framework`` (one of :data:`FRAMEWORKS`)."""
    if framework not in EXPORTERS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {FRAMEWORKS}")
    return EXPORTERS[framework](build, out, **options)
