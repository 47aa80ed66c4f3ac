"""The engine model (a test double of the GPU) and the scheduler against it: the barrier
effect, the prefix cache, continuous chains, and the failure rules."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from instmix.errors import InstmixError
from instmix.synth.block import Settings, make_encoder
from instmix.synth.config import SynthesizerConfig, load_augment_config
from instmix.synth.engines.base import EngineUnavailable, Request
from instmix.synth.engines.model import EngineModel
from instmix.synth.runner import augment

from .synth_helpers import read_parts, write_jsonl

MODEL = "instmix.synth.engines.model:EngineModel"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ("river sea town farm market bridge winter harvest school library music engine "
         "garden letter window mountain story").split()


def texts(n, seed=0, lo=20, hi=60):
    import random

    rng = random.Random(seed)
    return [f"Doc{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
            for i in range(n)]


def synth(tokdir, **options):
    base = {"max_num_seqs": 16, "max_num_batched_tokens": 2048, "num_kv_blocks": 4000,
            "output_min": 60, "output_max": 140, "cap_share": 0.1}
    return {"engine": MODEL, "model": "model", "tokenizer": tokdir, "max_model_len": 1024,
            "max_new_tokens": 200, "options": {**base, **options}}


def cfg_of(tmp, tokdir, out, *, n=120, rounds=3, block_size=24, **options):
    inp = tmp / "in.jsonl"
    if not inp.exists():
        write_jsonl(inp, texts(n))
    return load_augment_config({"synthesizer": synth(tokdir, **options), "rounds": rounds,
                                "block_size": block_size, "checkpoint_every": 5,
                                "sources": [{"name": "web", "paths": ["in.jsonl"]}],
                                "output": out}, base_dir=str(tmp))


def files(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".jsonl.zst")}


def run(cfg, schedule="continuous", **kw):
    engine = EngineModel(cfg.synthesizer, make_encoder(cfg.synthesizer).tok)
    stats = augment(cfg, engine=engine, settings=replace(Settings.of(cfg), schedule=schedule),
                    **kw)
    return stats, engine


# ---------------------------------------------------------------- the model itself ----

def _engine(tokdir, **options):
    cfg = SynthesizerConfig(**{**synth(tokdir, **options), "engine": MODEL})
    enc = make_encoder(cfg)
    return EngineModel(cfg, enc.tok), enc


def test_one_call_of_max_num_seqs_prompts_leaves_slots_idle(tiny_tokenizer):
    """The barrier effect: a call waits for its slowest sequence, so with answers of
    60-140 tokens against a 200-token cap, well under the slots stay busy."""
    engine, enc = _engine(tiny_tokenizer)
    reqs = [Request(str(i), enc.prompt_ids(t)) for i, t in enumerate(texts(16))]
    res = engine.generate(reqs)
    assert sorted(r.id for r in res) == sorted(r.id for r in reqs)
    assert 0.5 <= engine.occupancy <= 0.8
    lengths = [r.output_tokens for r in res]
    assert min(lengths) < 0.6 * max(lengths) <= 200  # a long tail: the slowest sets the pace
    # the same prompts fed continuously (a new one as each finishes) keep the slots busy
    fed, enc = _engine(tiny_tokenizer)
    more = [Request(str(i), enc.prompt_ids(t)) for i, t in enumerate(texts(160, seed=1))]
    fed.submit(more[:16])
    k, done = 16, 0
    while done < len(more):
        got = fed.poll()
        done += len(got)
        fed.submit(more[k:k + len(got)])
        k += len(got)
    assert fed.occupancy > 0.9


def test_answers_are_a_function_of_the_prompt(tiny_tokenizer):
    a, enc = _engine(tiny_tokenizer)
    b, _ = _engine(tiny_tokenizer, max_num_seqs=3)
    reqs = [Request(str(i), enc.prompt_ids(t)) for i, t in enumerate(texts(10))]
    ra = {r.id: (r.text, r.output_tokens, r.finish_reason) for r in a.generate(reqs)}
    rb = {r.id: (r.text, r.output_tokens, r.finish_reason) for r in b.generate(reqs[::-1])}
    assert ra == rb
    assert all("<QUE>" in t and "<ANS>" in t for t, _, _ in ra.values())


def test_prefix_cache_hits_and_lru_eviction(tiny_tokenizer):
    engine, enc = _engine(tiny_tokenizer)
    first = enc.prompt_ids(texts(1)[0])
    (r1,) = engine.generate([Request("a", first)])
    longer = first + [5] * 40
    (r2,) = engine.generate([Request("b", longer)])
    assert r1.cached_tokens == 0
    assert r2.cached_tokens == len(first) // 16 * 16  # whole blocks of the shared prefix
    # a cache too small to keep it: the blocks are evicted by the prompts in between
    small, enc = _engine(tiny_tokenizer, num_kv_blocks=40)
    small.generate([Request("a", first)])
    small.generate([Request(f"x{i}", enc.prompt_ids(t)) for i, t in enumerate(texts(3, 5))])
    (r3,) = small.generate([Request("b", longer)])
    assert r3.cached_tokens == 0


def test_model_options_are_checked(tiny_tokenizer):
    with pytest.raises(InstmixError, match="options.max_seqs: unknown"):
        _engine(tiny_tokenizer, max_seqs=3)


# ---------------------------------------------------------------- the scheduler -------

def test_continuous_chains_fill_the_slots_and_hit_the_cache(tmp_path, tiny_tokenizer):
    old, old_engine = run(cfg_of(tmp_path, tiny_tokenizer, "old", n=240), "barrier")
    new, new_engine = run(cfg_of(tmp_path, tiny_tokenizer, "new", n=240))
    assert new_engine.occupancy > 0.85 > 2 * old_engine.occupancy
    assert new["totals"]["prefix_hit_rate"] >= 0.8
    assert new["totals"]["prefix_cache"]["reusable_tokens"] > 0
    assert new["totals"]["continued_chains"] > 0
    # parts are a pure function of the plan: same bytes whatever the schedule
    assert files(str(tmp_path / "new")) == files(str(tmp_path / "old"))
    # and whatever the engine's slot count (timing)
    narrow, _ = run(cfg_of(tmp_path, tiny_tokenizer, "narrow", n=240, max_num_seqs=3))
    assert files(str(tmp_path / "narrow")) == files(str(tmp_path / "new"))
    # num_cached_tokens per entry, beside the parts
    caches = [n for n in os.listdir(tmp_path / "new" / "_state") if n.startswith("cache-")]
    assert len(caches) == len(files(str(tmp_path / "new")))


def test_dead_engine_stops_the_run_and_resume_equals_uninterrupted(tmp_path, tiny_tokenizer):
    run(cfg_of(tmp_path, tiny_tokenizer, "ref"))
    for step in (150, 350):
        with pytest.raises(EngineUnavailable, match="died at step"):
            run(cfg_of(tmp_path, tiny_tokenizer, "run", die_at_step=step))
        parts = read_parts(str(tmp_path / "run"))
        assert parts and all(e["status"] != "failed" for es in parts.values() for e in es)
    stats, _ = run(cfg_of(tmp_path, tiny_tokenizer, "run"))
    assert stats["complete"] and "failed" not in stats["totals"]["status"]
    assert files(str(tmp_path / "run")) == files(str(tmp_path / "ref"))


def test_dead_engine_cli_exits_with_one_line(tmp_path, tiny_tokenizer):
    cfg = cfg_of(tmp_path, tiny_tokenizer, "cli", die_at_step=150)
    data = {"synthesizer": dict(synth(tiny_tokenizer, die_at_step=150)), "rounds": 3,
            "block_size": 24, "sources": [{"name": "web", "paths": ["in.jsonl"]}],
            "output": "cli"}
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(data))
    r = subprocess.run([sys.executable, "-m", "instmix", "augment", str(path),
                        "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("instmix: error: engine model died at step 150")
    assert not os.path.exists(os.path.join(cfg.output, "_state", "block-000000.json"))


def test_systematic_failures_stop_the_run(tmp_path, tiny_tokenizer):
    with pytest.raises(InstmixError, match=r"synthesis stopped: \d+ of the last \d+ prompts "
                       r"failed \(max_failure_rate 0.1"):
        run(cfg_of(tmp_path, tiny_tokenizer, "bad", fail_on="river"))


def test_retry_failed_makes_failed_entries_again(tmp_path, tiny_tokenizer):
    ref, _ = run(cfg_of(tmp_path, tiny_tokenizer, "ref"))
    stats, _ = run(cfg_of(tmp_path, tiny_tokenizer, "run", fail_on="Doc7 "))
    assert stats["complete"] and stats["totals"]["status"]["failed"] == 1
    failed = [e for es in read_parts(str(tmp_path / "run")).values() for e in es
              if e["status"] == "failed"]
    assert [e["id"] for e in failed] == ["web/in.jsonl:8#0"]
    again, _ = run(cfg_of(tmp_path, tiny_tokenizer, "run"))  # plain resume: nothing to do
    assert again["totals"]["status"]["failed"] == 1 and again["sessions"][-1]["texts"] == 0
    fixed, _ = run(cfg_of(tmp_path, tiny_tokenizer, "run"), retry_failed=True)
    assert "failed" not in fixed["totals"]["status"] and fixed["complete"]
    assert 0 < fixed["sessions"][-1]["texts"] < fixed["totals"]["texts"]
    assert files(str(tmp_path / "run")) == files(str(tmp_path / "ref"))


def test_failed_entries_are_never_rendered(tmp_path, tiny_tokenizer):
    from instmix.config import SourceConfig
    from instmix.synth.kind import AugmentedKind

    run(cfg_of(tmp_path, tiny_tokenizer, "run", fail_on="Doc7 "))
    folder = str(tmp_path / "run")
    paths = sorted(os.path.join(folder, n) for n in files(folder))
    stats = {}
    docs = list(AugmentedKind().documents(SourceConfig(name="a", paths=(folder,),
                                                       kind="augmented"),
                                          paths, "a", skip_bad=False, stats=stats))
    assert stats == {"failed_entry": 1}
    assert docs and not any("Doc7 " in d.text for d in docs)


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip"])
def test_damaged_part_of_a_finished_block_is_made_again(tmp_path, tiny_tokenizer, damage):
    run(cfg_of(tmp_path, tiny_tokenizer, "ref"))
    run(cfg_of(tmp_path, tiny_tokenizer, "run"))
    victim = tmp_path / "run" / "part-000001-r1-0000.jsonl.zst"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[:len(data) // 2])
    elif damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    stats, _ = run(cfg_of(tmp_path, tiny_tokenizer, "run"))
    assert stats["complete"] and 0 < stats["sessions"][-1]["texts"] < stats["totals"]["texts"]
    assert files(str(tmp_path / "run")) == files(str(tmp_path / "ref"))


def test_resume_with_another_model_is_refused(tmp_path, tiny_tokenizer):
    cfg = cfg_of(tmp_path, tiny_tokenizer, "run")
    run(cfg)
    other = replace(cfg, synthesizer=replace(cfg.synthesizer, model="other-model"))
    with pytest.raises(InstmixError, match="differs in: model"):
        run(other)
