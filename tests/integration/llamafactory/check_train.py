"""Runs in the llamafactory venv: trains a tiny random-init llama (``train_from_scratch``)
with LLaMA-Factory's own ``run_exp`` (what ``llamafactory-cli train`` runs) on the exported
token-exact recipe, twice: STEPS steps saving every K, then resumed from checkpoint-K.
A callback hooks the model's forward to record, per step, a sha256 of the batch's
``input_ids`` and ``labels``, the loss, the masked-label count and the EOS targets that are
labelled. Prints one JSON line.

usage: check_train.py RECIPE MODEL_DIR WORK_DIR STEPS K
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="lf-hf-"))

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.dirname(HERE))


def run(recipe, model_dir, out_dir, steps, every, record, resume=None):
    """One training run in this process (called as ``check_train.py --run ...``)."""
    import yaml
    from llamafactory.train.tuner import run_exp
    from transformers import AutoTokenizer, TrainerCallback

    eos = AutoTokenizer.from_pretrained(model_dir).eos_token_id
    rows = []

    def hook(module, args, kwargs, output):
        if not module.training:
            return
        ids, labels = kwargs["input_ids"], kwargs["labels"]
        digest = hashlib.sha256(ids.numpy().tobytes() + labels.numpy().tobytes())
        targets = labels[:, 1:]
        rows.append({"sha256": digest.hexdigest(), "loss": float(output.loss),
                     "labels": int(labels.numel()), "masked": int((labels == -100).sum()),
                     "eos_targets": int((ids[:, 1:] == eos).sum()),
                     "eos_labelled": int((targets == eos).sum())})

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.register_forward_hook(hook, with_kwargs=True)

        def on_step_end(self, args, state, control, **kwargs):
            rows[-1]["step"] = state.global_step

    with open(recipe) as f:
        args = yaml.safe_load(f)
    args.update(model_name_or_path=model_dir, train_from_scratch=True, output_dir=out_dir,
                max_steps=steps, save_steps=every, logging_steps=1,
                per_device_train_batch_size=2, gradient_accumulation_steps=1,
                learning_rate=1e-2, lr_scheduler_type="constant", save_only_model=False,
                dataloader_num_workers=0, seed=0, disable_tqdm=True)
    if resume:
        args["resume_from_checkpoint"] = resume
    run_exp(args, callbacks=[Record()])
    with open(record, "w") as f:
        json.dump(rows, f)


def train(*argv):
    proc = subprocess.run([sys.executable, "-W", "ignore", __file__, "--run", *map(str, argv)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"training run failed ({proc.returncode})")
    with open(argv[5]) as f:
        return json.load(f)


def main(recipe, model_dir, work_dir, steps, k):
    from buildfiles import emit

    full_dir = os.path.join(work_dir, "full")
    full = train(recipe, model_dir, full_dir, steps, k, os.path.join(work_dir, "full.json"))
    resumed = train(recipe, model_dir, os.path.join(work_dir, "resumed"), steps, k,
                    os.path.join(work_dir, "resumed.json"),
                    os.path.join(full_dir, f"checkpoint-{k}"))
    emit({"full": full, "resumed": resumed})


if __name__ == "__main__":
    if sys.argv[1] == "--run":
        a = sys.argv[2:]
        run(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5], a[6] if len(a) > 6 else None)
    else:
        main(*sys.argv[1:6])
