"""Each ``configs/data/<format>.yaml`` composes, instantiates on a tiny fixture, and collates."""

from __future__ import annotations

import datasets  # installed with trl
import pytest
from bad_corpus import png_bytes
from format_fixtures import GOOD, WRITERS
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict

from vlmtrain.paths import config_dir


def _write_hf(root):
    rows = {"image": [{"bytes": png_bytes(), "path": None}] * 2, "question": ["Colour?"] * 2,
            "answer": ["red", "red"]}
    ds = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"),
         "answer": datasets.Value("string")}))
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(root / "hf"))
    return {"path": str(root / "hf")}


CONFIGS = {"coco_captions": "coco", "vqav2": "vqav2", "docvqa": "docvqa", "llava": "llava",
           "hf_datasets": "hf"}


def _compose(config: str, files: dict[str, str]):
    GlobalHydra.instance().clear()
    overrides = [f"data={config}", "data.on_bad_sample=skip", "data.num_workers=0",
                 "data.batch_size=2"]
    for split in ("train", "val"):
        overrides += [f"data.{split}.{key}={value}" for key, value in files.items()]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/vlmtrain-compose-test"
    return cfg


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_data_config_instantiates_and_collates(config, tmp_path, tiny_qwen):
    fmt = CONFIGS[config]
    files = _write_hf(tmp_path) if fmt == "hf" else WRITERS[fmt](tmp_path)
    cfg = _compose(config, files)
    data = instantiate(cfg.data, processor=tiny_qwen.processor, family=tiny_qwen.family)
    expected = GOOD.get(fmt, ["train-0", "train-1"])
    assert [data.train_set[i].id for i in range(len(data.train_set))] == expected
    batch = next(iter(data.train_dataloader()))
    labels = batch["labels"]
    assert labels.shape[0] == 2 and (labels != -100).any(dim=1).all()
