"""Hugging Face ``datasets`` with a list of images per row: one multi-image sample per row, the
JSONL / LLaVA placeholder rules, lazily decoded, collated for both tiny families."""

from __future__ import annotations

from types import SimpleNamespace

import datasets  # installed with trl
import numpy as np
import pytest
from bad_corpus import png_bytes

from vlmtrain.callbacks.generation_eval import GenerationEval
from vlmtrain.data.bad_records import skip_counts
from vlmtrain.data.collate import VLMCollator
from vlmtrain.data.hf_datasets import hf_dataset
from vlmtrain.errors import VLMTrainError
from vlmtrain.metrics.clipscore import CLIPScore
from vlmtrain.metrics.squad import SquadMatch

RED, BLUE = png_bytes((255, 0, 0)), png_bytes((0, 0, 255))
COLUMNS = {"id": "qid", "image": "images", "prompt": "question", "target": "answer"}


def _save(tmp_path, rows: list[tuple], parquet: bool = False) -> dict:
    """``rows``: ``(id, [image bytes or None], question)``; where to read them from."""
    ds = datasets.Dataset.from_dict(
        {"qid": [r[0] for r in rows],
         "images": [[{"bytes": b, "path": None} if b else None for b in r[1]] for r in rows],
         "question": [r[2] for r in rows], "answer": ["yes"] * len(rows)},
        features=datasets.Features({"qid": datasets.Value("string"),
                                    "images": datasets.List(datasets.Image()),
                                    "question": datasets.Value("string"),
                                    "answer": datasets.Value("string")}))
    if parquet:
        ds.to_parquet(str(tmp_path / "train.parquet"))
        return {"data_files": str(tmp_path / "train.parquet")}
    ds.save_to_disk(str(tmp_path / "multi"))
    return {"path": str(tmp_path / "multi")}


def _colour(image) -> tuple:
    return tuple(int(v) for v in np.asarray(image)[0, 0])


def test_list_of_images_is_one_sample(tmp_path):
    where = _save(tmp_path, [
        ("one", [RED], "<image>Colour?"),                          # one image: placeholder removed
        ("two", [RED, BLUE], "Is <image> the colour of <image>?"),  # placeholders kept
        ("unmarked", [BLUE, RED], "Same colour?"),                 # no placeholder: all first
        ("mismatch", [RED, BLUE], "<image> Colour?"),              # 1 placeholder, 2 images
        ("none", [], "Colour?"),
        ("hole", [RED, None], "Colour?"),                          # an empty item in the list
        ("corrupt", [RED, b"\x89PNG broken"], "Colour?"),          # found when read
    ])
    data = hf_dataset(**where, columns=COLUMNS, on_bad_sample="skip")
    assert skip_counts(data) == {"data/skipped/image_placeholders": 1,
                                 "data/skipped/missing_image": 2}
    one, two, unmarked = data[0], data[1], data[2]
    assert (one.prompt, _colour(one.image)) == ("Colour?", (255, 0, 0))
    assert two.prompt == "Is <image> the colour of <image>?"
    assert [_colour(im) for im in two.image] == [(255, 0, 0), (0, 0, 255)]
    assert [_colour(im) for im in unmarked.image] == [(0, 0, 255), (255, 0, 0)]
    assert data[3] is None  # row 6: its second image does not decode
    assert skip_counts(data)["data/skipped/unreadable_image"] == 1


def test_bad_rows_are_named(tmp_path):
    where = _save(tmp_path, [("ok", [RED, BLUE], "Colour?"),
                             ("mismatch", [RED, BLUE], "<image><image><image>?")])
    with pytest.raises(VLMTrainError, match=r"multi\[1\]: record mismatch: the prompt has 3 "
                                            r"<image> placeholders for 2 images; mark each"):
        hf_dataset(**where, columns=COLUMNS)
    where = _save(tmp_path, [("ok", [RED, BLUE], "Colour?"),
                             ("corrupt", [RED, b"\x89PNG broken"], "Colour?")], parquet=True)
    data = hf_dataset(**where, columns=COLUMNS)  # bytes are not decoded at start-up
    with pytest.raises(VLMTrainError, match=r"train\.parquet\[1\]: record corrupt: image bytes "
                                            "cannot be read"):
        data[1]


def test_list_of_paths(tmp_path):
    for name, colour in (("r.png", RED), ("b.png", BLUE)):
        (tmp_path / name).write_bytes(colour)
    datasets.Dataset.from_dict({"files": [["r.png", "b.png"], ["r.png", "gone.png"]],
                                "caption": ["Red, then blue.", "Red."]}).save_to_disk(
        str(tmp_path / "caps"))
    data = hf_dataset(path=str(tmp_path / "caps"), task="caption", image_root=str(tmp_path),
                      columns={"image": "files", "prompt": None, "target": "caption"},
                      on_bad_sample="skip")
    assert skip_counts(data) == {"data/skipped/missing_image": 1}  # gone.png, at start-up
    assert [_colour(im) for im in data[0].image] == [(255, 0, 0), (0, 0, 255)]


def test_collates_for_both_families(tmp_path, tiny_vlm):
    where = _save(tmp_path, [("one", [RED], "Colour?"),
                             ("two", [RED, BLUE], "Is <image> the colour of <image>?")])
    data = hf_dataset(**where, columns=COLUMNS)
    batch = VLMCollator(tiny_vlm.processor, tiny_vlm.family, 256)([data[0], data[1]])
    image_id = tiny_vlm.processor.tokenizer.convert_tokens_to_ids(tiny_vlm.processor.image_token)
    one, two = (int((row == image_id).sum()) for row in batch["inputs"]["input_ids"])
    assert one > 0 and two == 2 * one  # the same image size: the same tokens per image
    tok = tiny_vlm.processor.tokenizer
    learned = batch["labels"][1][batch["labels"][1] != -100]
    assert tok.decode(learned).startswith("yes")


def test_clipscore_refuses_multi_image_validation(tmp_path):
    """CLIPScore is one caption against one image: at start-up (GenerationEval.setup) and per
    batch, a validation sample with two images is an error naming it, never a made-up score."""
    where = _save(tmp_path, [("one", [RED], "Colour?"), ("two", [RED, BLUE], "Colour?")])
    data = hf_dataset(**where, columns=COLUMNS)
    callback = GenerationEval(metrics={"clipscore": CLIPScore(model_name_or_path="unused"),
                                       "squad": SquadMatch()})
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_set=data))
    with pytest.raises(VLMTrainError, match=r"multi\[1\]: validation record two holds 2 images, "
                                            "but metrics clipscore score one image per caption"):
        callback.setup(trainer, None, "fit")
    callback.metrics.pop("clipscore")
    callback.setup(trainer, None, "fit")  # no image-grounded metric: nothing to refuse
    meta = VLMCollator.meta([data[0], data[1]])
    with pytest.raises(ValueError, match="clipscore: sample two holds 2 images"):
        CLIPScore(model_name_or_path="unused").update(["red", "red"], meta["references"],
                                                      images=meta["images"], ids=meta["ids"])
