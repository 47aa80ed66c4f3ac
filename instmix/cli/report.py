"""``instmix report DIR [DIR...]``: an HTML page and PNGs comparing mixtures."""

from __future__ import annotations

import os

from instmix.report import write_report


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write an HTML page (and PNGs) describing and comparing builds",
        description="Read build folders (manifest.json and the shard indexes, never the "
        "token files) and write a self-contained report.html with figures (token shares "
        "planned vs achieved, running share along the stream, document lengths, repetitions, "
        "augmented-source composition) and a provenance table, plus each figure as a PNG. "
        "A folder holding build folders (a sweep) stands for all of them.")
    p.add_argument("builds", nargs="+", metavar="DIR", help="build folder(s) to compare")
    p.add_argument("--out", default="instmix-report",
                   help="folder for report.html and the PNGs (default: ./instmix-report)")
    p.add_argument("--title", help="page title (default: names the builds)")
    p.set_defaults(func=run)


def run(args) -> int:
    files = write_report(args.builds, args.out, title=args.title)
    names = ", ".join(os.path.basename(p) for p in files.pngs)
    print(f"wrote {files.html} ({len(files.builds)} build(s); figures: {names})")
    return 0
