"""Train a model on an instmix build with OLMo-core's own Trainer (ai2-olmo-core 3.x).

    instmix export olmo-core BUILD --seq-len 256
    python integrations/olmo-core/train.py BUILD/export-olmo-core --save-folder runs/tiny \
        --steps 30                                    # one process (CPU or one GPU)
    torchrun --nproc-per-node 2 integrations/olmo-core/train.py ...   # DDP (gloo on CPU)

The dataset and data loader come from the export (``instmix_data.py`` beside this file);
the model is a small randomly initialised llama-like transformer sized by ``--d-model``
and ``--layers`` (replace ``model_config`` with a real one, e.g.
``TransformerConfig.olmo2_1B``, for a real run). Checkpoints go to ``--save-folder`` every
``--save-interval`` steps and at the end; starting again with the same ``--save-folder``
resumes from its latest checkpoint (model, optimizer, data loader position), giving the
same batches and losses as an uninterrupted run.

``--record FILE`` appends one JSON line per step: the step, OLMo-core's own ``train/CE
loss`` and ``train/masked labels (%)`` metrics, the instance indices of the batch and a
sha256 of its ``input_ids`` and ``label_mask``, and how many EOS tokens are targets and how
many of those are labelled (used by instmix's integration tests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch
from olmo_core.data.utils import get_labels
from olmo_core.distributed.utils import get_rank
from olmo_core.nn.transformer import TransformerConfig
from olmo_core.optim import AdamWConfig
from olmo_core.train import (
    Duration,
    TrainerConfig,
    prepare_training_environment,
    teardown_training_environment,
)
from olmo_core.train.callbacks import Callback, CheckpointerCallback
from olmo_core.train.train_module import TransformerTrainModuleConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from instmix_data import data_configs, load_export  # noqa: E402


class StepRecorder(Callback):
    """Appends each step's batch fingerprint and OLMo-core's metrics to a JSONL file."""

    def __init__(self, path: str, eos_token_id: int):
        self.path = path
        self.eos = eos_token_id
        self.pending: dict = {}

    def pre_step(self, batch):
        mask = batch.get("label_mask")
        digest = hashlib.sha256(batch["input_ids"].numpy().tobytes())
        if mask is not None:
            digest.update(mask.numpy().tobytes())
        self.pending[self.step] = {
            "step": self.step, "sha256": digest.hexdigest(),
            "index": batch["index"].tolist() if "index" in batch else None,
            "instances": int(batch["input_ids"].shape[0]),
            # the labels the train module makes (it calls the same get_labels)
            "eos_targets": int((batch["input_ids"][:, 1:] == self.eos).sum()),
            "eos_labelled": int((get_labels(batch) == self.eos).sum())}

    def log_metrics(self, step, metrics):
        row = self.pending.pop(step, None)
        if row is None or get_rank() != 0:
            return
        row["loss"] = float(metrics["train/CE loss"])
        row["masked_labels"] = float(metrics["train/masked labels (%)"])
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def model_config(vocab_size: int, d_model: int, layers: int) -> TransformerConfig:
    """A small llama-like transformer; its embedding is padded to a multiple of 128 ids."""
    return TransformerConfig.llama_like(d_model=d_model, n_layers=layers,
                                        n_heads=max(1, d_model // 16),
                                        vocab_size=-(-vocab_size // 128) * 128)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="an `instmix export olmo-core` folder")
    p.add_argument("--save-folder", required=True, help="checkpoints; rerun to resume")
    p.add_argument("--kind", default="fsl", choices=("fsl", "packed", "mixture"))
    p.add_argument("--steps", type=int, default=30, help="train for this many steps in all")
    p.add_argument("--batch", type=int, default=8, help="global batch size in instances")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--save-interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--work-dir", help="OLMo-core's index cache (default: SAVE_FOLDER/work)")
    p.add_argument("--record", help="append a JSON line per step to this file")
    args = p.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ  # started by torchrun
    prepare_training_environment(seed=args.seed, backend="cpu:gloo,cuda:nccl"
                                 if distributed else None)
    try:
        data = load_export(args.export_dir)
        seq = data.SEQUENCE_LENGTH
        work_dir = args.work_dir or os.path.join(args.save_folder, "work")
        dataset_config, loader_config = data_configs(
            args.export_dir, kind=args.kind, global_batch_size=args.batch * seq,
            work_dir=work_dir, seed=args.seed, num_workers=args.num_workers)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = model_config(data.TOKENIZER.vocab_size, args.d_model, args.layers).build(
            init_device="cpu")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        train_module = TransformerTrainModuleConfig(
            rank_microbatch_size=args.batch // world * seq, max_sequence_length=seq,
            optim=AdamWConfig(lr=args.lr, weight_decay=0.0), max_grad_norm=1.0,
        ).build(model, device=device)
        dataset = dataset_config.build()
        data_loader = loader_config.build(dataset, dp_process_group=train_module.dp_process_group)
        callbacks = {"checkpointer": CheckpointerCallback(save_interval=args.save_interval,
                                                          save_async=False)}
        if args.record:
            callbacks["record"] = StepRecorder(args.record, data.TOKENIZER.eos_token_id)
        trainer = TrainerConfig(
            save_folder=args.save_folder, work_dir=work_dir, save_overwrite=True,
            max_duration=Duration.steps(args.steps), metrics_collect_interval=1,
            cancel_check_interval=1000, callbacks=callbacks,
        ).build(train_module, data_loader)
        trainer.fit()
    finally:
        teardown_training_environment()
    return 0


if __name__ == "__main__":  # the data loader's prepare() uses a process pool
    sys.exit(main())
