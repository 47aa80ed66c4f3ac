"""instmix's template bank and renderer for instruction-augmented documents."""

from .render import Rendered, render_chain

__all__ = ["Rendered", "render_chain"]
