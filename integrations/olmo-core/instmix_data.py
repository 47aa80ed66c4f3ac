"""OLMo-core (ai2-olmo-core 3.x) data for an instmix build: the dataset and data loader
configs to plug into a training script.

    instmix export olmo-core BUILD --seq-len 4096 --work-dir /shared/olmo-core-work
    python integrations/olmo-core/instmix_data.py BUILD/export-olmo-core   # dry run

In your OLMo-core training script (the ``data_loader`` is what ``TrainerConfig.build``
takes)::

    from instmix_data import data_configs
    dataset_config, loader_config = data_configs("BUILD/export-olmo-core", kind="fsl",
                                                 global_batch_size=1024 * 4096)
    dataset = dataset_config.build()
    data_loader = loader_config.build(dataset, dp_process_group=...)

``kind``: ``fsl`` (concatenate and chunk; label masks applied), ``packed`` (whole
documents packed into instances, padded; label masks applied) or ``mixture`` (OLMo-core's
source mixture over a ``layout: per_source`` build; no label masks).
"""

from __future__ import annotations

import importlib.util
import os
import sys

KINDS = ("fsl", "packed", "mixture")


def load_export(export_dir: str):
    """The exported ``olmo_core_data.py`` as a module."""
    path = os.path.join(export_dir, "olmo_core_data.py")
    spec = importlib.util.spec_from_file_location("olmo_core_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_configs(export_dir: str, *, kind: str = "fsl", sequence_length: int | None = None,
                 global_batch_size: int | None = None, work_dir: str | None = None,
                 seed: int = 0, num_workers: int = 4):
    """``(dataset config, NumpyDataLoaderConfig)``. ``global_batch_size`` is in tokens and
    must be a multiple of ``sequence_length`` (default: 8 instances)."""
    from olmo_core.data import NumpyDataLoaderConfig

    data = load_export(export_dir)
    seq = sequence_length or data.SEQUENCE_LENGTH
    work = work_dir or data.WORK_DIR
    if kind == "fsl":
        dataset = data.fsl_dataset_config(sequence_length=seq, work_dir=work)
    elif kind == "packed":
        dataset = data.packed_dataset_config(sequence_length=seq, work_dir=work)
    elif kind == "mixture":
        if not hasattr(data, "mixture_dataset_config"):
            raise ValueError(f"{export_dir}: no source mixture (the build is interleaved; "
                             "build with `layout: per_source`)")
        dataset = data.mixture_dataset_config(sequence_length=seq, work_dir=work)
    else:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    batch = global_batch_size or 8 * seq
    if batch % seq:
        raise ValueError(f"global_batch_size {batch} is not a multiple of {seq}")
    loader = NumpyDataLoaderConfig(global_batch_size=batch, seed=seed, work_dir=work,
                                   num_workers=num_workers)
    return dataset, loader


def dry_run(export_dir: str, kind: str = "fsl", work_dir: str | None = None) -> dict:
    """Build the dataset and loader on this machine and read one epoch's batches."""
    dataset_config, loader_config = data_configs(export_dir, kind=kind, work_dir=work_dir,
                                                 num_workers=0)
    dataset = dataset_config.build()
    loader = loader_config.build(dataset)  # prepares the dataset (index files in work_dir)
    loader.reshuffle(epoch=1)
    batches = instances = 0
    for batch in loader:  # the collator rejects ids outside [0, vocab_size)
        batches += 1
        instances += batch["input_ids"].shape[0]
    loader.reset()
    return {"kind": kind, "instances": len(dataset), "batches": batches,
            "instances_read": instances, "keys": sorted(batch) if batches else []}


if __name__ == "__main__":  # prepare() of packed and mixture datasets uses a process pool
    if len(sys.argv) < 2:
        print("usage: instmix_data.py EXPORT_DIR [fsl|packed|mixture] [WORK_DIR]",
              file=sys.stderr)
        sys.exit(2)
    print(dry_run(*sys.argv[1:4]))
