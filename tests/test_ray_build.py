"""The build on a local Ray cluster (a head and two CPU worker processes): the same files
as the local build; a worker killed mid-task is retried and the output is unchanged; a
cluster that cannot see the storage is a one-line error."""

from __future__ import annotations

import json
import os

import pytest
from conftest import config, read_tree, write_jsonl

import instmix
import instmix.io.fs
from instmix.builder.executor import make_executor
from instmix.builder.ray_executor import RayExecutor
from instmix.errors import InstmixError


@pytest.fixture(scope="module")
def ray_executor():
    os.environ.pop("RAY_ADDRESS", None)
    ex = RayExecutor(num_cpus=2)  # no address: starts a local Ray (a head and 2 workers)
    assert len(ex.worker_pids) == 2 and os.getpid() not in ex.worker_pids
    yield ex
    ex.close()


def test_make_executor_gives_the_ray_executor(ray_executor):
    ex = make_executor("ray")  # Ray is running: it is used, not started again
    assert isinstance(ex, RayExecutor) and not ex.started
    assert ex.map(len, [[1], [1, 2], []]) == [1, 2, 0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, paragraphs):
    root = tmp_path_factory.mktemp("rayin")
    files = [write_jsonl(root / "web" / f"{i}.jsonl", [{"text": p} for p in
                                                         paragraphs[i * 150:(i + 1) * 150]])
             for i in range(4)]
    qa = write_jsonl(root / "qa.jsonl", [{"question": p[:50], "response": p[50:]}
                                         for p in paragraphs[600:800]])
    return root, files, qa


def _cfg(tmp, root, qa, name, **kw):
    return config(tmp, [{"name": "web", "paths": [str(root / "web" / "*.jsonl")], "ratio": 0.6,
                         "max_repetition": 2},
                        {"name": "qa", "kind": "openorca", "paths": [qa], "ratio": 0.4,
                         "loss": "responses", "max_repetition": 2}],
                  output=str(tmp / name), cache_dir=str(tmp / f"{name}-cache"),
                  shard_tokens=7_000, **kw)


def test_ray_build_equals_the_local_build(tmp_path, inputs, ray_executor):
    root, _, qa = inputs
    for layout in ("interleaved", "per_source"):
        m = instmix.build(_cfg(tmp_path, root, qa, f"ray-{layout}", layout=layout),
                          executor=ray_executor)
        ref = instmix.build(_cfg(tmp_path, root, qa, f"local-{layout}", layout=layout))
        assert m == ref and len(m["shards"]) > 3
        assert read_tree(tmp_path / f"ray-{layout}") == read_tree(tmp_path / f"local-{layout}")
        # the Ray build tokenized into its own cache: same units, same token bytes (meta.json
        # names the backend each chose, which may differ: every backend gives the same ids)
        ray_cache = read_tree(tmp_path / f"ray-{layout}-cache")
        local_cache = read_tree(tmp_path / f"local-{layout}-cache")
        assert {k for k in ray_cache if "/" in k} == {k for k in local_cache if "/" in k}
        assert all(ray_cache[k] == local_cache[k] for k in local_cache
                   if "/" in k and not k.endswith("meta.json"))


def test_a_killed_worker_is_retried_and_the_output_is_unchanged(tmp_path, inputs,
                                                                ray_executor):
    root, _, qa = inputs
    markers = tmp_path / "killed"
    markers.mkdir()

    class KillOnce:  # defined here so Ray ships it by value to the workers
        """The first run of each kind of task SIGKILLs its own worker process mid-task."""

        def __init__(self, fn, folder):
            name = getattr(fn, "__name__", type(fn).__name__)
            self.fn, self.marker = fn, os.path.join(str(folder), name)

        def __call__(self, item):
            import signal

            if not os.path.exists(self.marker):
                with open(self.marker, "w") as f:
                    f.write(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return self.fn(item)

    class Killing(type(ray_executor)):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)
            self.started = False  # the module fixture owns the cluster

        def map(self, fn, items, **kw):
            return super().map(KillOnce(fn, markers), items, **kw)

    m = instmix.build(_cfg(tmp_path, root, qa, "ray"), executor=Killing(ray_executor))
    pids = {p.name: int(p.read_text()) for p in markers.iterdir()}
    assert set(pids) == {"UnitTokenizer", "write_shard_task"}
    assert os.getpid() not in pids.values()
    ref = instmix.build(_cfg(tmp_path, root, qa, "local"))
    assert m == ref
    assert read_tree(tmp_path / "ray") == read_tree(tmp_path / "local")


def test_a_cluster_that_cannot_see_the_storage_is_a_clear_error(tmp_path, inputs,
                                                               ray_executor, monkeypatch):
    """The object store is configured on this machine only (its endpoint and keys are in
    the driver's environment, set after the cluster started): the workers cannot see it."""
    from s3server import MotoS3, fresh_fs

    root, _, qa = inputs
    with MotoS3() as s3:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        fresh_fs()
        try:
            instmix.io.fs.filesystem("s3://x").mkdir("blind-bucket")
            cfg = _cfg(tmp_path, root, qa, "blind")
            cfg["cache_dir"] = "s3://blind-bucket/cache"
            with pytest.raises(InstmixError, match=r"s3://blind-bucket/cache: the Ray workers "
                               r"cannot read .*shared filesystem or an object store"):
                instmix.build(cfg, executor=ray_executor)
        finally:
            fresh_fs()


def test_s3_corpus_built_on_ray_verifies_and_serves_the_laptop_build(tmp_path, inputs,
                                                                       ray_executor):
    """The issue's "done when": inputs under s3://bucket/corpus/, the build to
    s3://bucket/builds/x on the Ray cluster (workers reach the store through the config's
    storage_options), verified, served by ShardDataset: the laptop's build of the same
    files, file for file; a sweep on Ray equals the local sweep."""
    from s3server import MotoS3, fresh_fs

    from instmix.builder.sweep import sweep
    from instmix.format.verify import verify
    from instmix.serve.shard_dataset import ShardDataset

    root, _, qa = inputs
    with MotoS3() as s3:
        opts = {"s3": {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}}
        fresh_fs()
        try:
            handle = instmix.io.fs.filesystem("s3://x", opts)
            handle.mkdir("corpus-bucket")
            for p in sorted(root.rglob("*.jsonl")):
                handle.put_file(str(p), f"corpus-bucket/corpus/{p.relative_to(root)}")
            url = "s3://corpus-bucket/builds/x"
            cfg = _cfg(tmp_path, root, qa, "unused")
            cfg["sources"][0]["paths"] = ["s3://corpus-bucket/corpus/web/*.jsonl"]
            cfg["sources"][1]["paths"] = ["s3://corpus-bucket/corpus/qa.jsonl"]
            cfg.update(output=url, cache_dir="s3://corpus-bucket/cache", storage_options=opts)
            m = instmix.build(cfg, executor=ray_executor)
            ref = instmix.build(_cfg(tmp_path, root, qa, "laptop"))
            assert m == ref
            gen = json.loads(handle.cat_file("corpus-bucket/builds/x/manifest.json"))[
                "generation"]
            prefix = f"corpus-bucket/builds/x/{gen}"
            remote = {p[len(prefix) + 1:]: handle.cat_file(p) for p in handle.find(prefix)}
            assert remote == read_tree(tmp_path / "laptop")
            assert verify(url, opts)["tokens"] == ref["total_tokens"]
            a = ShardDataset(str(tmp_path / "laptop"), 128, seed=2)
            b = ShardDataset(url, 128, seed=2, storage_options=opts)
            assert [x["input_ids"].tolist() for x in a] == [y["input_ids"].tolist() for y in b]
            sets = [{"web": 0.5, "qa": 0.5}, {"web": 0.8, "qa": 0.2}]
            loaded = instmix.load_config(cfg)
            done = sweep(loaded, sets, out="s3://corpus-bucket/sweep", executor=ray_executor)
            sweep(instmix.load_config(_cfg(tmp_path, root, qa, "laptop")), sets,
                  out=str(tmp_path / "sweep"))
            for name in [mix["output"] for mix in done["mixtures"]]:
                local = tmp_path / "sweep" / name
                assert local.is_dir()
                top = json.loads(handle.cat_file(f"corpus-bucket/sweep/{name}/manifest.json"))
                pre = f"corpus-bucket/sweep/{name}/{top['generation']}"
                assert {p[len(pre) + 1:]: handle.cat_file(p) for p in handle.find(pre)} == \
                    read_tree(local)
        finally:
            fresh_fs()
