"""The synthetic shapes world: determinism, disjoint splits, answers that match the pixels."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrain.data.records import ImageNotFoundError, Sample, check_sample, load_image
from vlmtrain.data.shapes import ShapesDataset, chance_level, corpus_texts
from vlmtrain.data.shapes_doc import DOC_WORDS
from vlmtrain.data.shapes_render import COLOURS, COLUMNS, KINDS, ROWS
from vlmtrain.data.shapes_vqa import QTYPES, SYNONYMS, answer_space

TASKS = ("caption", "vqa", "doc", "preference", "pair")
RGB_TO_COLOUR = {rgb: name for name, rgb in COLOURS.items()}


def _digest(sample: Sample) -> str:
    h = hashlib.sha256(sample.image.tobytes())
    h.update(repr((sample.id, sample.prompt, sample.target, sample.references, sample.rejected,
                   sorted(sample.meta.items()))).encode())
    return h.hexdigest()


def _components(image: Image.Image) -> list[dict]:
    """Connected blobs of non-background pixels (4-connectivity), measured from pixels only."""
    arr = np.asarray(image).astype(np.int64)
    packed = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    ink = packed != values[counts.argmax()]
    # Plain-Python flood fill over a set: numpy scalar indexing would be ~10x slower here.
    unvisited = set(zip(*(a.tolist() for a in np.nonzero(ink)), strict=True))
    blobs = []
    while unvisited:
        queue, pixels = deque([unvisited.pop()]), []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for neighbour in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if neighbour in unvisited:
                    unvisited.remove(neighbour)
                    queue.append(neighbour)
        ys, xs = np.array(pixels).T
        colours = {(v >> 16, (v >> 8) & 255, v & 255) for v in packed[ys, xs].tolist()}
        blobs.append({"area": len(pixels), "cx": xs.mean(), "cy": ys.mean(), "colours": colours,
                      "ys": ys, "xs": xs})
    return blobs


def _kind_from_pixels(blob: dict) -> str:
    ys, xs = blob["ys"], blob["xs"]
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = blob["area"] / (h * w)
    if fill > 0.95:
        return "square"
    widths = Counter(ys.tolist())
    widest_row = max(widths, key=lambda y: (widths[y], y))
    if fill > 0.65:
        return "circle"
    return "triangle" if widest_row - ys.min() > 0.75 * (h - 1) else "diamond"


def _observed_scene(image: Image.Image) -> list[dict]:
    """Colour, kind, grid cell and size of each blob, read from the pixels alone."""
    cell = image.size[0] / 3
    scene = []
    for blob in _components(image):
        (rgb,) = blob["colours"]  # one flat colour per shape: no antialiasing, no overlap
        extent = max(np.ptp(blob["ys"]), np.ptp(blob["xs"])) + 1
        scene.append({"colour": RGB_TO_COLOUR[rgb], "kind": _kind_from_pixels(blob),
                      "col": int(blob["cx"] // cell), "row": int(blob["cy"] // cell),
                      "size": "large" if extent > 0.6 * cell else "small"})
    return sorted(scene, key=lambda s: (s["row"], s["col"]))


def _truth(prompt: str, scene: list[dict]) -> str:
    """Answer a VQA question from an observed scene, independently of the generator."""
    colours, kinds = "|".join(COLOURS), "|".join(KINDS)
    described = re.search(rf"\b({colours}) ({kinds})\b", prompt)
    matching = [s for s in scene if described and (s["colour"], s["kind"]) == described.groups()]
    if prompt.startswith("How many"):
        return str(len(scene))
    if prompt.startswith("Is there"):
        return "yes" if matching else "no"
    if "colour" in prompt:
        kind = re.search(rf"\b({kinds})\b", prompt)
        (shape,) = [s for s in scene if kind is None or s["kind"] == kind.group(1)]
        return shape["colour"]
    if "shape is" in prompt:
        colour = re.search(rf"\b({colours})\b", prompt).group(1)
        (shape,) = [s for s in scene if s["colour"] == colour]
        return shape["kind"]
    (shape,) = matching
    if "left" in prompt:
        return COLUMNS[shape["col"]]
    if "top" in prompt:
        return ROWS[shape["row"]]
    return shape["size"]


@pytest.mark.parametrize("task", TASKS)
def test_same_index_gives_identical_sample(task: str) -> None:
    first = ShapesDataset(task, "train", size=40, seed=3)
    again = ShapesDataset(task, "train", size=40, seed=3)
    for i in (0, 7, 39):
        assert _digest(first[i]) == _digest(first[i]) == _digest(again[i])
    other_seed = ShapesDataset(task, "train", size=40, seed=4)
    assert [_digest(first[i]) for i in range(10)] != [_digest(other_seed[i]) for i in range(10)]


def test_identical_across_processes() -> None:
    code = ("import hashlib\nfrom vlmtrain.data.shapes import ShapesDataset\n"
            "from vlmtrain.data.records import Sample\n" + inspect.getsource(_digest) +
            "for t in ('caption', 'vqa', 'doc', 'preference', 'pair'):\n"
            "    d = ShapesDataset(t, 'val', size=5)\n"
            "    print(*[_digest(d[i]) for i in range(5)])\n")
    root = Path(__file__).resolve().parents[2]
    # A different hash salt: the generator must not depend on Python's hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root, check=True).stdout.split("\n")
    for task, line in zip(TASKS, out[:len(TASKS)], strict=True):
        d = ShapesDataset(task, "val", size=5)
        assert line.split() == [_digest(d[i]) for i in range(5)]


@pytest.mark.parametrize("task", ("vqa", "caption", "doc"))
def test_splits_share_no_image(task: str) -> None:
    images = {split: {hashlib.sha256(s.image.tobytes()).digest()
                      for s in ShapesDataset(task, split, size=300)} for split in
              ("train", "val", "test")}
    assert not images["train"] & images["val"]
    assert not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert len(images["val"]) > 290  # and hardly any repeats within a split


def test_vqa_answers_match_the_pixels() -> None:
    data = ShapesDataset("vqa", "val", size=400)
    for sample in data:
        scene = _observed_scene(sample.image)
        from_meta = [{k: s[k] for k in ("colour", "kind", "col", "row", "size")}
                     for s in sample.meta["shapes"]]
        assert scene == from_meta, sample.id
        assert sample.target == _truth(sample.prompt, scene), (sample.id, sample.prompt)
        assert sample.target == sample.meta["answer"]


@pytest.mark.parametrize("mode", ["fresh", "independent"])
def test_followup_questions_are_about_the_same_pixels(mode: str) -> None:
    multi = ShapesDataset("vqa", "val", size=300, questions_per_image=6, followups=mode)
    single = ShapesDataset("vqa", "val", size=300)
    types: Counter = Counter()
    lengths: Counter = Counter()
    for i, sample in enumerate(multi):
        check_sample(sample)
        # the first turn is the sample without follow-ups, bit for bit
        assert _digest(sample) == _digest(single[i])
        # a small scene can run out of facts not yet told; independent turns never run out
        assert 1 <= len(sample.followups) <= 5 if mode == "fresh" else len(sample.followups) == 5
        scene = _observed_scene(sample.image)
        for question, answer in sample.followups:
            assert answer == _truth(question, scene), (sample.id, question)
            types[next(q for q in QTYPES if answer in answer_space(q, 3))] += 1
        lengths[len(sample.followups)] += 1
    assert set(types) == set(QTYPES)  # every question type shows up as a follow-up
    assert lengths[5] > 0.5 * len(multi)
    with pytest.raises(ValueError, match="questions_per_image"):
        ShapesDataset("caption", questions_per_image=2)
    with pytest.raises(ValueError, match="followups mode 'fersh'"):
        ShapesDataset("vqa", questions_per_image=2, followups="fersh")


def _fact(question: str, answer: str, scene: list[dict]) -> tuple[str, int | None, bool]:
    """What a turn asks, about which shape (index in ``scene``), and whether the turn says that
    shape's colour and kind together (in the question, or through the answer)."""
    colours, kinds = "|".join(COLOURS), "|".join(KINDS)
    described = re.search(rf"\b({colours}) ({kinds})\b", question)
    pair = described.groups() if described else None
    if question.startswith("How many"):
        return "count", None, False
    if question.startswith("Is there"):
        hit = [i for i, s in enumerate(scene) if (s["colour"], s["kind"]) == pair]
        return f"exists {pair}", hit[0] if hit else None, bool(hit)
    if "colour" in question:
        kind = re.search(rf"\b({kinds})\b", question)
        (i,) = [i for i, s in enumerate(scene) if kind is None or s["kind"] == kind.group(1)]
        return "colour", i, True
    if "shape is" in question:
        (i,) = [i for i, s in enumerate(scene) if s["colour"] == re.search(
            rf"\b({colours})\b", question).group(1)]
        return "shape", i, True
    (i,) = [i for i, s in enumerate(scene) if (s["colour"], s["kind"]) == pair]
    axis = "h" if "left" in question else "v" if "top" in question else "size"
    return axis, i, True


def test_followups_cannot_be_answered_from_earlier_turns() -> None:
    """A conversation never asks what it has already said: no fact twice, and no colour or shape
    question about a shape whose colour and kind an earlier turn said together."""
    data = ShapesDataset("vqa", "train", size=400, questions_per_image=6, followups="fresh")
    told = 0
    for sample in ShapesDataset("vqa", "train", size=400, questions_per_image=6,
                                followups="independent"):  # the leak this guards against
        earlier = f"{sample.prompt} {sample.target}"
        for question, answer in sample.followups:
            told += answer in earlier.replace("?", " ").split()
            earlier += f" {question} {answer}"
    assert told > 0.25 * 400 * 5
    for sample in data:
        scene = _observed_scene(sample.image)
        named: set[int] = set()
        asked: set[tuple[str, int | None]] = set()
        for question, answer in [(sample.prompt, sample.target), *sample.followups]:
            kind, shape, names = _fact(question, answer, scene)
            assert (kind, shape) not in asked, (sample.id, question)
            if kind in ("colour", "shape") or kind.startswith("exists"):
                assert shape is None or shape not in named, (sample.id, question, "told before")
            asked.add((kind, shape))
            if names:
                named.add(shape)


def test_vqa_references_and_balance() -> None:
    data = ShapesDataset("vqa", "val", size=3000)
    answers: dict[str, Counter] = {q: Counter() for q in QTYPES}
    deviating = 0
    for sample in data:
        check_sample(sample)
        assert len(sample.references) == 10
        counts = Counter(sample.references)
        assert counts.most_common(1)[0] == (sample.target, counts[sample.target])
        assert counts[sample.target] >= 8
        deviating += counts[sample.target] < 10
        answers[sample.meta["qtype"]][sample.target] += 1
        assert re.fullmatch(r"[a-z0-9]+", sample.target)
    assert 0.03 < deviating / len(data) < 0.13
    levels = chance_level()
    for qtype, counter in answers.items():
        total = sum(counter.values())
        assert 400 < total < 600
        assert set(counter) == set(answer_space(qtype, 3))
        # Balanced: the majority baseline measured on val is the analytic one.
        assert abs(max(counter.values()) / total - levels[qtype]["majority"]) < 0.07, qtype


def test_question_type_weights() -> None:
    data = ShapesDataset("vqa", "train", size=50, question_types={"count": 1, "exists": 0})
    assert {s.meta["qtype"] for s in data} == {"count"}
    with pytest.raises(ValueError, match="unknown question type.*colour"):
        ShapesDataset("vqa", question_types={"color": 1})
    with pytest.raises(ValueError, match="max_shapes"):
        ShapesDataset("vqa", max_shapes=10)


def test_chance_levels() -> None:
    levels = chance_level()
    assert levels["count"]["majority"] == pytest.approx(1 / 3)
    assert levels["colour"]["uniform"] == pytest.approx(1 / 6)
    assert levels["position"]["blind"] == pytest.approx(1 / 3)
    assert levels["overall"]["majority"] == pytest.approx((1 / 3 + 1 / 6 + 1 / 4 + 1 / 6 + 1) / 6)
    assert levels["overall"]["constant"] == pytest.approx(1 / 12)
    only_yes_no = chance_level({"exists": 1.0})
    assert only_yes_no["overall"] == pytest.approx(
        {"majority": 0.5, "uniform": 0.5, "blind": 0.5, "constant": 0.5})
    assert chance_level(max_shapes=5)["count"]["uniform"] == pytest.approx(0.2)


def test_preference_rejected_is_a_plausible_wrong_answer() -> None:
    for sample in ShapesDataset("preference", "val", size=400):
        check_sample(sample)
        assert sample.rejected not in (sample.target, *SYNONYMS.get(sample.target, ()))
        # A careless annotator may have said it (near-miss), but never the majority.
        assert Counter(sample.references)[sample.rejected] <= 2
        qtype = sample.meta["qtype"]
        assert sample.rejected in answer_space(qtype, 4), (qtype, sample.rejected)


def test_captions_describe_every_shape_and_rotate() -> None:
    data = ShapesDataset("caption", "val", size=200)
    for i, sample in enumerate(data):
        check_sample(sample)
        assert len(set(sample.references)) == 5
        assert sample.target == sample.references[i % 5]
        for caption in sample.references:
            for shape in sample.meta["shapes"]:
                assert f"{shape['colour']} {shape['kind']}" in caption, (caption, shape)
    data.set_epoch(3)
    assert data[1].target == data[1].references[(1 + 3) % 5]
    pair = ShapesDataset("pair", "val", size=5)[0]
    assert pair.prompt == "" and pair.target in pair.references and pair.task == "pair"


def test_listing_names_every_shape_where_the_pixels_are() -> None:
    data = ShapesDataset("caption", "val", size=150, image_size=48, caption_style="listing")
    for sample in data:
        check_sample(sample)
        observed = _observed_scene(sample.image)  # reading order, measured from pixels only
        expected = "; ".join(f"{ROWS[s['row']]} {COLUMNS[s['col']]}: {s['size']} {s['colour']} "
                             f"{s['kind']}" for s in observed)
        assert sample.target == expected and sample.references == (expected,), sample.id
        assert sample.prompt == "Describe the shapes."
    with pytest.raises(ValueError, match="caption_style.*references, listing"):
        ShapesDataset("caption", caption_style="grid")


def test_doc_pages_have_ink_where_the_words_are() -> None:
    for sample in ShapesDataset("doc", "val", size=150):
        check_sample(sample)
        page = np.asarray(sample.image).astype(int)
        ink = page.max(axis=-1) < 128
        outside = ink.copy()
        texts = [item["text"] for item in sample.meta["items"]]
        for item in sample.meta["items"]:
            x0, y0, x1, y1 = item["box"]
            assert 0 <= x0 < x1 <= page.shape[1] and 0 <= y0 < y1 <= page.shape[0], item
            assert ink[y0:y1, x0:x1].sum() > 10, (sample.id, item)
            outside[y0:y1, x0:x1] = False
        assert not outside.any(), sample.id
        assert sample.target in texts
        assert sample.references[0] == sample.target
        assert all(r.lower() == sample.target.lower() for r in sample.references)
        qtype, words = sample.meta["qtype"], [t for t in texts if not t.isdigit()]
        expected = {"top": texts[0], "bottom": texts[-1], "first_word": words[0] if words else "",
                    "last_word": words[-1] if words else ""}
        if qtype in expected:
            assert sample.target == expected[qtype]
        elif qtype == "number":
            assert sample.target.isdigit() and sum(t.isdigit() for t in texts) == 1
        else:
            assert texts[texts.index(sample.meta["anchor"]) + 1] == sample.target


def test_corpus_covers_every_word() -> None:
    corpus = corpus_texts(n=200)
    vocabulary = {w for text in corpus for w in re.findall(r"[A-Za-z0-9]+", text)}
    assert {w.upper() for w in DOC_WORDS} <= vocabulary and "999" in vocabulary
    for task in TASKS:
        for sample in ShapesDataset(task, "test", size=300, seed=11):
            for text in (sample.prompt, *sample.references, sample.rejected or ""):
                missing = set(re.findall(r"[A-Za-z0-9]+", text)) - vocabulary
                assert not missing, (sample.id, text)


def test_generation_speed_sanity() -> None:
    data = ShapesDataset("vqa", "train", size=1000)
    start = time.perf_counter()
    samples = [data[i] for i in range(1000)]
    elapsed = time.perf_counter() - start
    print(f"1000 vqa samples at 64 px: {elapsed:.3f} s")
    assert len(samples) == 1000 and samples[-1].image.size == (64, 64)
    with pytest.raises(IndexError):
        data[1000]


def _sample(**changes) -> Sample:
    fields = {"id": "vqa-train-000012", "image": Image.new("RGB", (8, 8)), "prompt": "How many?",
              "target": "2", "references": ("2",) * 10, "task": "vqa"}
    return Sample(**{**fields, **changes})


def test_check_sample_names_the_record_and_the_fix() -> None:
    check_sample(_sample())
    with pytest.raises(ValueError) as err:
        check_sample(_sample(target=""))
    assert str(err.value) == (
        "sample vqa-train-000012 has an empty answer; every sample needs a non-empty target "
        "(fix the data or set data.on_bad_sample=skip)")
    with pytest.raises(ValueError, match="vqa-train-000012 has an image in mode 'L'.*convert"):
        check_sample(_sample(image=Image.new("L", (8, 8))))
    with pytest.raises(ValueError, match="vqa-train-000012 has no references"):
        check_sample(_sample(references=()))
    with pytest.raises(ValueError, match="vqa-train-000012 is a preference pair without"):
        check_sample(_sample(task="preference"))
    with pytest.raises(ValueError, match="rejected == chosen"):
        check_sample(_sample(task="preference", rejected="2"))
    with pytest.raises(ValueError, match="unknown task 'qa'"):
        check_sample(_sample(task="qa"))
    with pytest.raises(ValueError, match="vqa-train-000012 has a malformed turn 3 .*pair of non"):
        check_sample(_sample(followups=(("How many?", "2"), ("Which colour?", ""))))


def test_load_image_names_record_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageNotFoundError, match=f"record cap-7: image file '{missing}' does not"):
        load_image(missing, "cap-7", source="captions.jsonl")
    with pytest.raises(FileNotFoundError, match="captions.jsonl"):
        load_image(missing, "cap-7", source="captions.jsonl")
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 4), 7).save(grey)
    image = load_image(grey, "cap-8")
    assert image.mode == "RGB" and image.size == (5, 4)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="record cap-9: image file .*broken.png' cannot be read"):
        load_image(broken, "cap-9")
