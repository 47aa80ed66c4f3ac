"""``instmix report``: the files, the figures, the numbers, comparisons and bad input."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from conftest import ROOT, config, write_jsonl

import instmix
from instmix.builder.sweep import sweep
from instmix.errors import InstmixError
from instmix.format.manifest import load_manifest
from instmix.format.reader import read_index
from instmix.report import FIGURES, write_report
from instmix.report.data import labels_for, load_builds, running_share

pytest.importorskip("matplotlib")

QUICKSTART = ROOT / "examples" / "quickstart"
CORE = ["share", "running_share", "doc_lengths", "repetitions"]
AUGMENTED = ["pairs_per_text", "pair_kinds", "layouts"]
ODD_ID = 'odd, "quoted"\nid'  # a comma, quotes and a newline: the index quotes it


def quickstart_config(out, cache, **changes):
    data = yaml.safe_load((QUICKSTART / "mix.yaml").read_text())
    data.update(output=str(out), cache_dir=str(cache))
    for src in data["sources"]:
        src.update(changes.pop(src["name"], {}))
    data.update(changes)
    return instmix.load_config(data, base_dir=str(QUICKSTART))


def quickstart_build(out, cache, **changes):
    instmix.build(quickstart_config(out, cache, **changes))
    return str(out)


@pytest.fixture(scope="module")
def builds(tmp_path_factory, paragraphs):
    """a/out: the quickstart (augmented + raw + orca); b/out: other ratios and seed;
    plain: raw text and OpenOrca rows only, odd ids; split: the quickstart per_source."""
    tmp = tmp_path_factory.mktemp("report-builds")
    cache = tmp / "cache"
    a = quickstart_build(tmp / "sweep" / "a" / "out", cache)
    b = quickstart_build(tmp / "sweep" / "b" / "out", cache, seed=5,
                         augmented={"ratio": 2}, orca={"max_repetition": 4})
    split = quickstart_build(tmp / "split", cache, layout="per_source")
    raw = write_jsonl(tmp / "in" / "raw.jsonl", [{"text": p, "id": f"{ODD_ID}-{i}"}
                                                 for i, p in enumerate(paragraphs[:200])])
    orca = write_jsonl(tmp / "in" / "orca.jsonl",
                       [{"question": p[: len(p) // 2], "response": p[len(p) // 2:]}
                        for p in paragraphs[200:500]])
    cfg = config(tmp, [{"name": "raw", "paths": [raw], "id_field": "id", "ratio": 3},
                       {"name": "orca", "paths": [orca], "kind": "openorca", "ratio": 1}],
                 output=str(tmp / "plain"), cache_dir=str(cache), shard_tokens=2500)
    instmix.build(instmix.load_config(cfg))
    masked = {"augmented": {"loss": "responses"}, "orca": {"loss": "responses"}}
    sweep(quickstart_config(tmp / "sweep-masked", cache, **masked),
          [{"augmented": 2}, {"augmented": 0.5}, {"augmented": 0}])
    lossby = quickstart_build(tmp / "lossby", cache, ratio_by="loss_tokens", **masked)
    return {"a": a, "b": b, "plain": str(tmp / "plain"), "split": split, "tmp": tmp,
            "sweep": str(tmp / "sweep-masked"), "lossby": lossby}


@pytest.fixture(scope="module")
def single(builds):
    out = builds["tmp"] / "report-single"
    write_report([builds["a"]], str(out))
    return out


@pytest.fixture(scope="module")
def pair(builds):
    out = builds["tmp"] / "report-pair"
    write_report([builds["a"], builds["b"]], str(out))
    return out


class Page(HTMLParser):
    """Images, and table cells by (build, source or field/shard, data-field)."""

    def __init__(self, text: str):
        super().__init__()
        self.imgs: list[dict] = []
        self.cells: dict[tuple, tuple[str, str]] = {}
        self.rows: list[dict] = []
        self._row: dict | None = None
        self._cell: tuple | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "tr":
            self._row = a
            self.rows.append(a)
        elif tag == "td" and "data-field" in a and self._row is not None:
            key = (self._row.get("data-build"), self._row.get("data-source")
                   or self._row.get("data-shard") or self._row.get("data-field")
                   or ("total" if self._row.get("data-total") else None), a["data-field"])
            self._cell, self._text = key, []
            self.cells[key] = (a.get("data-value"), "")

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells[self._cell] = (self.cells[self._cell][0], "".join(self._text).strip())
            self._cell = None


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_files_and_figures(single):
    html = (single / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    names = [img["data-figure"] for img in page.imgs]
    assert names == CORE + AUGMENTED == list(FIGURES)
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data == (single / f"{img['data-figure']}.png").read_bytes()
        w, h = png_size(data)
        assert 900 <= w <= 1100 and 150 <= h <= 2000, (img["data-figure"], w, h)
        assert len(data) > 8000
    assert sorted(os.listdir(single)) == sorted(["report.html"] +
                                                [f"{n}.png" for n in CORE + AUGMENTED])
    low = html.lower()  # self-contained: nothing to fetch, nothing to run
    for bad in ("<script", "<link", "http://", "https://", "src=\"file"):
        assert bad not in low


def test_numbers_equal_the_manifest(builds, single):
    m = load_manifest(builds["a"]).data
    page = Page((single / "report.html").read_text(encoding="utf-8"))
    label = "out"
    for s in m["sources"]:
        def cell(field, s=s):
            return page.cells[(label, s["name"], field)]

        assert cell("tokens") == (str(s["tokens"]), f"{s['tokens']:,}")
        assert cell("documents") == (str(s["documents"]), f"{s['documents']:,}")
        assert cell("available_tokens")[0] == str(s["available_tokens"])
        assert cell("target_tokens")[0] == str(s["target_tokens"])
        assert float(cell("target_ratio")[0]) == s["target_ratio"]
        assert cell("target_ratio")[1] == f"{s['target_ratio']:.2%}"
        assert float(cell("achieved_ratio")[0]) == s["achieved_ratio"]
        assert cell("achieved_ratio")[1] == f"{s['achieved_ratio']:.2%}"
        assert float(cell("repetitions")[0]) == s["repetitions"]
        assert float(cell("max_repetition")[0]) == s["max_repetition"]
        assert cell("kind")[0] == s["kind"]
    assert page.cells[(label, "total", "tokens")][0] == str(m["total_tokens"])
    assert sum(int(page.cells[(label, s["name"], "tokens")][0]) for s in m["sources"]) == \
        m["total_tokens"]
    tok = m["tokenizer"]
    prov = {k[1]: v for k, v in page.cells.items() if k[0] is None}
    assert prov["tokenizer sha256"][1] == tok["sha256"]
    assert prov["vocab_size"] == (str(tok["vocab_size"]), f"{tok['vocab_size']:,}")
    assert prov["eos_token_id"][1] == str(tok["eos_token_id"])
    assert prov["bos_token_id"][1] == "—"  # OLMo's tokenizer has no BOS
    assert prov["seed"][1] == str(m["seed"]) and prov["dtype"][1] == m["dtype"]
    assert prov["total_tokens"][0] == str(m["total_tokens"])
    for shard in m["shards"]:
        assert page.cells[(label, shard["path"], "sha256")][1] == shard["sha256"]
        assert page.cells[(label, shard["path"], "tokens")][0] == str(shard["tokens"])
    aug = next(s for s in m["sources"] if s["kind"] == "augmented")
    ppt = aug["composition"]["pairs_per_text"]
    assert page.cells[(label, "augmented", "texts")][0] == str(sum(ppt.values()))
    assert page.cells[(label, "augmented", "pairs")][0] == \
        str(sum(aug["composition"]["pair_kind"].values()))


def test_two_builds_compared(builds, pair, single):
    ma, mb = load_manifest(builds["a"]).data, load_manifest(builds["b"]).data
    html = (pair / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert [img["data-figure"] for img in page.imgs] == CORE + AUGMENTED
    for label, m in (("a/out", ma), ("b/out", mb)):  # same folder names: parents tell apart
        assert page.cells[(label, None, "total_tokens")][0] == str(m["total_tokens"])
        for s in m["sources"]:
            assert page.cells[(label, s["name"], "tokens")][0] == str(s["tokens"])
            assert float(page.cells[(label, s["name"], "target_ratio")][0]) == s["target_ratio"]
    assert float(page.cells[("b/out", "augmented", "target_ratio")][0]) == 0.5
    differs = [r["data-field"] for r in page.rows if r.get("class") == "differs"]
    assert "seed" in differs and "tokenizer sha256" not in differs
    # one running-share panel per build: the pair's figure is taller than the single one
    h1 = png_size((single / "running_share.png").read_bytes())[1]
    h2 = png_size((pair / "running_share.png").read_bytes())[1]
    assert h2 > h1 * 1.5


def test_augmented_figures_only_with_an_augmented_source(builds, tmp_path):
    out = tmp_path / "rep"
    write_report([builds["a"]], str(out))
    write_report([builds["plain"]], str(out))  # same folder: the stale figures go
    html = (out / "report.html").read_text(encoding="utf-8")
    assert [img["data-figure"] for img in Page(html).imgs] == CORE
    assert sorted(os.listdir(out)) == sorted(["report.html"] + [f"{n}.png" for n in CORE])
    assert 'id="augmented"' not in html


def test_index_reading_matches_the_exact_reader(builds):
    """Odd ids (comma, quotes, newline) and several shards; counts equal the manifest."""
    (b,) = load_builds([builds["plain"]])
    m = load_manifest(builds["plain"])
    assert len(m.shards) >= 4
    lengths = {"raw": [], "orca": []}
    for shard in m.shards:
        idx = read_index(m.path(shard["path"]))
        assert any(ODD_ID in i for i in idx.ids) or not any(s == "raw" for s in idx.src)
        for a, e, s in zip(idx.start, idx.end, idx.src):
            lengths[s].append(e - a)
    for s in m.sources:
        assert b.lengths[s["name"]].tolist() == lengths[s["name"]]
        assert int(b.lengths[s["name"]].sum()) == s["tokens"]
        assert len(b.lengths[s["name"]]) == s["documents"]
    final = b.curve.shares[-1]
    assert b.curve.tokens[-1] == m["total_tokens"]
    assert np.allclose(final, [s["achieved_ratio"] for s in m.sources])


def test_running_share_subsampled_exactly():
    rng = np.random.default_rng(3)
    n = 20_000
    codes = rng.integers(0, 3, n).astype(np.int32)
    lengths = rng.integers(1, 500, n).astype(np.int64)
    curve = running_share(lengths, codes, 3, points=300)
    assert len(curve.tokens) <= 300 and curve.tokens[-1] == lengths.sum()
    cum = np.cumsum(lengths)
    at = np.searchsorted(cum, curve.tokens)
    assert np.array_equal(cum[at], curve.tokens)  # every point is a document boundary
    for j in range(3):
        exact = np.cumsum(np.where(codes == j, lengths, 0))[at] / cum[at]
        assert np.allclose(curve.shares[:, j], exact)
    assert np.allclose(curve.shares.sum(axis=1), 1)
    gaps = np.diff(curve.tokens)
    assert gaps.max() < 3 * lengths.sum() / 300  # evenly spaced in tokens
    small = running_share(lengths[:50], codes[:50], 3, points=300)
    assert len(small.tokens) == 50


def test_per_source_layout_has_no_running_share(builds, tmp_path):
    write_report([builds["split"]], str(tmp_path / "one"))
    names = [i["data-figure"] for i in Page((tmp_path / "one" / "report.html").read_text()).imgs]
    assert names == ["share", "doc_lengths", "repetitions"] + AUGMENTED
    write_report([builds["split"], builds["plain"]], str(tmp_path / "two"))
    html = (tmp_path / "two" / "report.html").read_text()
    assert "running_share" in [i["data-figure"] for i in Page(html).imgs]
    assert "Not shown: split (per_source layout" in html


def test_a_folder_of_builds_stands_for_them(builds, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    os.symlink(builds["b"], sweep / "r2")
    os.symlink(builds["a"], sweep / "r1")
    (sweep / "notes").mkdir()  # not a build: passed over
    loaded = load_builds([str(sweep)])
    assert [b.label for b in loaded] == ["r1", "r2"]
    assert [b.manifest["seed"] for b in loaded] == [1234, 5]
    assert labels_for(["/x/a/out", "/x/b/out"]) == ["a/out", "b/out"]
    assert labels_for(["/x/a", "/y/b"]) == ["a", "b"]
    assert labels_for(["/x/a", "/y/a"]) == ["x/a", "y/a"]


def test_sweep_and_loss_masks(builds, tmp_path):
    """A sweep's folder in the order it was asked for; loss modes, loss tokens and shares;
    with ratio_by: loss_tokens the difference to the plan is taken in loss tokens."""
    out = tmp_path / "rep"
    write_report([builds["sweep"], builds["lossby"]], str(out))
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    labels = ["augmented=2", "augmented=0.5", "augmented=0", "lossby"]
    assert [r["data-build"] for r in page.rows if "data-build" in r
            and not r.get("data-source") and not r.get("data-shard")
            and not r.get("data-total")] == labels
    assert [i["data-figure"] for i in page.imgs] == CORE + AUGMENTED
    for label in labels:
        root = os.path.join(builds["sweep"], label) if "=" in label else builds["lossby"]
        m = load_manifest(root).data
        assert page.cells[(label, "total", "loss_tokens")][0] == str(m["loss_tokens"])
        for s in m["sources"]:
            def cell(field, s=s, label=label):
                return page.cells[(label, s["name"], field)]

            assert cell("loss")[0] == s["loss"]
            assert cell("loss_tokens")[0] == str(s["loss_tokens"])
            assert float(cell("achieved_loss_ratio")[0]) == s["achieved_loss_ratio"]
            counted = s["achieved_loss_ratio"] if m["ratio_by"] == "loss_tokens" \
                else s["achieved_ratio"]
            assert float(cell("delta_pp")[0]) == pytest.approx((counted - s["target_ratio"])
                                                               * 100)
    assert page.cells[("augmented=2", "raw", "loss")][0] == "all"
    assert page.cells[("augmented=2", "orca", "loss")][0] == "responses"
    assert page.cells[("augmented=0", "augmented", "tokens")][0] == "0"


def fake_build(tmp_path, src_build, name="fake"):
    dst = tmp_path / name
    shutil.copytree(src_build, dst)
    return dst


def test_bad_input_errors(builds, tmp_path):
    def error(*dirs, out=None):
        with pytest.raises(InstmixError) as e:
            write_report([str(d) for d in dirs], str(out or tmp_path / "rep"))
        msg = str(e.value)
        assert "\n" not in msg
        return msg

    assert error(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such folder"
    (tmp_path / "file.txt").write_text("x")
    assert "not a folder" in error(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    assert error(tmp_path / "empty") == (f"{tmp_path / 'empty'}: not an instmix build (no "
                                         "manifest.json, and no build folders inside it)")
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    assert "invalid JSON" in error(bad)
    f = fake_build(tmp_path, builds["plain"], "nokey")
    m = json.loads((f / "manifest.json").read_text())
    del m["shards"]
    (f / "manifest.json").write_text(json.dumps(m))
    assert error(f) == f"{f / 'manifest.json'}: missing key 'shards'; not a complete instmix build"
    f = fake_build(tmp_path, builds["plain"], "noindex")
    os.remove(f / "part-00001.csv.gz")
    assert error(f).startswith(f"{f / 'part-00001.csv.gz'}: missing; the build is incomplete")
    f = fake_build(tmp_path, builds["a"], "short")
    with gzip.open(f / "part-00000.csv.gz", "rb") as g:
        lines = g.read().split(b"\n")
    with gzip.open(f / "part-00000.csv.gz", "wb") as g:
        g.write(b"\n".join(lines[2:]))
    assert "documents, but manifest.json says" in error(f)
    f = fake_build(tmp_path, builds["a"], "garbled")
    with gzip.open(f / "part-00000.csv.gz", "wb") as g:
        g.write(b"0,10,x,raw\nzero,20,y,raw\n")
    assert error(f) == (f"{f / 'part-00000.csv.gz'}:2: start/end are not integers: "
                        "['zero', '20', 'y', 'raw']")
    f = fake_build(tmp_path, builds["plain"], "stranger")
    m = json.loads((f / "manifest.json").read_text())
    m["sources"] = [s for s in m["sources"] if s["name"] != "orca"]
    (f / "manifest.json").write_text(json.dumps(m))
    assert "source 'orca' is not in manifest.json" in error(f)
    assert "the same build is given twice" in error(builds["a"], builds["a"])
    assert "is a build folder" in error(builds["a"], out=builds["plain"])
    assert "not a folder" in error(builds["a"], out=tmp_path / "file.txt")


def test_missing_matplotlib_is_one_clear_line(builds, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InstmixError, match=r"needs matplotlib: pip install 'instmix\[report\]'"):
        write_report([builds["plain"]], str(tmp_path / "rep"))
    assert not (tmp_path / "rep").exists()


def test_cli(builds, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "cli-rep"
    r = subprocess.run([sys.executable, "-m", "instmix", "report", builds["a"], builds["plain"],
                        "--out", str(out), "--title", "ablation <1>"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out / 'report.html'} (2 build(s); figures: share.png")
    html = (out / "report.html").read_text()
    assert "<title>ablation &lt;1&gt;</title>" in html
    r = subprocess.run([sys.executable, "-m", "instmix", "report", str(tmp_path / "none")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == f"instmix: error: {tmp_path / 'none'}: no such folder\n"
    assert not (tmp_path / "instmix-report").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_page_renders_in_chromium(pair, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    moved = tmp_path / "moved.html"  # alone, away from its PNGs: the images are embedded
    shutil.copyfile(pair / "report.html", moved)
    r = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1200,3000", f"--screenshot={shot}", moved.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert img.shape[:2] == (3000, 1200)
    background = np.abs(img - img[5, 5]).sum(axis=2) > 30
    assert background.mean() > 0.3  # the white page and the figures cover the grey body
    ink = (img.sum(axis=2) < 300).mean()  # text, axes and dark bars
    assert ink > 0.005
    colors = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert colors > 200  # figures drawn, not an empty page
