"""``instmix verify DIR``: re-check a build; exit 1 naming the first problem."""

from __future__ import annotations

import sys

from instmix.errors import VerifyError
from instmix.format.verify import verify


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-check checksums, dtype bounds, EOS and offsets")
    p.add_argument("build", help="build folder or URL (holds manifest.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        report = verify(args.build)
    except VerifyError as e:
        print(f"instmix verify: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"ok: {report['shards']} shard(s), {report['documents']:,} documents, "
          f"{report['tokens']:,} tokens verified")
    return 0
