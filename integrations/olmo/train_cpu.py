"""Train OLMo (ai2-olmo 0.6.x) on an instmix build on CPU, one process or several with gloo.

    instmix export olmo BUILD --seq-len 256
    python integrations/olmo/merge.py integrations/olmo/train-instmix.yaml \
        BUILD/export-olmo/olmo-data.yaml > train.yaml
    python integrations/olmo/train_cpu.py train.yaml --save-folder runs/tiny --steps 30 \
        model.d_model=64 model.n_heads=4 model.n_layers=2 model.mlp_ratio=4
    torchrun --nproc-per-node 2 integrations/olmo/train_cpu.py train.yaml ...   # DDP, gloo

OLMo's ``scripts/train.py`` is not in the wheel and calls CUDA and nccl; this driver uses
OLMo's own pieces instead: ``TrainConfig`` (with dotted ``key=value`` overrides),
``build_train_dataloader`` (its shuffled ``IterableDataset`` over the memmap files, label
masks included), the ``OLMo`` model and ``build_optimizer``, and the label rule of OLMo's
``Trainer.get_labels`` (next tokens; ``label_mask`` False -> ignored). It needs nothing
beyond ai2-olmo's own requirements. A checkpoint (model, optimizer, step) is written every
``--save-interval`` steps; rerunning with the same ``--save-folder`` resumes from the latest
one, the data loader starting after the instances already trained on, as OLMo's Trainer
does (``IterableDataset.start_index``). Kept simple on purpose: float32, a constant
``optimizer.learning_rate`` (no scheduler), no micro-batches, no evaluation.

``--record FILE`` appends a JSON line per step: loss, masked-label fraction, EOS targets
and how many are labelled, the batch's instance indices and a sha256 of its tokens and mask.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from olmo.config import TrainConfig
from olmo.data import build_train_dataloader
from olmo.model import OLMo
from olmo.optim import build_optimizer
from olmo.torch_util import seed_all


def get_labels(batch: dict) -> torch.Tensor:
    """OLMo's ``Trainer.get_labels`` (ai2-olmo 0.6.0): input ids shifted left, with masked
    positions set to -100."""
    labels = batch["input_ids"].clone()
    if batch.get("label_mask") is not None:
        labels.masked_fill_(~batch["label_mask"], -100)
    if batch.get("attention_mask") is not None:
        labels.masked_fill_(batch["attention_mask"] == 0.0, -100)
    return labels[..., 1:].contiguous()


def latest_checkpoint(folder: str) -> tuple[int, str | None]:
    found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(folder, "step*.pt"))
             if (m := re.search(r"step(\d+)\.pt$", p))]
    return max(found) if found else (0, None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="an OLMo training YAML with the export merged in")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (OLMo's own)")
    p.add_argument("--save-folder", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--save-interval", type=int, default=10)
    p.add_argument("--record", help="append a JSON line per step to this file")
    args = p.parse_intermixed_args(argv)

    if "WORLD_SIZE" not in os.environ:  # one process: a gloo group of one
        os.environ.update(WORLD_SIZE="1", RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", "29517"))
    dist.init_process_group("gloo", timeout=timedelta(minutes=5))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        cfg = TrainConfig.load(args.config, [*args.overrides, f"save_folder={args.save_folder}",
                                             "save_overwrite=true", "model.init_device=cpu"])
        if cfg.global_train_batch_size % world:
            raise SystemExit(f"global_train_batch_size {cfg.global_train_batch_size} is not a "
                             f"multiple of the world size {world}")
        cfg.device_train_batch_size = cfg.global_train_batch_size // world
        seed_all(cfg.seed)
        model = OLMo(cfg.model)
        optim = build_optimizer(cfg, model)
        step, path = latest_checkpoint(args.save_folder)
        if path:
            state = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optim"])
            torch.set_rng_state(state["rng"])
        ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        loader = build_train_dataloader(cfg)
        loader.dataset.start_index = step * cfg.global_train_batch_size  # as OLMo's Trainer
        eos = cfg.model.eos_token_id
        batches = iter(loader)
        while step < args.steps:
            batch = next(batches)
            labels = get_labels(batch)
            logits = ddp(input_ids=batch["input_ids"]).logits[..., :-1, :]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.view(-1),
                                   ignore_index=-100)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optim.step()
            step += 1
            if args.record:
                digest = hashlib.sha256(batch["input_ids"].numpy().tobytes())
                if batch.get("label_mask") is not None:
                    digest.update(batch["label_mask"].numpy().tobytes())
                row = {"step": step, "rank": rank, "loss": float(loss),
                       "index": batch["index"].tolist(), "sha256": digest.hexdigest(),
                       "masked_labels": float((labels == -100).float().mean()),
                       "eos_targets": int((batch["input_ids"][:, 1:] == eos).sum()),
                       "eos_labelled": int((labels == eos).sum())}
                with open(f"{args.record}.rank{rank}", "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            if rank == 0 and (step % args.save_interval == 0 or step == args.steps):
                os.makedirs(args.save_folder, exist_ok=True)
                tmp = os.path.join(args.save_folder, f".step{step}.pt.tmp")
                torch.save({"model": model.state_dict(), "optim": optim.state_dict(),
                            "rng": torch.get_rng_state(), "step": step}, tmp)
                os.replace(tmp, os.path.join(args.save_folder, f"step{step}.pt"))
            dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
