"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot,
so no global backend is touched). Every function returns a :class:`Chart` or ``None`` when
the figure does not apply to these builds.

Colours name sources (the same source has the same colour in every figure and table);
builds are told apart by panel, line style or hatching."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .data import BuildData

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
           "#8C8C8C", "#CCB974", "#64B5CD"]
LINESTYLES = ["-", "--", ":", "-."]
HATCHES = ["", "///", "...", "xxx", "\\\\\\", "+++", "ooo"]
LAYOUTS = ["classic", "inverted", "dialog", "numbered", "fewshot", "next_turn", "raw"]
PAIR_KINDS = ["qa", "multiple_choice", "chain_of_thought"]
DPI = 110
WIDTH = 9.0  # inches; 990 px at DPI


@dataclass(frozen=True)
class Chart:
    name: str      # file stem: <name>.png
    title: str
    caption: str
    png: bytes


def source_colors(builds: list[BuildData]) -> dict[str, str]:
    names: list[str] = []
    for b in builds:
        names += [n for n in b.names if n not in names]
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def augmented_names(builds: list[BuildData]) -> list[str]:
    names: list[str] = []
    for b in builds:
        names += [s["name"] for s in b.sources
                  if s.get("kind") == "augmented" and s["name"] not in names]
    return names


def _new(height: float, ncols: int = 1, nrows: int = 1, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: optional extra
    from matplotlib.figure import Figure  # lazy: optional extra

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _style(ax, grid_axis: str = "x") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis=grid_axis, color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white",
                metadata={"Software": None})
    return buf.getvalue()


def _tokens_label(x: float, _pos=None) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def _counted(b: BuildData) -> str:
    return "loss tokens" if b.manifest.get("ratio_by") == "loss_tokens" else "tokens"


def share_chart(builds: list[BuildData], colors: dict[str, str]) -> Chart:
    """Stacked bars per build: planned shares over achieved shares."""
    rows = []
    for b in builds:
        key = "achieved_ratio"
        if _counted(b) == "loss tokens" and all("achieved_loss_ratio" in s for s in b.sources):
            key = "achieved_loss_ratio"
        planned = [(s["name"], float(s.get("target_ratio", 0.0))) for s in b.sources]
        achieved = [(s["name"], float(s.get(key, 0.0))) for s in b.sources]
        tag = f"{b.label}  " if len(builds) > 1 else ""
        unit = " (loss)" if _counted(b) == "loss tokens" else ""
        rows.append((f"{tag}planned{unit}", planned, True))
        rows.append((f"{tag}achieved{unit}", achieved, False))
    fig, axes = _new(0.95 + 0.42 * len(rows))
    ax = axes[0][0]
    y = np.arange(len(rows))[::-1] + np.repeat(np.arange(len(builds))[::-1] * 0.5, 2)
    for (_label, parts, planned), yy in zip(rows, y):
        left = 0.0
        for name, share in parts:
            ax.barh(yy, share, left=left, height=0.8, color=colors[name],
                    alpha=0.55 if planned else 1.0, edgecolor="white", linewidth=1,
                    hatch="///" if planned else None)
            if share >= 0.045:
                ax.text(left + share / 2, yy, f"{share:.1%}", ha="center", va="center",
                        fontsize=8.5, color="black" if planned else "white",
                        fontweight="normal" if planned else "bold")
            left += share
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _p: f"{v:.0%}")
    ax.set_xlabel("share of the mixture's tokens", fontsize=9)
    _style(ax)
    handles = [_patch(colors[n]) for n in colors if any(n in b.names for b in builds)]
    names = [n for n in colors if any(n in b.names for b in builds)]
    fig.legend(handles, names, loc="outside upper center", ncol=min(len(names), 6),
               frameon=False, fontsize=9)
    loss = [b.label for b in builds if _counted(b) == "loss tokens"]
    caption = ("Each source's share of the mixture: planned (hatched, the normalised ratios) "
               "above achieved (solid, tokens written). Achieved differs from planned by at "
               "most about one document per source.")
    if loss:
        caption += (" Builds with ratio_by: loss_tokens (" + ", ".join(loss) + ") plan and "
                    "are shown in shares of loss tokens (tokens that train).")
    return Chart("share", "Token share per source: planned vs achieved", caption, _png(fig))


def _patch(color: str, hatch: str = "", alpha: float = 1.0):
    from matplotlib.patches import Patch  # lazy: optional extra

    return Patch(facecolor=color, hatch=hatch, alpha=alpha, edgecolor="#555555" if hatch else color)


def running_share_chart(builds: list[BuildData], colors: dict[str, str]) -> Chart | None:
    shown = [b for b in builds if b.curve is not None]
    if not shown:
        return None
    fig, axes = _new(0.7 + 1.9 * len(shown), nrows=len(shown), sharex=False)
    for ax, b in zip(axes[:, 0], shown):
        by_loss = _counted(b) == "loss tokens"
        for j, s in enumerate(b.sources):
            c = colors[s["name"]]
            ax.plot(b.curve.tokens, b.curve.shares[:, j], color=c, linewidth=1.6,
                    label=s["name"])
            ref = s.get("achieved_ratio" if by_loss else "target_ratio")
            if ref is not None:
                ax.axhline(float(ref), color=c, linestyle=(0, (4, 3)), linewidth=1, alpha=0.7)
        ax.set_xlim(0, float(b.curve.tokens[-1]))
        top = float(b.curve.shares.max()) if b.curve.shares.size else 1.0
        ax.set_ylim(0, min(1.0, top * 1.08 + 0.02))
        ax.yaxis.set_major_formatter(lambda v, _p: f"{v:.0%}")
        ax.xaxis.set_major_formatter(_tokens_label)
        docs = sum(len(v) for v in b.lengths.values())
        sub = f", plotted at {len(b.curve.tokens):,} points" if len(b.curve.tokens) < docs else ""
        ax.set_title(f"{b.label}: {int(b.manifest['total_tokens']):,} tokens, {docs:,} "
                     f"documents{sub}", fontsize=9.5, loc="left")
        ax.set_ylabel("share so far", fontsize=9)
        _style(ax, "both")
    axes[-1, 0].set_xlabel("tokens into the stream", fontsize=9)
    handles, names = [], []
    for b in shown:
        for n in b.names:
            if n not in names:
                names.append(n)
                handles.append(_line(colors[n]))
    fig.legend(handles, names, loc="outside upper center", ncol=min(len(names), 6),
               frameon=False, fontsize=9)
    skipped = [b.label for b in builds if b.curve is None]
    loss = [b.label for b in shown if _counted(b) == "loss tokens"]
    caption = ("Share of each source in the tokens emitted so far, in stream order (read from "
               "the shard indexes; long streams are subsampled to evenly spaced points). "
               "Dashed: the planned share. The deficit schedule keeps every prefix within "
               "about one document of it.")
    if loss:
        caption += (" For " + ", ".join(loss) + " (ratio_by: loss_tokens, planned in loss "
                    "tokens) the dashed line is the achieved share of all tokens instead.")
    if skipped:
        caption += (" Not shown: " + ", ".join(skipped) + " (per_source layout; the trainer "
                    "interleaves the sources).")
    return Chart("running_share", "Running share along the stream", caption, _png(fig))


def _line(color: str, style: str = "-"):
    from matplotlib.lines import Line2D  # lazy: optional extra

    return Line2D([0], [0], color=color, linestyle=style, linewidth=1.8)


def lengths_chart(builds: list[BuildData], colors: dict[str, str]) -> Chart | None:
    names = [n for n in colors if any(len(b.lengths.get(n, ())) for b in builds)]
    if not names:
        return None
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = _new(0.4 + 2.4 * nrows, ncols=ncols, nrows=nrows)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        data = [(i, b, b.lengths[name]) for i, b in enumerate(builds)
                if len(b.lengths.get(name, ()))]
        lo = max(min(int(d.min()) for _, _, d in data), 1)
        hi = max(max(int(d.max()) for _, _, d in data), 1)
        nbins = int(np.clip(2 * np.sqrt(max(len(d) for _, _, d in data)), 8, 40))
        log = hi >= 4 * lo
        if hi <= lo * 1.05:
            lo, hi = lo / 1.2, hi * 1.2
        if log:  # edges between integers, so no bin is narrower than one token
            bins = np.unique(np.round(np.geomspace(lo, hi + 1, nbins + 1))) - 0.5
        else:
            bins = np.linspace(lo, hi, nbins + 1)
        for i, b, d in data:
            counts, _ = np.histogram(np.clip(d, bins[0], bins[-1]), bins=bins)
            pct = counts / len(d)
            med = float(np.median(d))
            label = f"{b.label + ': ' if len(builds) > 1 else ''}n={len(d):,}, median {med:,.0f}"
            ax.stairs(pct, bins, color=colors[name], linewidth=1.6,
                      linestyle=LINESTYLES[i % len(LINESTYLES)], label=label,
                      fill=len(builds) == 1, alpha=0.6 if len(builds) == 1 else 0.85)
        if log:
            from matplotlib.ticker import LogLocator, NullFormatter  # lazy: optional extra

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            from matplotlib.ticker import MaxNLocator  # lazy: optional extra

            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(_tokens_label)
        ax.yaxis.set_major_formatter(lambda v, _p: f"{v:.0%}")
        ax.set_ylim(0, ax.get_ylim()[1] * (1.18 + 0.12 * len(data)))
        ax.set_title(name, fontsize=10, loc="left", color=colors[name], fontweight="bold")
        ax.legend(fontsize=7.5, frameon=False, loc="upper left")
        ax.set_xlabel("tokens per document", fontsize=8.5)
        _style(ax, "y")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of documents", fontsize=9)
    caption = ("Distribution of document lengths in tokens (EOS/BOS included) per source, "
               "over the documents written to the mixture (a document drawn twice counts "
               "twice); logarithmic bins, as a share of the source's documents.")
    if len(builds) > 1:
        caption += " Line styles tell the builds apart."
    return Chart("doc_lengths", "Document length distribution per source", caption, _png(fig))


def repetitions_chart(builds: list[BuildData], colors: dict[str, str]) -> Chart:
    rows = []
    for name in colors:
        for i, b in enumerate(builds):
            s = b.source(name)
            if s is not None:
                rows.append((name, i, b, float(s.get("repetitions", 0.0)),
                             s.get("max_repetition")))
    fig, axes = _new(0.8 + 0.36 * len(rows))
    ax = axes[0][0]
    y = np.arange(len(rows))[::-1].astype(float)
    group = 0
    for k in range(1, len(rows)):
        if rows[k][0] != rows[k - 1][0]:
            group += 1
        y[k] -= group * 0.5
    hi = max([r[3] for r in rows] + [float(r[4]) for r in rows if r[4] is not None] + [1.0])
    for (name, i, _b, used, cap), yy in zip(rows, y):
        if cap is not None:
            ax.barh(yy, float(cap), height=0.72, color=colors[name], alpha=0.18)
            ax.plot([float(cap)] * 2, [yy - 0.36, yy + 0.36], color="#333333", linewidth=1.4)
        ax.barh(yy, used, height=0.72, color=colors[name], hatch=HATCHES[i % len(HATCHES)],
                edgecolor="white", linewidth=0.5)
        text = f"{used:.2f}" + (f" of {float(cap):g}" if cap is not None else "")
        ax.text(max(used, float(cap or 0)) + hi * 0.01, yy, text, va="center", fontsize=8.5)
    labels = [f"{r[0]}  ·  {r[2].label}" if len(builds) > 1 else r[0] for r in rows]
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, hi * 1.16)
    ax.set_xlabel("passes over the source's tokens (repetitions)", fontsize=9)
    _style(ax)
    caption = ("Repetitions used (solid: tokens written / tokens available) against the "
               "source's max_repetition cap (pale bar ending in a black tick). A bar at its "
               "tick is a source that limits the mixture's size.")
    return Chart("repetitions", "Repetitions used vs caps", caption, _png(fig))


def _composition_panels(builds, colors, key, order, title, name, caption, xlabel,
                        numeric=False) -> Chart | None:
    names = augmented_names(builds)
    panels = []
    for n in names:
        per = [(i, b, b.source(n).get("composition", {}).get(key, {}))
               for i, b in enumerate(builds) if b.source(n) is not None]
        if any(c for _, _, c in per):
            panels.append((n, per))
    if not panels:
        return None
    fig, axes = _new(0.5 + 2.3 * len(panels), nrows=len(panels))
    for ax, (n, per) in zip(axes[:, 0], panels):
        keys = set().union(*(c.keys() for _, _, c in per))
        if numeric:
            cats = sorted(keys, key=lambda v: (not v.lstrip("-").isdigit(), int(v)
                                               if v.lstrip("-").isdigit() else 0, v))
        else:
            cats = list(order) + sorted(keys - set(order))
        x = np.arange(len(cats), dtype=float)
        width = 0.8 / len(per)
        for k, (i, b, comp) in enumerate(per):
            total = sum(comp.values()) or 1
            vals = np.array([comp.get(c, 0) for c in cats], dtype=float)
            xs = x - 0.4 + width * (k + 0.5)
            ax.bar(xs, vals / total, width=width * 0.92, color=colors[n],
                   hatch=HATCHES[i % len(HATCHES)], edgecolor="white", linewidth=0.5,
                   label=b.label)
            for xx, v in zip(xs, vals):
                ax.text(xx, v / total, f"{int(v):,}", ha="center", va="bottom",
                        fontsize=7.5 if len(per) > 2 else 8.5)
        ax.set_xticks(x, cats, fontsize=9)
        ax.yaxis.set_major_formatter(lambda v, _p: f"{v:.0%}")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
        ax.set_title(n, fontsize=10, loc="left", color=colors[n], fontweight="bold")
        ax.set_xlabel(xlabel, fontsize=9)
        if len(per) > 1:
            ax.legend(fontsize=8, frameon=False, loc="upper right")
        _style(ax, "y")
    return Chart(name, title, caption, _png(fig))


def pairs_per_text_chart(builds, colors) -> Chart | None:
    return _composition_panels(
        builds, colors, "pairs_per_text", [], "Instruction-response pairs per text",
        "pairs_per_text",
        "For each augmented source: how many instruction-response pairs the synthesizer "
        "attached to each raw text (labels: texts; height: share of the source's texts). "
        "Counted over the source's documents as tokenized, before drawing.",
        "pairs per text", numeric=True)


def pair_kinds_chart(builds, colors) -> Chart | None:
    return _composition_panels(
        builds, colors, "pair_kind", PAIR_KINDS, "Pair kinds", "pair_kinds",
        "For each augmented source: the kinds of its instruction-response pairs "
        "(labels: pairs; height: share of the source's pairs), over the source as tokenized.",
        "pair kind")


def layouts_chart(builds, colors) -> Chart | None:
    return _composition_panels(
        builds, colors, "layout", LAYOUTS, "Template layouts", "layouts",
        "For each augmented source: the template layout each text with its pairs was "
        "rendered in (labels: texts; height: share of the source's texts), over the source "
        "as tokenized.", "template layout")


def all_charts(builds: list[BuildData]) -> list[Chart]:
    colors = source_colors(builds)
    charts = [share_chart(builds, colors), running_share_chart(builds, colors),
              lengths_chart(builds, colors), repetitions_chart(builds, colors),
              pairs_per_text_chart(builds, colors), pair_kinds_chart(builds, colors),
              layouts_chart(builds, colors)]
    return [c for c in charts if c is not None]
