"""The report page: one self-contained HTML file (figures embedded as data URIs, no
scripts, no external resources). Table cells carry ``data-field``/``data-value`` with the
manifest's exact values, so a program can read the numbers back."""

from __future__ import annotations

import base64
from html import escape

from instmix import __version__

from .data import BuildData
from .figures import LAYOUTS, PAIR_KINDS, Chart, augmented_names, source_colors

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --head: #f2f4f7; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f4; color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1060px; margin: 24px auto; background: #fff; padding: 28px 36px 40px;
  border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 8px; }
.sub { color: var(--muted); margin: 0 0 14px; }
nav { font-size: 13px; color: var(--muted); }
nav a { color: #0b61c4; text-decoration: none; margin-right: 14px; }
figure { margin: 18px 0 26px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
figcaption a { color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; white-space: nowrap; }
th { background: var(--head); font-weight: 600; white-space: normal; vertical-align: bottom; }
table.prov td.num { text-align: left; }
table.prov tbody th { background: var(--head); white-space: nowrap; vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.hash { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px;
  white-space: normal; word-break: break-all; }
td.wrap { white-space: normal; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; vertical-align: baseline; }
.note { color: var(--muted); font-size: 13px; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; font-weight: 600; }
tr.differs td, .differs-key { background: #fff6d6 !important; }
"""


def _num(value, text: str | None = None, field: str = "", title: str = "") -> str:
    shown = text if text is not None else ("" if value is None else f"{value:,}")
    attrs = f' data-field="{escape(field)}"' if field else ""
    attrs += f' data-value="{escape(_raw(value))}"'
    if title:
        attrs += f' title="{escape(title)}"'
    return f'<td class="num"{attrs}>{escape(shown)}</td>'


def _txt(value, field: str = "", cls: str = "", html: str | None = None) -> str:
    attrs = f' data-field="{escape(field)}" data-value="{escape(_raw(value))}"' if field else ""
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{html if html is not None else escape(_raw(value))}</td>"


def _raw(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _pct(x) -> str:
    return "" if x is None else f"{float(x):.2%}"


def _swatch(name: str, colors: dict[str, str]) -> str:
    return f'<span class="sw" style="background:{colors[name]}"></span>{escape(name)}'


def _table(head: list[str | tuple[str, str]], rows: list[str], cls: str = "") -> str:
    cells = "".join(f'<th class="num">{escape(h[0])}</th>' if isinstance(h, tuple)
                    else f"<th>{escape(h)}</th>" for h in head)
    attr = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{attr}><thead><tr>{cells}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _row(attrs: dict, cells: list[str]) -> str:
    a = "".join(f' data-{k}="{escape(v)}"' for k, v in attrs.items())
    return f"<tr{a}>" + "".join(cells) + "</tr>"


def overview(builds: list[BuildData]) -> str:
    head = ["build", ("tokens", ""), ("documents", ""), ("sources", ""), ("seed", ""),
            "ratio_by", "layout", "dtype", ("shards", "")]
    rows = []
    for b in builds:
        m = b.manifest
        rows.append(_row({"build": b.label}, [
            _txt(b.label, html=f'<span title="{escape(b.root)}">{escape(b.label)}</span>'),
            _num(m["total_tokens"], field="total_tokens"),
            _num(m.get("documents"), field="documents"),
            _num(len(b.sources), field="sources"),
            _num(m["seed"], str(m["seed"]), "seed"),
            _txt(m.get("ratio_by", "tokens"), "ratio_by"),
            _txt(m.get("layout", "interleaved"), "layout"),
            _txt(m["dtype"], "dtype"),
            _num(len(m["shards"]), field="shards"),
        ]))
    return _table(head, rows)


def sources_table(b: BuildData, colors: dict[str, str], loss_cols: bool = True) -> str:
    """What each source gives the mixture. ``loss_cols``: show the loss mode
    (all / responses / none), loss tokens and their share (when some source masks its
    loss or ratios count loss tokens)."""
    head = ["source"] + (["loss"] if loss_cols else []) + [("docs", ""), ("tokens", "")]
    head += [("loss tokens", ""), ("loss share", "")] if loss_cols else []
    head += [("planned", ""), ("achieved", ""), ("Δ pp", ""), ("target tokens", ""),
             ("reps", ""), ("cap", "")]
    rows = []
    for s in b.sources:
        planned, achieved = s.get("target_ratio"), s.get("achieved_ratio")
        loss_share = s.get("achieved_loss_ratio")
        counted = achieved
        if b.manifest.get("ratio_by") == "loss_tokens" and loss_share is not None:
            counted = loss_share  # planned in loss tokens: compare like with like
        delta = None if planned is None or counted is None else (counted - planned) * 100
        reps, cap = s.get("repetitions"), s.get("max_repetition")
        cells = [
            _txt(s["name"], "name", html=_swatch(s["name"], colors)),
            *([_txt(s.get("loss", "all"), "loss")] if loss_cols else []),
            _num(s["documents"], field="documents"),
            _num(s["tokens"], field="tokens"),
        ]
        if loss_cols:
            cells += [_num(s.get("loss_tokens"), field="loss_tokens"),
                      _num(loss_share, _pct(loss_share), "achieved_loss_ratio")]
        cells += [
            _num(planned, _pct(planned), "target_ratio"),
            _num(achieved, _pct(achieved), "achieved_ratio"),
            _num(delta, "" if delta is None else f"{delta:+.2f}", "delta_pp"),
            _num(s.get("target_tokens"), field="target_tokens"),
            _num(reps, "" if reps is None else f"{reps:.3f}", "repetitions"),
            _num(cap, "" if cap is None else f"{float(cap):g}", "max_repetition"),
        ]
        rows.append(_row({"build": b.label, "source": s["name"]}, cells))
    m = b.manifest
    total = [_txt("total", html="<b>total</b>"), *([_txt("")] if loss_cols else []),
             _num(m.get("documents"), field="documents"),
             _num(m["total_tokens"], field="tokens")]
    if loss_cols:
        total.append(_num(m.get("loss_tokens"), field="loss_tokens"))
    total += [_txt("")] * (len(head) - len(total))
    rows.append(_row({"build": b.label, "total": "1"}, total))
    return _table(head, rows)


def inputs_table(builds: list[BuildData], colors: dict[str, str]) -> str:
    """What each source had to offer: its kind, files, tokens and documents available,
    and the records skipped while reading it."""
    many = len(builds) > 1
    head = (["build"] if many else []) + ["source", "kind", ("files", ""),
                                          ("available tokens", ""),
                                          ("available docs", ""), ("skipped", ""),
                                          "skipped by reason"]
    rows = []
    for b in builds:
        for s in b.sources:
            skipped = s.get("skipped") or {}
            rows.append(_row({"build": b.label, "source": s["name"]}, [
                *([_txt(b.label)] if many else []),
                _txt(s["name"], "name", html=_swatch(s["name"], colors)),
                _txt(s["kind"], "kind"),
                _num(s.get("files"), field="files"),
                _num(s.get("available_tokens"), field="available_tokens"),
                _num(s.get("available_documents"), field="available_documents"),
                _num(sum(skipped.values()), field="skipped"),
                _txt(_raw(skipped), "skipped_by_reason", "wrap", html=_dist(skipped)),
            ]))
    return _table(head, rows)


def removed_table(builds: list[BuildData], colors: dict[str, str]) -> str | None:
    """What the clean stage removed per source: documents by reason, pairs by filter."""
    if not any("removed" in s for b in builds for s in b.sources):
        return None
    many = len(builds) > 1
    head = (["build"] if many else []) + ["source", ("duplicate", ""), ("near duplicate", ""),
                                          ("contaminated", ""), ("pairs removed", ""),
                                          "pairs by reason"]
    rows = []
    for b in builds:
        for s in b.sources:
            r = s.get("removed")
            if r is None:
                continue
            filtered = r.get("filtered") or {}
            rows.append(_row({"build": b.label, "source": s["name"]}, [
                *([_txt(b.label)] if many else []),
                _txt(s["name"], "name", html=_swatch(s["name"], colors)),
                _num(r.get("duplicate", 0), field="duplicate"),
                _num(r.get("near_duplicate", 0), field="near_duplicate"),
                _num(r.get("contaminated", 0), field="contaminated"),
                _num(sum(filtered.values()), field="pairs_removed"),
                _txt(_raw(filtered), "pairs_by_reason", "wrap", html=_dist(filtered)),
            ]))
    return _table(head, rows)


def _dist(values: dict, order: list[str] = ()) -> str:
    keys = [k for k in order if k in values] + [k for k in values if k not in order]
    return " · ".join(f"{escape(str(k))}: {values[k]:,}" for k in keys)


def augmented_table(builds: list[BuildData], colors: dict[str, str]) -> str:
    head = ["build", "source", ("texts", ""), ("pairs", ""), ("pairs / text", ""),
            ("chains", ""), "texts per chain", "pair kinds", "layouts"]
    rows = []
    for b in builds:
        for s in b.sources:
            if s.get("kind") != "augmented":
                continue
            comp = s.get("composition") or {}
            ppt = comp.get("pairs_per_text", {})
            texts = sum(ppt.values())
            pairs = sum(int(k) * v for k, v in ppt.items() if str(k).lstrip("-").isdigit())
            chains = sum(comp.get("entries_per_chain", {}).values())
            rows.append(_row({"build": b.label, "source": s["name"]}, [
                _txt(b.label), _txt(s["name"], html=_swatch(s["name"], colors)),
                _num(texts, field="texts"), _num(pairs, field="pairs"),
                _num(pairs / texts if texts else None,
                     f"{pairs / texts:.2f}" if texts else "", "pairs_per_text_mean"),
                _num(chains, field="chains"),
                _txt(_raw(comp.get("entries_per_chain")), "entries_per_chain",
                     html=_dist(comp.get("entries_per_chain", {}))),
                _txt(_raw(comp.get("pair_kind")), "pair_kind", "wrap",
                     html=_dist(comp.get("pair_kind", {}), PAIR_KINDS)),
                _txt(_raw(comp.get("layout")), "layout", "wrap",
                     html=_dist(comp.get("layout", {}), LAYOUTS)),
            ]))
    return _table(head, rows)


PROVENANCE = [
    ("folder", lambda b: b.root, "hash"),
    ("format_version", lambda b: b.manifest.get("format_version"), ""),
    ("tokenizer path", lambda b: b.manifest["tokenizer"].get("path"), "hash"),
    ("tokenizer sha256", lambda b: b.manifest["tokenizer"].get("sha256"), "hash"),
    ("vocab_size", lambda b: b.manifest["tokenizer"].get("vocab_size"), "num"),
    ("eos_token_id", lambda b: b.manifest["tokenizer"].get("eos_token_id"), "num"),
    ("eos_token", lambda b: b.manifest["tokenizer"].get("eos_token"), ""),
    ("bos_token_id", lambda b: b.manifest["tokenizer"].get("bos_token_id"), "num"),
    ("bos_token", lambda b: b.manifest["tokenizer"].get("bos_token"), ""),
    ("dtype", lambda b: b.manifest["dtype"], ""),
    ("seed", lambda b: b.manifest["seed"], "num"),
    ("total_tokens", lambda b: b.manifest["total_tokens"], "num"),
    ("requested_tokens", lambda b: b.manifest.get("requested_tokens"), "num"),
    ("loss_tokens", lambda b: b.manifest.get("loss_tokens"), "num"),
    ("documents", lambda b: b.manifest.get("documents"), "num"),
    ("ratio_by", lambda b: b.manifest.get("ratio_by", "tokens"), ""),
    ("layout", lambda b: b.manifest.get("layout", "interleaved"), ""),
    ("shards", lambda b: len(b.manifest["shards"]), "num"),
]


COUNTS = {"vocab_size", "total_tokens", "requested_tokens", "loss_tokens", "documents",
          "shards"}


def provenance(builds: list[BuildData]) -> str:
    head = ["", *[b.label for b in builds]]
    rows = []
    for name, get, kind in PROVENANCE:
        cells = [f"<th>{escape(name)}</th>"]
        values = [get(b) for b in builds]
        for v in values:
            if kind == "num" and v is not None:
                cells.append(_num(v, None if name in COUNTS else str(v), name))
            else:
                shown = "—" if v is None else _raw(v)
                cells.append(_txt(v, name, "hash" if kind == "hash" else "",
                                  html=escape(shown)))
        differs = name != "folder" and len({_raw(v) for v in values}) > 1
        rows.append(_row({"field": name}, cells).replace("<tr", '<tr class="differs"', 1)
                    if differs else _row({"field": name}, cells))
    note = ('<p class="note">Rows <span class="differs-key">highlighted</span> differ '
            "between the builds.</p>" if len(builds) > 1 else "")
    return note + _table(head, rows, "prov")


def shards_table(b: BuildData) -> str:
    masked = any(s.get("mask") for s in b.manifest["shards"])
    head = ["path", ("tokens", ""), ("documents", ""), "sha256"]
    head += [("loss tokens", ""), "mask sha256"] if masked else []
    rows = []
    for s in b.manifest["shards"]:
        cells = [_txt(s["path"], "path"), _num(s.get("tokens"), field="tokens"),
                 _num(s.get("documents"), field="documents"),
                 _txt(s.get("sha256"), "sha256", "hash")]
        if masked:
            cells += [_num(s.get("loss_tokens"), field="loss_tokens"),
                      _txt(s.get("mask_sha256"), "mask_sha256", "hash")]
        rows.append(_row({"build": b.label, "shard": s["path"]}, cells))
    return _table(head, rows)


def figure_html(chart: Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    return (f'<figure id="fig-{chart.name}"><h3>{escape(chart.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{escape(chart.title)}" '
            f'data-figure="{chart.name}">'
            f'<figcaption>{escape(chart.caption)} '
            f'<a href="{chart.name}.png">{chart.name}.png</a></figcaption></figure>')


def render(builds: list[BuildData], charts: list[Chart], title: str | None = None) -> str:
    colors = source_colors(builds)
    title = title or ("instmix report: " + ", ".join(b.label for b in builds)
                      if len(builds) <= 4 else f"instmix report: {len(builds)} mixtures")
    what = ("one mixture" if len(builds) == 1 else f"{len(builds)} mixtures compared")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="instmix {escape(__version__)}">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{what}; made by instmix {escape(__version__)} from manifest.json '
        "and the shard indexes (token files are not read).</p>",
        '<nav><a href="#mixtures">Mixtures</a><a href="#figures">Figures</a>'
        '<a href="#sources">Sources</a>'
        + ('<a href="#augmented">Augmented</a>' if augmented_names(builds) else "")
        + '<a href="#provenance">Provenance</a></nav>',
        '<h2 id="mixtures">Mixtures</h2>', overview(builds),
        '<h2 id="figures">Figures</h2>', *map(figure_html, charts),
        '<h2 id="sources">Sources</h2>',
        '<p class="note">planned: normalised ratio; achieved: share of the tokens written; '
        "loss tokens: tokens that train (loss mask true) and loss share: their share; "
        "Δ pp: achieved − planned in percentage points (loss share − planned with ratio_by: "
        "loss_tokens); reps: tokens written / tokens available (passes over the source); "
        "cap: max_repetition. Inputs, below: what each source had available.</p>",
    ]
    loss_cols = any(s.get("loss", "all") != "all" for b in builds for s in b.sources) or \
        any(b.manifest.get("ratio_by") == "loss_tokens" for b in builds)
    for b in builds:
        if len(builds) > 1:
            parts.append(f"<h3>{escape(b.label)}</h3>")
        parts.append(sources_table(b, colors, loss_cols))
    parts += ['<h3 id="inputs">Inputs</h3>', inputs_table(builds, colors)]
    removed = removed_table(builds, colors)
    if removed is not None:
        parts += ['<h3 id="removed">Removed by the clean stage</h3>',
                  '<p class="note">Documents removed as exact or near duplicates (across '
                  "sources) or as sharing an n-gram with the eval sets, and synthesized pairs "
                  "cut from the chains that stay, by reason (instmix inspect BUILD --removed "
                  "lists them with their match).</p>", removed]
    if augmented_names(builds):
        parts += ['<h2 id="augmented">Augmented sources</h2>',
                  '<p class="note">Composition of each augmented source as tokenized (all of '
                  "its documents, before drawing): texts, their instruction-response pairs, "
                  "chains of texts per document, pair kinds and template layouts.</p>",
                  augmented_table(builds, colors)]
    parts += ['<h2 id="provenance">Provenance</h2>', provenance(builds)]
    for b in builds:
        n = len(b.manifest["shards"])
        opened = " open" if n <= 8 else ""
        parts.append(f"<details{opened}><summary>{escape(b.label)}: {n:,} shard"
                     f"{'s' if n != 1 else ''}</summary>{shards_table(b)}</details>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)
