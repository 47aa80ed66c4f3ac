"""``instmix inspect DIR``: the summary of a build and a few decoded documents."""

from __future__ import annotations

from instmix.builder.inspection import decoded_documents, removed_lines
from instmix.builder.summary import print_summary
from instmix.format.manifest import load_manifest


def register(sub) -> None:
    p = sub.add_parser("inspect", help="print a build's summary and decode a few documents")
    p.add_argument("build", help="build folder (holds manifest.json)")
    p.add_argument("-n", "--docs", type=int, default=3, help="documents to decode (default 3)")
    p.add_argument("--source", help="only documents of this source")
    p.add_argument("--no-summary", action="store_true", help="only the documents")
    p.add_argument("--removed", action="store_true",
                   help="list what the clean stage removed: reason and the matching "
                        "document or eval record")
    p.add_argument("--chars", type=int, default=400,
                   help="show at most this many characters per document (0: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    m = load_manifest(args.build)
    if not args.no_summary:
        print_summary(m.data, title=m.root)
    if args.removed:
        for line in removed_lines(m, args.source):
            print(line)
        return 0
    for doc in decoded_documents(m, args.docs, args.source):
        text = doc["text"]
        if args.chars and len(text) > args.chars:
            text = text[:args.chars] + f" [... {len(doc['text']) - args.chars:,} more chars]"
        print(f"\n--- {doc['shard']} [{doc['start']}:{doc['end']}] {doc['src']} {doc['id']} "
              f"({doc['end'] - doc['start']:,} tokens)")
        print(text)
    return 0
