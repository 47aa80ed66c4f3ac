"""Issue 10 regressions, build folders and verify: each test is a reported reproduction."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import config, read_tree, write_jsonl

import instmix
from instmix.errors import InstmixError, VerifyError
from instmix.format.manifest import MANIFEST, dump_manifest, load_manifest, seal
from instmix.format.verify import verify

ROWS = [{"question": f"Question {i}?", "response": f"The answer is {i}."} for i in range(60)]


def build(cfg):
    return instmix.build(instmix.load_config(cfg))


@pytest.fixture()
def cfg(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"plain text {i}"} for i in range(60)])
    return config(tmp_path, [{"name": "qa", "kind": "openorca", "loss": "responses",
                              "paths": [a]}, {"name": "raw", "paths": [b]}],
                  shard_tokens=300)


# item 1: only an instmix build (recognised by content) is ever replaced

def test_a_folder_with_someone_elses_manifest_is_not_wiped(cfg):
    out = cfg["output"]
    os.makedirs(out)
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump({"name": "my web app", "version": "1.0"}, f)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write("<html>")
    before = read_tree(out)
    with pytest.raises(InstmixError, match=r"manifest.json is not an instmix build manifest"):
        build(cfg)
    assert read_tree(out) == before


def test_a_build_folder_holding_user_files_is_not_replaced(cfg):
    build(cfg)
    notes = os.path.join(cfg["output"], "notes.txt")
    with open(notes, "w") as f:
        f.write("mine")
    with pytest.raises(InstmixError, match=r"holds files that are not part of its build "
                                           r"\(notes.txt\)"):
        build(cfg)
    os.remove(notes)
    build(cfg)  # an intact earlier build is replaced


def test_a_damaged_manifest_is_not_taken_for_a_build(cfg):
    build(cfg)
    with open(os.path.join(cfg["output"], MANIFEST), "wb") as f:
        f.write(b"{trunc")
    with pytest.raises(InstmixError, match=r"invalid JSON .* not recognisably an instmix build"):
        build(cfg)


# item 2: user folders named like old stages survive

def test_user_folders_named_like_old_stages_are_kept(cfg, tmp_path):
    build(cfg)
    mine = [tmp_path / "out.old-123", tmp_path / "out.old-mine", tmp_path / "out.tmp-9",
            tmp_path / "out.instmix-old-1@x@1-abcdef01"]
    for d in mine:
        d.mkdir()
        (d / "data.txt").write_text("precious")
    build(cfg)
    build(cfg)
    assert all((d / "data.txt").read_text() == "precious" for d in mine)


# item 13: verify is self-checking

def _edit(out, change):
    path = os.path.join(out, MANIFEST)
    data = json.load(open(path))
    change(data)
    with open(path, "wb") as f:
        f.write(dump_manifest(data))
    return data


def _reseal(out, change):
    """An edit whose author also recomputed the manifest checksum."""
    path = os.path.join(out, MANIFEST)
    data = json.load(open(path))
    change(data)
    with open(path, "wb") as f:
        f.write(dump_manifest(seal(data)))


EDITS = {
    "seed": lambda d: d.update(seed=d["seed"] + 1),
    "vocab_size": lambda d: d["tokenizer"].update(vocab_size=d["tokenizer"]["vocab_size"] + 1),
    "loss_tokens": lambda d: d.update(loss_tokens=d["loss_tokens"] - 1),
    "kind": lambda d: d["sources"][1].update(kind="openorca"),
    "loss": lambda d: d["sources"][0].update(loss="all"),
    "layout": lambda d: d.update(layout="per_source"),
    "mask entry": lambda d: [d["shards"][0].pop(k) for k in ("mask", "mask_sha256")],
    "shard path": lambda d: d["shards"][0].update(path="../elsewhere.npy"),
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_a_hand_edit_of_the_manifest_is_caught(cfg, what):
    build(cfg)
    verify(cfg["output"])
    _edit(cfg["output"], EDITS[what])
    with pytest.raises(VerifyError, match=r"manifest.json: content differs from its "
                                          r"manifest_sha256"):
        verify(cfg["output"])


RESEALED = {
    "vocab_size": (EDITS["vocab_size"], r"tokenizer.vocab_size is 50281; tokenizer.json has "
                                        r"50280 ids"),
    "loss_tokens": (EDITS["loss_tokens"], r"manifest.json: loss_tokens is .*; the shards hold"),
    "layout": (EDITS["layout"], r"part-00000.npy: not sources/<name>/ of its one source"),
    "mask entry": (EDITS["mask entry"], r"1 of \d+ shards have no mask entry"),
    "shard path": (EDITS["shard path"], r"shards\[0\].path: '../elsewhere.npy' is outside"),
    "source tokens": (lambda d: d["sources"][0].update(tokens=d["sources"][0]["tokens"] + 1),
                      r"source 'qa': shards hold"),
}


@pytest.mark.parametrize("what", sorted(RESEALED))
def test_sums_and_paths_are_recomputed_even_when_the_checksum_was_redone(cfg, what):
    build(cfg)
    change, message = RESEALED[what]
    _reseal(cfg["output"], change)
    with pytest.raises(VerifyError, match=message):
        verify(cfg["output"])


def test_a_foreign_shard_in_the_build_is_listed(cfg):
    m = build(cfg)
    out = cfg["output"]
    shutil.copy(os.path.join(out, m["shards"][0]["path"]), os.path.join(out, "part-00099.npy"))
    with pytest.raises(VerifyError, match=r"part-00099.npy: not part of the build"):
        verify(out)


def test_version_1_builds_are_still_read_and_verified(cfg):
    build(cfg)
    out = cfg["output"]

    def to_v1(d):
        for k in ("format", "manifest_sha256"):
            d.pop(k)
        d["format_version"] = 1
        for s in d["shards"]:
            s.pop("index_sha256")

    _edit(out, to_v1)
    assert load_manifest(out)["format_version"] == 1
    assert verify(out)["shards"] >= 2
    build(cfg)  # an earlier (version 1) build is recognised and replaced
    assert load_manifest(out)["format_version"] == 2
