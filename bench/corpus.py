"""Prepare the benchmark corpus: real English technical prose from Debian documentation
packages (Linux kernel docs, GPL-2.0; Python 3.11 docs, PSF-2.0; Perl docs, Artistic/GPL;
Git docs, GPL-2.0; Django docs, BSD-3-Clause, HTML reduced to its text; SQLAlchemy docs,
MIT), one document per source file, as ``.jsonl.zst`` shards.

    python bench/corpus.py            # -> bench/data/corpus/*.jsonl.zst (about 55 MB of text)

Needs ``apt-get download`` (Debian's registry) and ``dpkg -x``; nothing is installed.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import subprocess
from html.parser import HTMLParser

import zstandard

PACKAGES = ["linux-doc-6.1", "python3.11-doc", "perl-doc", "git-doc", "python-django-doc",
            "python-sqlalchemy-doc"]
PATTERNS = [
    ("linux", "usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz", "translations/"),
    ("python", "usr/share/doc/python3.11/html/_sources/**/*.rst.txt", None),
    ("perl", "usr/share/perl/*/pod/*.pod", None),
    ("perl", "usr/share/perl/**/*.pod", "/pod/"),
    ("git", "usr/share/doc/git-doc/*.txt*", None),
    ("django", "usr/share/doc/python-django-doc/html/**/*.html", "/_modules/"),
    ("sqlalchemy", "usr/share/doc/python-sqlalchemy-doc/**/*.rst", None),
]


class _Text(HTMLParser):
    """Visible text of an HTML page (script, style and navigation dropped)."""

    SKIP = {"script", "style", "nav", "head", "footer"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1
        elif tag in ("p", "div", "li", "pre", "h1", "h2", "h3", "h4", "tr", "br", "dt", "dd"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)

    def text(self) -> str:
        lines = (line.rstrip() for line in "".join(self.parts).splitlines())
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def fetch(debs: str, tree: str) -> None:
    os.makedirs(debs, exist_ok=True)
    for pkg in PACKAGES:
        if not glob.glob(os.path.join(debs, pkg + "_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True,
                           stdout=subprocess.DEVNULL)
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        subprocess.run(["dpkg", "-x", deb, tree], check=True)


def read(path: str) -> str:
    data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    text = data.decode("utf-8", errors="replace")
    if path.endswith(".html"):
        parser = _Text()
        parser.feed(text)
        text = parser.text()
    return text


def documents(tree: str):
    seen = set()
    for label, pattern, exclude in PATTERNS:
        for path in sorted(glob.glob(os.path.join(tree, pattern), recursive=True)):
            if path in seen or (exclude and exclude in path):
                continue
            seen.add(path)
            text = read(path)
            if len(text.strip()) > 200:
                yield {"id": f"{label}/{os.path.relpath(path, tree)}", "text": text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/data/corpus")
    ap.add_argument("--work", default="bench/data/debian")
    ap.add_argument("--shard-mb", type=float, default=8.0)
    args = ap.parse_args()
    tree = os.path.join(args.work, "tree")
    fetch(os.path.join(args.work, "debs"), tree)
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "*.jsonl.zst")):
        os.remove(old)
    shard, size, n, total = [], 0, 0, 0
    cctx = zstandard.ZstdCompressor(level=3)

    def flush():
        nonlocal shard, size, n
        if shard:
            path = os.path.join(args.out, f"part-{n:03d}.jsonl.zst")
            with open(path, "wb") as f:
                f.write(cctx.compress("".join(shard).encode("utf-8")))
            shard, size, n = [], 0, n + 1

    docs = 0
    for doc in documents(tree):
        line = json.dumps(doc, ensure_ascii=False) + "\n"
        shard.append(line)
        size += len(doc["text"])
        total += len(doc["text"].encode("utf-8"))
        docs += 1
        if size >= args.shard_mb * 1e6:
            flush()
    flush()
    print(f"{args.out}: {docs:,} documents, {total / 1e6:.1f} MB of text in {n} files")


if __name__ == "__main__":
    main()
