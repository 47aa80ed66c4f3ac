"""Run ``instmix build CONFIG`` in this process, optionally stopping at an exact point.

Usage: python build_runner.py MODE CONFIG

MODE:
  plain            the build as the CLI runs it
  kill-exchange    SIGKILL itself right after renameat2(RENAME_EXCHANGE) swapped the folders
  kill-renames     without exchange: SIGKILL itself between the two renames of the swap
  slow-publish     sleep 3 s with the stage complete, right before it is swapped in

Prints ``ready`` on stdout once imports are done, so a parent can time kills on the work.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from instmix.cli.main import main
from instmix.io import atomic


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(mode: str, output: str) -> None:
    if mode == "kill-exchange":
        real = atomic._exchange

        def exchange(a, b):
            done = real(a, b)
            if done:
                _kill()
            return done

        atomic._exchange = exchange
    elif mode == "kill-renames":
        atomic._exchange = lambda a, b: False
        real_rename = os.rename

        def rename(a, b):
            if os.path.abspath(b) == output and ".instmix-tmp-" in os.path.basename(a):
                _kill()  # the old folder is already moved aside; the new one not yet in
            real_rename(a, b)

        atomic.os.rename = rename
    elif mode == "slow-publish":
        real_swap = atomic.swap_dir

        def swap(new, dest, **kw):
            time.sleep(3)
            return real_swap(new, dest, **kw)

        import instmix.builder.pipeline as pipeline

        pipeline.swap_dir = swap
    elif mode != "plain":
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    mode, cfg = sys.argv[1], sys.argv[2]
    import yaml

    with open(cfg) as f:
        out = os.path.abspath(yaml.safe_load(f)["output"])
    install(mode, out)
    print("ready", flush=True)
    sys.exit(main(["build", cfg, "--no-progress"]))
