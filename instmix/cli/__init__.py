"""The ``instmix`` command line: :mod:`.main` dispatches, one module per command."""

from .main import main

__all__ = ["main"]
