"""JSONL reader: the fixture corpus of bad records under ``error`` and ``skip``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from bad_corpus import LATE_BAD, write_images
from torch.utils.data import DataLoader

from vlmtrain.data.bad_records import LOG_FIRST, skip_counts
from vlmtrain.data.images import to_rgb
from vlmtrain.data.jsonl import jsonl_dataset
from vlmtrain.errors import VLMTrainError

SECRET = "PRIVATE-CONTENT-7"  # in every bad line: no message may show a line's content


def _line(**fields) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def _good(i: int, image: str = "rgb.png") -> bytes:
    return _line(id=f"q{i}", image=image, prompt="What colour?", answers=["red", "red", "pink"])


# one bad record of each kind: (reason, the line, what the error says)
BAD_LINES = {
    "missing_image": (_line(id="b1", image="nope.png", prompt=SECRET, answer="a"),
                      "record b1: image file '{root}/nope.png' does not exist"),
    "empty_text": (_line(id="b2", image="rgb.png", prompt=SECRET, answer="  "),
                   "sample b2 has an empty answer; every sample needs a non-empty target"),
    "not_utf8": (b'{"id": "b3", "image": "rgb.png", "prompt": "caf\xe9 ' + SECRET.encode()
                 + b'", "answer": "a"}\n',
                 "the line is not UTF-8 text (byte 0xe9 at column 48); re-save the file as UTF-8"),
    "missing_field": (_line(id="b4", image="rgb.png", answer=SECRET),
                      "record b4 has no 'prompt' field; add it"),
    "wrong_type": (_line(id="b5", image="rgb.png", prompt=SECRET, answer=2),
                   "record b5: 'answer' must be a string, got int 2"),
    "duplicate_id": (_line(id="q0", image="rgb.png", prompt=SECRET, answer="a"),
                     "record q0: this id is already used at {file}:1; give every record a unique"),
    "not_json": (b'{"id": "b7", "prompt": "' + SECRET.encode() + b'"\n',
                 "the line is not valid JSON (Expecting ',' delimiter at column 43); write one JSON"),
    "image_placeholders": (_line(id="b8", image="rgb.png", prompt=f"<image> {SECRET} <image>",
                                 answer="a"),
                           "record b8: the prompt has 2 <image> placeholders for one image"),
}


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("reason", sorted(BAD_LINES))
def test_error_mode_names_file_line_and_fix_without_content(corpus, reason):
    line, expected = BAD_LINES[reason]
    file = _write(corpus / f"{reason}.jsonl", [_good(0), line])
    with pytest.raises(VLMTrainError) as err:
        jsonl_dataset(str(file))
    message = str(err.value)
    assert message.startswith(f"{file}:2: ")
    assert expected.format(root=corpus, file=file) in message
    assert message.endswith("(fix the data or set data.on_bad_sample=skip)")
    assert SECRET not in message and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_skip_mode_counts_each_reason_and_keeps_the_good(corpus, caplog):
    goods = [_good(i, image) for i, image in enumerate(
        ["rgb.png", "cmyk.jpg", "palette.png", "transparent.png", "grey16.png", "one_pixel.png"])]
    lates = [_good(10 + i, image) for i, image in enumerate(LATE_BAD)]
    file = _write(corpus / "mixed.jsonl",
                  goods[:1] + [b"\n"] + [line for line, _ in BAD_LINES.values()] + goods[1:]
                  + lates)
    with caplog.at_level(logging.WARNING):
        data = jsonl_dataset(str(file), on_bad_sample="skip")
    assert skip_counts(data) == {f"data/skipped/{r}": 1 for r in BAD_LINES}
    assert len(data) == len(goods) + len(lates) and data.skipped == len(BAD_LINES)
    assert all("on_bad_sample" not in r.getMessage() and SECRET not in r.getMessage()
               for r in caplog.records)
    assert f"skipping {file}:3: record b1: image file" in caplog.text
    samples = [data[i] for i in range(len(data))]
    assert [s.id for s in samples if s is not None] == [f"q{i}" for i in range(6)]
    assert samples[len(goods):] == [None] * len(lates)  # found late: None, counted once each
    assert skip_counts(data)["data/skipped/unreadable_image"] == len(LATE_BAD)
    # DDP sums only what each rank found itself: every rank checks the same file at start-up
    assert skip_counts(data, late_only=True) == {"data/skipped/unreadable_image": len(LATE_BAD)}
    assert all(s.image.mode == "RGB" for s in samples if s is not None)
    assert samples[0].meta["where"] == f"{file}:1"  # collators name the line too
    assert samples[0].target == "red" and samples[0].references == ("red", "red", "pink")


def test_images_are_converted_not_rejected(corpus):
    file = _write(corpus / "modes.jsonl", [_good(i, image) for i, image in enumerate(
        ["cmyk.jpg", "palette.png", "transparent.png", "grey16.png", "one_pixel.png"])])
    data = jsonl_dataset(str(file))
    cmyk, palette, transparent, grey, pixel = (np.asarray(data[i].image) for i in range(5))
    np.testing.assert_allclose(cmyk[0, 0], (255, 0, 255), atol=3)  # JPEG: near, not exact
    assert tuple(palette[0, 0]) == (255, 0, 0)
    assert tuple(transparent[0, 0]) == (255, 255, 255) and tuple(transparent[0, 1]) == (0, 0, 255)
    # 16-bit -> 8-bit by 255/65535 (Pillow's own convert would clip 32896 and 65535 to 255)
    assert grey[0, :, 0].tolist() == [0, 128, 255]
    assert pixel.shape == (1, 1, 3) and tuple(pixel[0, 0]) == (0, 255, 0)


def test_float_and_32_bit_greyscale(corpus):
    from PIL import Image

    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(to_rgb(as_float))[0, :, 0].tolist() == [0, 128, 255]
    as_int = Image.fromarray(np.array([[0, 100, 255]], np.int32))
    assert np.asarray(to_rgb(as_int))[0, :, 0].tolist() == [0, 100, 255]


def test_late_bad_image_under_error_names_the_line(corpus):
    file = _write(corpus / "late.jsonl", [_good(0), _good(1, "corrupt.jpg")])
    data = jsonl_dataset(str(file))  # exists: passes start-up
    with pytest.raises(VLMTrainError, match=rf"^{file}:2: record q1: image file .*corrupt.jpg' "
                                            "cannot be read as an image"):
        data[1]


def test_preference_records(corpus):
    file = _write(corpus / "pairs.jsonl", [
        _line(id="p1", images=["rgb.png"], prompt="How many?", chosen="two", rejected="three"),
        _line(id="p2", image="rgb.png", prompt="How many?", chosen="Two", rejected="two "),
        _line(id="p3", image="rgb.png", prompt="How many?", answer="one", rejected="four"),
        _line(id="p4", image="rgb.png", prompt="How many?", chosen="one"),
        _line(id="p5", images=["rgb.png", "cmyk.jpg"], prompt="Same?", chosen="y", rejected="n"),
        _line(id="p6", images=["rgb.png", "rgb.png"], prompt="<image> same?", chosen="y",
              rejected="n"),
    ])
    data = jsonl_dataset(str(file), task="preference", on_bad_sample="skip")
    first, third = data[0], data[1]
    assert (first.task, first.target, first.rejected, first.references) == (
        "preference", "two", "three", ("two",))
    assert (third.id, third.target, third.rejected) == ("p3", "one", "four")
    assert skip_counts(data) == {"data/skipped/chosen_equals_rejected": 1,
                                 "data/skipped/missing_field": 1,
                                 "data/skipped/image_placeholders": 1}
    two = data[2]  # several images: one sample, in the order listed
    assert two.id == "p5" and [im.size for im in two.image] == [(8, 6), (8, 8)]
    with pytest.raises(VLMTrainError, match=rf"{file}:2: sample p2 has rejected == chosen"):
        jsonl_dataset(str(file), task="preference")


def test_skip_counts_reach_the_main_process_from_workers(corpus):
    lines = [_good(i) for i in range(6)] + [_good(10 + i, image) for i, image in
                                            enumerate(LATE_BAD * 2)]
    file = _write(corpus / "workers.jsonl", lines)
    for context in ("fork", "spawn"):
        data = jsonl_dataset(str(file), on_bad_sample="skip")
        loader = DataLoader(data, batch_size=2, num_workers=2, collate_fn=list,
                            multiprocessing_context=context)
        seen = [s for batch in loader for s in batch]
        assert sum(s is None for s in seen) == 2 * len(LATE_BAD)
        assert skip_counts(data) == {"data/skipped/unreadable_image": 2 * len(LATE_BAD)}, context


def test_only_the_first_skips_are_logged(corpus, caplog):
    file = _write(corpus / "many.jsonl", [_good(0)] + [
        _line(id=f"e{i}", image="rgb.png", prompt="Q?", answer="") for i in range(LOG_FIRST + 5)])
    with caplog.at_level(logging.WARNING):
        data = jsonl_dataset(str(file), on_bad_sample="skip")
    assert data.skipped == LOG_FIRST + 5 and len(caplog.records) == LOG_FIRST + 1
    assert "further skipped records are counted, not logged" in caplog.records[-1].getMessage()


def test_file_level_problems(corpus):
    with pytest.raises(VLMTrainError, match="data file '.*nope.jsonl' does not exist"):
        jsonl_dataset(str(corpus / "nope.jsonl"))
    only_bad = _write(corpus / "only_bad.jsonl", [BAD_LINES["empty_text"][0]])
    with pytest.raises(VLMTrainError, match="holds no usable record .all were skipped as bad."):
        jsonl_dataset(str(only_bad), on_bad_sample="skip")
    with pytest.raises(VLMTrainError, match="data.on_bad_sample='ignore' is not one of"):
        jsonl_dataset(str(only_bad), on_bad_sample="ignore")
    with pytest.raises(VLMTrainError, match="data.\\*.task='qa' is not one of"):
        jsonl_dataset(str(only_bad), task="qa")
    bom = _write(corpus / "bom.jsonl", [b"\xef\xbb\xbf" + _good(0)])
    assert jsonl_dataset(str(bom))[0].id == "q0"
