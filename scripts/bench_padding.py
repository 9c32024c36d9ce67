"""Padding in training batches with and without ``data.group_by_length``.

Builds a JSON-lines fixture whose text lengths spread as in a mixed instruction set (short VQA
answers, one-sentence captions, LLaVA-style detailed descriptions and multi-turn
conversations), reads it with ``data=jsonl`` and the model's real collator, and counts padded
positions (``attention_mask == 0``) over one epoch of training batches, both ways, in one run.

    python scripts/bench_padding.py [--samples 1024] [--batch-size 8] [--model tiny_qwen2_5_vl]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from PIL import Image

from vlmtrain.paths import config_dir

WORDS = ("red blue green small large circle square left right top bottom picture shows a the "
         "of on near next to with and there is are two three object colour shape").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_fixture(folder: Path, samples: int, seed: int = 0) -> Path:
    """``samples`` records: 55 % one-word VQA answers, 25 % captions (8-20 words), 12 % detailed
    descriptions (40-120 words), 8 % conversations of 2-4 turns (what LLaVA-mix holds)."""
    rng = random.Random(seed)
    Image.new("RGB", (48, 48), (200, 30, 30)).save(folder / "img.png")
    path = folder / "train.jsonl"
    with path.open("w") as f:
        for i in range(samples):
            kind = rng.random()
            if kind < 0.55:
                prompt, answer = _text(rng, rng.randint(4, 12)) + "?", _text(rng, 1)
            elif kind < 0.80:
                prompt, answer = "Describe the image briefly.", _text(rng, rng.randint(8, 20))
            elif kind < 0.92:
                prompt, answer = "Describe the image in detail.", _text(rng, rng.randint(40, 120))
            else:  # a conversation: later turns folded into one long answer of similar length
                turns = rng.randint(2, 4)
                prompt = _text(rng, 8) + "?"
                answer = " ".join(_text(rng, rng.randint(10, 30)) for _ in range(turns))
            f.write(json.dumps({"id": f"s{i}", "image": "img.png", "prompt": prompt,
                                "answer": answer}) + "\n")
    return path


def padding_fraction(datamodule) -> tuple[float, int]:
    """Padded positions / all positions over one epoch of training batches, and the positions."""
    padded = total = 0
    for batch in datamodule.train_dataloader():
        mask = batch["inputs"]["attention_mask"]
        padded += int((mask == 0).sum())
        total += mask.numel()
    return padded / total, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--model", default="tiny_qwen2_5_vl")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        path = write_fixture(Path(tmp), a.samples)
        cfg = compose("train", overrides=[f"model={a.model}", "data=jsonl", "image_size=48",
                                          f"data.train.path={path}", "~data.val",
                                          f"data.batch_size={a.batch_size}", "data.num_workers=0"])
        with open_dict(cfg):
            cfg.data.val = None
        vlm = instantiate(cfg.model)
        results = {}
        for grouped in (False, True):
            cfg.data.group_by_length = grouped
            datamodule = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
            start = time.perf_counter()
            results[grouped] = (*padding_fraction(datamodule), time.perf_counter() - start)
    (plain, plain_n, plain_s), (grouped, grouped_n, grouped_s) = results[False], results[True]
    print(f"{a.samples} samples, batch size {a.batch_size}, model {a.model}")
    print(f"{'':24}{'padding':>10}{'positions':>12}{'epoch s':>9}")
    print(f"{'random batches':24}{plain:>10.3f}{plain_n:>12}{plain_s:>9.1f}")
    print(f"{'group_by_length=true':24}{grouped:>10.3f}{grouped_n:>12}{grouped_s:>9.1f}")
    print(f"padding ratio grouped/random: {grouped / plain:.3f}; "
          f"positions ratio: {grouped_n / plain_n:.3f}")


if __name__ == "__main__":
    main()
