"""The ``instmix`` command line. Each command lives in its own module with a
``register(subparsers)`` function; errors print as one line and exit with status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from instmix import __version__
from instmix.errors import InstmixError

COMMAND_MODULES = (
    "instmix.cli.build",
    "instmix.cli.inspection",
    "instmix.cli.verify",
    "instmix.cli.sweep",
    "instmix.cli.augment",
    "instmix.cli.templify",
    "instmix.cli.report",
    "instmix.cli.export",
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="instmix",
        description="Instruction Pre-Training data: synthesize, templify, mix by tokens, "
                    "and serve packed shards to trainers.")
    p.add_argument("--version", action="version", version=f"instmix {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="instmix: %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InstmixError as e:
        print(f"instmix: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("instmix: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
