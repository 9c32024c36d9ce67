"""Validation generation speed: batched (as GenerationEval runs it) against one sample at a time,
and the share of validation wall time spent computing metrics.

    scripts/env.sh python scripts/bench_generation.py                      # embedded default
    scripts/env.sh python scripts/bench_generation.py --recipe sft_caption model=tiny_paligemma

Same model, same validation split, same greedy decoding (``module.generation``, KV cache on):

- batched: the validation loader's batches (``data.eval_batch_size`` prompts, left-padded, as the
  collator makes them for ``generate``) through ``VLMModule.generate_answers``;
- one at a time: each sample collated alone and generated alone (no padding);

both sides time ``generate`` + decoding only (collation is timed apart and printed). Then
``trainer.validate`` with the recipe's GenerationEval (loss, generation, metrics, groups, sample
table) runs twice and the second is timed (the first also loads model-based metrics and fills
CLIP-S's reference cache: every later validation is like the second). The metric work of that
validation (every ``update``, the per-group copies, the table's per-sample scores, every
``compute``) is replayed with the same metric objects on its recorded predictions and timed
alone: its share of the validation's wall time. Extra arguments are Hydra overrides.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def _compose(recipe: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from vlmtrain.__main__ import register_recipes
    from vlmtrain.paths import config_dir

    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"+recipe={recipe}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    return cfg


def _generation(module, data, limit: int) -> dict:
    loader = data.val_dataloader()
    collate = loader.collate_fn
    samples = [data.val_set[i] for i in range(min(limit, len(data.val_set)))]
    size = loader.batch_size
    batched, single, collate_s = [], [], 0.0
    t_batched = 0.0
    for start in range(0, len(samples), size):
        t = time.perf_counter()
        batch = collate(samples[start:start + size])
        collate_s += time.perf_counter() - t
        t = time.perf_counter()
        batched += module.generate_answers(batch)
        t_batched += time.perf_counter() - t
    t_single = 0.0
    for sample in samples:
        batch = collate([sample])
        t = time.perf_counter()
        single += module.generate_answers(batch)
        t_single += time.perf_counter() - t
    same = sum(a == b for a, b in zip(batched, single)) / len(samples)
    return {"n": len(samples), "batch": size, "batched_s": t_batched, "single_s": t_single,
            "collate_s": collate_s, "same": same}


def _metric_share(cfg, module, data) -> dict:
    import lightning as L
    from hydra.utils import instantiate

    evaluator = instantiate(cfg.callbacks.generation_eval)
    recorded = []
    generate = module.generate_answers

    def recording(batch):
        out = generate(batch)
        recorded.append((batch["meta"], out))
        return out

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[evaluator])
    # the first validation also loads model-based metrics (CLIP-S) and encodes the references
    # they cache; every later one is like the second, which is the one measured
    t = time.perf_counter()
    trainer.validate(module, datamodule=data, verbose=False)
    first_s = time.perf_counter() - t
    module.generate_answers = recording
    t = time.perf_counter()
    trainer.validate(module, datamodule=data, verbose=False)
    validate_s = time.perf_counter() - t
    module.generate_answers = generate

    # the same metric work on the same predictions, alone, with the same metric objects
    replay = evaluator
    last = dict(evaluator.last)
    replay.table.start()
    if replay.grouped is not None:
        replay.grouped.reset()
    from vlmtrain.callbacks.generation_eval import _update

    per_metric = dict.fromkeys(replay.metrics, 0.0)
    values = {}
    t = time.perf_counter()
    for name, metric in replay.metrics.items():
        start = time.perf_counter()
        metric.reset()
        for meta, predictions in recorded:
            _update(metric, predictions, meta["references"], meta.get("images"))
        values.update(metric.compute())
        per_metric[name] = time.perf_counter() - start
    start = time.perf_counter()
    for meta, predictions in recorded:
        if replay.grouped is not None:
            replay.grouped.update(meta, predictions, _update)
        replay.table.add(meta, predictions, replay.metrics)
    if replay.grouped is not None:
        values.update(replay.grouped.compute())
    per_metric["groups + table"] = time.perf_counter() - start
    metrics_s = time.perf_counter() - t
    assert all(abs(float(values[k]) - last[k]) < 1e-9 for k in last)
    return {"validate_s": validate_s, "first_s": first_s, "metrics_s": metrics_s,
            "keys": len(values),
            "per_metric": per_metric}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", default="sft_vqa")
    p.add_argument("--samples", type=int, default=512, help="validation samples generated")
    p.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., data.val.size=...)")
    a = p.parse_args()
    from hydra.utils import instantiate

    from vlmtrain.train import build_module

    torch.manual_seed(0)
    cfg = _compose(a.recipe, a.overrides)
    vlm = instantiate(cfg.model)
    data = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    data.setup("validate")
    module = build_module(cfg, vlm, data).eval()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; torch threads "
          f"{torch.get_num_threads()}; recipe {a.recipe} {' '.join(a.overrides)}", flush=True)
    with torch.inference_mode():
        g = _generation(module, data, a.samples)
    print(f"generation of {g['n']} validation answers (max_new_tokens "
          f"{module.generation.get('max_new_tokens')}, batch {g['batch']}):")
    print(f"  batched          {g['batched_s']:8.2f} s  ({g['n'] / g['batched_s']:.1f} answers/s)")
    print(f"  one at a time    {g['single_s']:8.2f} s  ({g['n'] / g['single_s']:.1f} answers/s)")
    print(f"  speed-up         {g['single_s'] / g['batched_s']:8.2f}x  (target >= 4x)")
    print(f"  same answers     {g['same']:8.3f}     "
          f"(collation, both sides: {g['collate_s']:.2f} s)")
    m = _metric_share(cfg, module, data)
    print(f"validation (loss + generation + {m['keys']} metric values), "
          f"{len(data.val_set)} samples: {m['validate_s']:.2f} s "
          f"(the first: {m['first_s']:.2f} s)")
    print(f"  metrics (update, groups, table scores, compute) {m['metrics_s']:.2f} s = "
          f"{100 * m['metrics_s'] / m['validate_s']:.1f}% (target <= 10%)")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in m["per_metric"].items()))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
