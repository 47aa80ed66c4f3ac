"""A scripted stand-in for the synthesizer model: its output is a pure function of the
prompt, in the real output format, so the orchestration around it can be checked exactly.

Options (``synthesizer.options``): ``delay`` seconds per generate call; ``fail_on`` a
substring that makes the whole call raise when any prompt holds it; ``silent_on`` a
substring whose texts get an output with no valid pair; ``reverse`` return results in
reverse order; ``crash_after`` raise :class:`Crash` (not an ``Exception``: it stops the
run like a kill) on that many-th call.
"""

from __future__ import annotations

import re
import time

from instmix.synth.engines.base import Engine, Result

CALLS: list[list[str]] = []  # prompt texts of every generate call (in-process tests)
LENGTHS: list[list[int]] = []  # their lengths in tokens

_CON = re.compile(r"<CON> (.*?) </CON>", re.S)


def script(context: str) -> str:
    """The scripted output for a text: two pairs that name the text's first word."""
    word = context.split()[0] if context.split() else "it"
    return (f"<QUE> What does the text start with? <ANS> {word} </END>\n\n"
            f"<QUE> How long is it? <ANS> {len(context)} characters </END>")


class Crash(BaseException):
    """Stands for the process dying mid-run."""


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        self.opts = dict(cfg.options)
        self.calls = 0

    def generate(self, requests):
        prompts = [self.tokenizer.decode(r.prompt_ids, skip_special_tokens=False)
                   for r in requests]
        self.calls += 1
        if self.opts.get("crash_after") and self.calls >= self.opts["crash_after"]:
            raise Crash(f"crash on call {self.calls}")
        CALLS.append(prompts)
        LENGTHS.append([len(r.prompt_ids) for r in requests])
        if self.opts.get("delay"):
            time.sleep(float(self.opts["delay"]))
        fail = self.opts.get("fail_on")
        if fail and any(fail in p for p in prompts):
            raise RuntimeError(f"prompt holds {fail!r}")
        out = []
        for r, p in zip(requests, prompts):
            context = _CON.findall(p)[-1]
            silent = self.opts.get("silent_on")
            text = "no pairs here" if silent and silent in context else script(context)
            ids = self.tokenizer.encode_batch([text])[0]
            out.append(Result(r.id, text, len(ids) + 1, "stop"))
        return out[::-1] if self.opts.get("reverse") else out
