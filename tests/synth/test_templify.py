"""``instmix templify``: renders the first chains exactly as the build would."""

import json

import yaml

from instmix.cli.main import main
from instmix.synth.kind import iter_chains
from instmix.synth.templates import render_chain


def _entries(path):
    rows = []
    for c in range(3):
        for r in range(2):
            rows.append({"id": f"t{c}{r}#0", "source_id": f"t{c}{r}", "chain_id": f"t{c}0#0",
                         "round": r, "context": f"Context {c}.{r} about rivers.",
                         "pairs": [{"question": f"Question {c}.{r}?", "answer": f"Answer {c}.{r}.",
                                    "kind": "qa"}], "status": "ok"})
    path.write_text("".join(json.dumps(x) + "\n" for x in rows))
    return str(path)


def test_templify_file(tmp_path, capsys):
    f = _entries(tmp_path / "aug.jsonl")
    assert main(["templify", f, "-n", "2", "--seed", "5", "--color", "never"]) == 0
    out = capsys.readouterr().out
    chains = list(iter_chains([f], skip_bad=False, stats={}))
    expected = "".join(
        f"--- {f}: chain {cid} (2 entries; layouts {', '.join(r.layouts)}; seed 5)\n{r.text}\n\n"
        for cid, entries in chains[:2] for r in [render_chain(entries, 5, cid)])
    assert out == expected


def test_templify_build_config_uses_the_source_seed(tmp_path, capsys):
    f = _entries(tmp_path / "aug.jsonl")
    cfg = tmp_path / "build.yaml"
    cfg.write_text(yaml.safe_dump({
        "tokenizer": "tok.json", "output": "out",
        "sources": [{"name": "aug", "kind": "augmented", "paths": ["aug.jsonl"],
                     "options": {"template_seed": 9}}]}))
    assert main(["templify", str(cfg), "-n", "1", "--color", "always"]) == 0
    out = capsys.readouterr().out
    cid, entries = next(iter_chains([f], skip_bad=False, stats={}))
    r = render_chain(entries, 9, cid)
    assert out.startswith(f"--- aug: chain {cid} (2 entries; layouts ") and "seed 9)" in out
    assert "\033[1;32mAnswer 0.0.\033[0m" in out
    assert out.replace("\033[1;32m", "").replace("\033[0m", "").endswith(r.text + "\n\n")
