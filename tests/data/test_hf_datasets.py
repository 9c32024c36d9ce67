"""Hugging Face ``datasets`` folders and parquet files with an Image column."""

from __future__ import annotations

import datasets  # installed with trl
import numpy as np
import pytest
from bad_corpus import png_bytes

from vlmtrain.data.bad_records import skip_counts
from vlmtrain.data.hf_datasets import hf_dataset
from vlmtrain.errors import VLMTrainError


def _vqa_rows() -> dict[str, list]:
    red, blue = png_bytes((255, 0, 0)), png_bytes((0, 0, 255))
    return {
        "qid": ["a", "b", "c", "d", "e", "f"],
        "image": [{"bytes": red, "path": None}, {"bytes": blue, "path": None},
                  {"bytes": b"\x89PNG broken", "path": None},   # decodes late: None + counted
                  None,                                         # no image
                  {"bytes": red, "path": None}, {"bytes": red, "path": None}],
        "question": ["Colour?", "Colour?", "Colour?", "Colour?", "Colour?", "<image>Colour?"],
        "answers": [["red", "red", "dark red"], ["blue"], ["red"], ["red"], ["  "], ["red"]],
    }


def _features(**extra):
    return datasets.Features({"qid": datasets.Value("string"), "image": datasets.Image(),
                              "question": datasets.Value("string"), **extra})


@pytest.fixture(scope="module")
def vqa_disk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vqa"
    ds = datasets.Dataset.from_dict(
        _vqa_rows(), features=_features(answers=datasets.Sequence(datasets.Value("string"))))
    datasets.DatasetDict({"train": ds, "validation": ds.select([0, 1])}).save_to_disk(str(folder))
    return folder


COLUMNS = {"id": "qid", "prompt": "question", "target": None, "references": "answers"}


def test_disk_dataset_with_image_feature(vqa_disk):
    data = hf_dataset(path=str(vqa_disk), columns=COLUMNS, on_bad_sample="skip")
    assert skip_counts(data) == {"data/skipped/missing_image": 1, "data/skipped/empty_text": 1}
    samples = [data[i] for i in range(len(data))]
    assert [s.id if s else None for s in samples] == ["a", "b", None, "f"]
    assert skip_counts(data)["data/skipped/unreadable_image"] == 1  # row c, found when read
    first = samples[0]
    assert (first.prompt, first.target, first.references) == ("Colour?", "red",
                                                              ("red", "red", "dark red"))
    assert tuple(np.asarray(samples[1].image)[0, 0]) == (0, 0, 255)
    assert samples[3].prompt == "Colour?"  # placeholder removed
    val = hf_dataset(path=str(vqa_disk), split="validation", columns=COLUMNS)
    assert [val[i].id for i in range(len(val))] == ["a", "b"]


def test_error_names_the_row(vqa_disk):
    with pytest.raises(VLMTrainError, match=r"vqa\[3\]: record d has no image; give every "
                                            "image"):
        hf_dataset(path=str(vqa_disk), columns=COLUMNS)


def test_parquet_preference_pairs(tmp_path):
    red = png_bytes()
    rows = {"qid": ["p1", "p2", "p3"],
            "image": [{"bytes": red, "path": None}] * 3,
            "question": ["How many?"] * 3,
            "chosen": ["two", "Two", "one"], "rejected": ["three", "two", "four"]}
    ds = datasets.Dataset.from_dict(rows, features=_features(
        chosen=datasets.Value("string"), rejected=datasets.Value("string")))
    ds.to_parquet(str(tmp_path / "train-00000.parquet"))
    data = hf_dataset(data_files=str(tmp_path / "train-00000.parquet"), task="preference",
                      columns={"id": "qid", "target": "chosen", "rejected": "rejected"},
                      on_bad_sample="skip")
    assert skip_counts(data) == {"data/skipped/chosen_equals_rejected": 1}
    first = data[0]
    assert (first.task, first.target, first.rejected, first.references) == (
        "preference", "two", "three", ("two",))
    assert data[1].id == "p3"


def test_string_image_paths_against_image_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "1.png").write_bytes(png_bytes((0, 255, 0)))
    ds = datasets.Dataset.from_dict({"file": ["1.png", "2.png"], "caption": ["Green.", "Gone."]})
    ds.save_to_disk(str(tmp_path / "caps"))
    data = hf_dataset(path=str(tmp_path / "caps"), task="caption",
                      image_root=str(tmp_path / "imgs"),
                      columns={"image": "file", "prompt": None, "target": "caption"},
                      on_bad_sample="skip")
    assert skip_counts(data) == {"data/skipped/missing_image": 1}
    sample = data[0]
    assert (sample.id, sample.prompt, sample.target) == ("train-0", "", "Green.")
    assert tuple(np.asarray(sample.image)[0, 0]) == (0, 255, 0)


def test_config_errors_are_one_line(vqa_disk):
    with pytest.raises(VLMTrainError, match=r"columns \['answer'\] are not in the dataset"):
        hf_dataset(path=str(vqa_disk))
    with pytest.raises(VLMTrainError, match=r"has no split 'test'; splits: train, validation"):
        hf_dataset(path=str(vqa_disk), split="test", columns=COLUMNS)
    with pytest.raises(VLMTrainError, match=r"unknown fields \['answer'\]"):
        hf_dataset(path=str(vqa_disk), columns={"answer": "answers"})
    with pytest.raises(VLMTrainError, match="task=preference needs data.\\*.columns.rejected"):
        hf_dataset(path=str(vqa_disk), columns=COLUMNS, task="preference")
    with pytest.raises(VLMTrainError, match="exactly one of path .* and data_files"):
        hf_dataset()
