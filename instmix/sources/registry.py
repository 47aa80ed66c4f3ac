"""The kind registry: kind name -> :class:`~instmix.sources.kinds.Kind` class.

The built-in kinds are registered here. Other packages extend it without core code
naming them: either by calling :func:`register_kind`, or through the ``instmix.kinds``
entry-point group of an installed distribution (instmix itself registers ``augmented``
from :mod:`instmix.synth.kind` that way, see ``pyproject.toml``). Entry points are read
once, on the first look-up.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .kinds import BUILTIN_KINDS, Kind

ENTRY_POINT_GROUP = "instmix.kinds"

_kinds: dict[str, type[Kind]] = dict(BUILTIN_KINDS)
_plugins: dict[str, object] = {}  # name -> entry point, loaded when first used
_scanned = False


def _scan() -> None:
    global _scanned
    if not _scanned:
        _scanned = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _plugins.setdefault(ep.name, ep)


def register_kind(name: str, kind: type[Kind]) -> None:
    """Make ``kind`` (a :class:`Kind` subclass) available as ``kind: name`` in configs."""
    if not (isinstance(kind, type) and issubclass(kind, Kind)):
        raise TypeError(f"register_kind({name!r}, ...) takes a Kind subclass, got {kind!r}")
    _kinds[name] = kind


def known_kinds() -> list[str]:
    _scan()
    return sorted(set(_kinds) | set(_plugins))


def get_kind(name: str) -> Kind:
    """A new instance of the kind registered as ``name`` (KeyError when unknown)."""
    if name not in _kinds:
        _scan()
        ep = _plugins[name]
        register_kind(name, ep.load())  # type: ignore[attr-defined]
    return _kinds[name]()
