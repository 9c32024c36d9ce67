"""DPO speed and memory: vlmtrain against TRL's DPOTrainer, same model, data, batch, steps, CPU.

    scripts/env.sh python scripts/bench_dpo.py                       # tiny Qwen2.5-VL (512 rows)
    scripts/env.sh python scripts/bench_dpo.py --embedding-rows 151936   # Qwen2.5-VL's vocabulary

The two sides run alternately, ``--repeats`` times each (default 3), and their medians are
compared: single runs on a shared 2-core machine vary by up to 30% from one process to the next.

Each measurement runs in its own process (so peak RSS is that side's alone): a tiny Qwen2.5-VL
with a LoRA adapter (r=16 on the language model), shapes preference pairs, AdamW. Printed:

- live reference (the policy with its adapter disabled, as TRL does for a PEFT model): seconds
  per step after ``--warmup`` steps, the ratio vlmtrain / TRL, and each side's peak RSS;
- two epochs over ``steps x batch / 2`` pairs: vlmtrain with the cached reference (cache build
  included) against TRL with its live reference (TRL refuses precomputed reference log-probs for
  image data), total wall time and the ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _model(rows: int | None, image_size: int):
    from vlmtrain.models.families import Qwen2_5_VL
    from vlmtrain.models.hf import load_vlm
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(image_size=image_size, embedding_rows=rows)
    return load_vlm(path, Qwen2_5_VL(), lora={"r": 16, "alpha": 32, "dropout": 0.0})


def _pairs(n: int, image_size: int):
    from vlmtrain.data.shapes import ShapesDataset

    return ShapesDataset("preference", "train", size=n, image_size=image_size)


def run_vlmtrain(a: argparse.Namespace) -> dict:
    import lightning as L

    from vlmtrain.data.datamodule import VLMDataModule
    from vlmtrain.data.preference import PreferenceCollator
    from vlmtrain.losses.dpo import DPOLoss
    from vlmtrain.module import VLMModule
    from vlmtrain.reference import LiveReference
    from vlmtrain.reference_cache import CachedReference

    vlm = _model(a.embedding_rows, a.image_size)
    pairs = a.steps * a.batch // (2 if a.epochs == 2 else 1)
    data = VLMDataModule(_pairs(pairs, a.image_size), None, processor=vlm.processor,
                         family=vlm.family, batch_size=a.batch, eval_batch_size=a.batch,
                         max_length=128, collator=PreferenceCollator)
    reference = (CachedReference("adapter", cache_dir=a.cache_dir) if a.epochs == 2
                 else LiveReference("adapter"))
    module = VLMModule(vlm, DPOLoss(beta=0.1), optimizer=_adamw, reference=reference)
    clock = _clock()
    trainer = L.Trainer(max_steps=a.steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[clock], accelerator="cpu",
                        limit_val_batches=0, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return clock.result(time.perf_counter() - start, a.warmup)


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-4)


def _clock():
    """A Lightning callback recording the wall time of each training step."""
    import lightning as L

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.steps: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.steps.append(time.perf_counter() - self.t0)

        def result(self, total: float, warmup: int) -> dict:
            timed = self.steps[warmup:] or self.steps
            return {"s_per_step": sum(timed) / len(timed), "total_s": total,
                    "steps": len(self.steps)}

    return Clock()


def run_trl(a: argparse.Namespace) -> dict:
    import tempfile

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    vlm = _model(a.embedding_rows, a.image_size)
    pairs = _pairs(a.steps * a.batch // (2 if a.epochs == 2 else 1), a.image_size)
    rows = [{"image": s.image, "prompt": [{"role": "user", "content": s.prompt}],
             "chosen": [{"role": "assistant", "content": s.target}],
             "rejected": [{"role": "assistant", "content": s.rejected}]}
            for s in (pairs[i] for i in range(len(pairs)))]
    steps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            steps.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out, report_to="none", use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False, dataloader_num_workers=0, save_strategy="no",
            per_device_train_batch_size=a.batch, max_steps=a.steps, learning_rate=1e-4,
            beta=0.1, logging_steps=10**6, lr_scheduler_type="constant", warmup_steps=0,
        )
        start = time.perf_counter()
        trainer = DPOTrainer(model=vlm.model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=vlm.processor, callbacks=[Clock()])
        if "ref" in vlm.model.peft_config:  # a fresh adapter: the reference is the base model
            vlm.model.delete_adapter("ref")
        trainer.train()
        total = time.perf_counter() - start
    timed = steps[a.warmup:] or steps
    return {"s_per_step": sum(timed) / len(timed), "total_s": total, "steps": len(steps)}


def _child(side: str, a: argparse.Namespace, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--epochs", str(epochs),
           "--steps", str(a.steps), "--batch", str(a.batch), "--warmup", str(a.warmup),
           "--image-size", str(a.image_size), "--threads", str(a.threads)]
    if a.embedding_rows:
        cmd += ["--embedding-rows", str(a.embedding_rows)]
    if a.cache_dir:
        cmd += ["--cache-dir", a.cache_dir]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the per-step time")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--embedding-rows", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="runs per side, alternating; medians")
    p.add_argument("--side", choices=["vlmtrain", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)  # per run, made below
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        result = (run_vlmtrain if a.side == "vlmtrain" else run_trl)(a)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    import tempfile

    rows = a.embedding_rows or 512
    print(f"tiny Qwen2.5-VL + LoRA r=16, {rows:,} embedding rows, {a.batch} pairs/step, "
          f"{a.steps} steps, {a.threads} threads, {a.image_size} px")
    # The sides run alternately, --repeats times each, and the medians are compared: on a
    # shared machine one process can run 30% slower than the next for no reason of its own.
    live = {"vlmtrain": [], "trl": []}
    epochs = {"vlmtrain": [], "trl": []}
    for _ in range(a.repeats):
        for side in ("vlmtrain", "trl"):
            live[side].append(_child(side, a, 1))
    for _ in range(a.repeats):
        # a fresh cache folder each time: every vlmtrain run pays for building its cache
        a.cache_dir = tempfile.mkdtemp(prefix="bench_dpo_cache_")
        for side in ("vlmtrain", "trl"):
            epochs[side].append(_child(side, a, 2))
    ours, trl = (_median(live[s], "s_per_step") for s in ("vlmtrain", "trl"))
    print(f"live reference  vlmtrain {ours['s_per_step']:.3f} s/step, peak RSS "
          f"{ours['peak_rss_mib']:.0f} MiB | TRL {trl['s_per_step']:.3f} s/step, peak RSS "
          f"{trl['peak_rss_mib']:.0f} MiB | time ratio {ours['s_per_step'] / trl['s_per_step']:.2f}"
          f" | RSS ratio {ours['peak_rss_mib'] / trl['peak_rss_mib']:.2f}")
    print("  each run, s/step: vlmtrain " + " ".join(f"{r['s_per_step']:.3f}" for r in live["vlmtrain"])
          + " | TRL " + " ".join(f"{r['s_per_step']:.3f}" for r in live["trl"]))
    ours2, trl2 = (_median(epochs[s], "total_s") for s in ("vlmtrain", "trl"))
    print(f"two epochs      vlmtrain cached reference {ours2['total_s']:.1f} s (cache build "
          f"included) | TRL live reference {trl2['total_s']:.1f} s | ratio "
          f"{ours2['total_s'] / trl2['total_s']:.2f}")
    print("  each run, s: vlmtrain " + " ".join(f"{r['total_s']:.1f}" for r in epochs["vlmtrain"])
          + " | TRL " + " ".join(f"{r['total_s']:.1f}" for r in epochs["trl"]))


def _median(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]

if __name__ == "__main__":
    main()
