"""Train the shapes CLIP shipped in ``vlmtrain/assets/shapes_clip`` (used by ``val/clipscore``).

A Hugging Face ``CLIPModel`` (232k parameters, 0.9 MB: two layers of width 64 per tower, 48 px
scenes in 8 px patches) trained with InfoNCE on shapes image-caption pairs, each caption with two
hard negatives: the same caption with one attribute of one shape changed (see
``vlmtrain/contrastive.py``). Every 300 steps and at the end it is scored on 500 validation
images: does it rank each true caption above the same caption with the colour, kind, size or
position of one shape changed? The folder gets the model (safetensors), its processor and
``training.json`` (settings, scores, time).

Usage (the shipped model: 1,800 steps of 64, ~10 min on one shared CPU core; deterministic for
its arguments on one machine)::

    scripts/env.sh python scripts/train_shapes_clip.py
    scripts/env.sh python scripts/train_shapes_clip.py --steps 200 --out /tmp/clip  # quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
from pathlib import Path

import torch

from vlmtrain.contrastive import ClipTraining, attribute_accuracy, train_clip
from vlmtrain.data.shapes_negatives import probe_set
from vlmtrain.models.shapes_clip import (
    ASSET,
    build_shapes_clip,
    build_tokenizer,
    caption_vocabulary,
)


def _args(argv: list[str] | None) -> argparse.Namespace:
    d = ClipTraining()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ASSET, help="folder to write (default: the asset)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--negatives", type=int, default=d.negatives,
                   help="hard-negative captions per image")
    p.add_argument("--position-share", type=float, default=d.position_share,
                   help="share of captions from templates that name every cell")
    p.add_argument("--negative-weights", type=json.loads, default=None,
                   help='attribute -> weight of negatives, JSON, e.g. \'{"kind": 2}\'')
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--width", type=int, default=64, help="width of both towers")
    p.add_argument("--layers", type=int, default=2, help="layers of each tower")
    p.add_argument("--vision-width", type=int, default=None, help="default: --width")
    p.add_argument("--vision-layers", type=int, default=None, help="default: --layers")
    p.add_argument("--patch", type=int, default=8, help="ViT patch side (px)")
    p.add_argument("--position-init", choices=("sincos", "random"), default="sincos",
                   help="start of the vision tower's position table")
    p.add_argument("--eval-images", type=int, default=500, help="validation images scored")
    p.add_argument("--eval-every", type=int, default=300, help="also score every N steps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared machine more threads spin and wait)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    cfg = ClipTraining(steps=args.steps, batch_size=args.batch_size, negatives=args.negatives,
                       position_share=args.position_share,
                       negative_weights=args.negative_weights, lr=args.lr, warmup=args.warmup,
                       seed=args.seed)
    torch.manual_seed(cfg.seed)
    model, processor = build_shapes_clip(build_tokenizer(caption_vocabulary()),
                                         image_size=cfg.image_size, patch_size=args.patch,
                                         width=args.width, layers=args.layers,
                                         vision_width=args.vision_width,
                                         vision_layers=args.vision_layers,
                                         position_init=args.position_init)
    probes = probe_set(args.eval_images, "val", seed=0, image_size=cfg.image_size,
                       max_shapes=cfg.max_shapes)
    history = train_clip(model, processor, cfg,
                         evaluate=lambda _step: attribute_accuracy(model, processor, probes),
                         eval_every=args.eval_every)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)  # safetensors
    processor.save_pretrained(args.out)
    record = {
        "command": "scripts/train_shapes_clip.py " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
        "training": dataclasses.asdict(cfg),
        "model": {"width": args.width, "layers": args.layers, "vision_width": args.vision_width,
                  "vision_layers": args.vision_layers, "patch": args.patch,
                  "position_init": args.position_init,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "evaluation": {"split": "val", "images": args.eval_images,
                       "metric": "share of probes: cos(image, true) > cos(image, altered)"},
        "history": history,
        "machine": {"torch": torch.__version__, "threads": args.threads,
                    "python": platform.python_version()},
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    final = history[-1]
    print("attribute accuracy on", args.eval_images, "validation images:",
          {k: round(final[k], 3) for k in ("colour", "kind", "size", "position", "all")},
          f"({final['seconds']:.0f} s)")
    return final


if __name__ == "__main__":
    main()
