"""Readers of published formats: what each record becomes, and the same bad-record policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from format_fixtures import BAD, CAPTIONS, GOOD, WRITERS

from vlmtrain.data.bad_records import skip_counts
from vlmtrain.data.coco import coco_captions
from vlmtrain.data.docvqa import docvqa
from vlmtrain.data.llava import llava_conversations
from vlmtrain.data.records import images_of
from vlmtrain.data.vqav2 import vqav2
from vlmtrain.errors import VLMTrainError

READERS = {"coco": coco_captions, "vqav2": vqav2, "docvqa": docvqa, "llava": llava_conversations}
# the first bad record each reader meets under on_bad_sample=error
FIRST_ERROR = {
    "coco": r"captions_train2017.json annotations\[6\]: the caption of image 2 \(annotation 21\)"
            r" is empty; remove the annotation \(fix the data or set data.on_bad_sample=skip\)$",
    "vqav2": r"questions.json questions\[3\]: question 21 has no annotation in the annotations "
             "file",
    "docvqa": r"val_v1.0.json data\[2\]: record 49155 has no 'answers' field; add it",
    "llava": r"llava.json\[2\]: record text-only has no 'image' \(a text-only conversation\)",
}


@pytest.fixture(scope="module", params=sorted(READERS))
def fmt(request, tmp_path_factory):
    name = request.param
    return name, WRITERS[name](tmp_path_factory.mktemp(name))


def test_skip_counts_per_reason_and_keeps_the_good(fmt):
    name, files = fmt
    data = READERS[name](**files, on_bad_sample="skip")
    assert skip_counts(data) == {f"data/skipped/{r}": n for r, n in BAD[name].items()}
    samples = [data[i] for i in range(len(data))]
    assert [s.id for s in samples] == GOOD[name]
    images = [im for s in samples for im in images_of(s)]
    assert all(im.mode == "RGB" and im.size == (8, 8) for im in images)


def test_error_names_file_index_and_fix(fmt):
    name, files = fmt
    with pytest.raises(VLMTrainError, match=FIRST_ERROR[name]):
        READERS[name](**files)


def test_coco_captions_rotate_through_the_references(tmp_path):
    data = coco_captions(**WRITERS["coco"](tmp_path), on_bad_sample="skip")
    first = data[0]
    assert (first.id, first.task, first.prompt) == ("1", "caption", "Describe the image.")
    assert first.references == tuple(CAPTIONS) and first.target == CAPTIONS[0]
    assert data[1].references == ("A blue square.",)  # its bad captions dropped, counted
    data.set_epoch(3)
    assert data[0].target == CAPTIONS[3] and data[1].target == "A blue square."
    np.testing.assert_allclose(np.asarray(data[1].image)[0, 0], (0, 0, 255), atol=2)  # JPEG


def test_coco_non_utf8_caption_is_named_without_its_text(tmp_path):
    files = WRITERS["coco"](tmp_path)
    raw = json.loads((tmp_path / "annotations" / "captions_train2017.json").read_bytes()
                     .decode("latin-1"))
    raw["annotations"] = [a for a in raw["annotations"] if a["id"] not in (21, 22)]
    (tmp_path / "annotations" / "captions_train2017.json").write_bytes(
        json.dumps(raw, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(VLMTrainError) as err:
        coco_captions(**files)
    assert str(err.value) == (
        f"{files['annotations']} annotations[6]: record 2 (annotation 23): 'caption' is not "
        "UTF-8 text (byte 0xe9 at character 5); re-save the file as UTF-8 (fix the data or set "
        "data.on_bad_sample=skip)")


def test_vqav2_ten_answers_become_references_most_common_the_target(tmp_path):
    files = WRITERS["vqav2"](tmp_path)
    data = vqav2(**files, on_bad_sample="skip")
    how_many, colour, yes = data[0], data[1], data[2]
    assert how_many.references == ("2",) * 3 + ("3",) * 3 + ("two",) * 4
    assert how_many.target == "two" and how_many.prompt == "How many squares?"
    assert colour.target == "red"  # 5 red, 5 pink: the first listed
    assert yes.target == "yes" and len(yes.references) == 10
    assert dict(how_many.meta) == {"image_id": 1, "question_type": "how many",
                                   "answer_type": "other", "where": f"{files['questions']} "
                                                                    "questions[0]"}


def test_vqav2_image_pattern_is_checked(tmp_path):
    files = WRITERS["vqav2"](tmp_path)
    with pytest.raises(VLMTrainError, match=r"image_pattern='\{split\}.jpg' is not a format"):
        vqav2(**files, image_pattern="{split}.jpg")


def test_docvqa_answers(tmp_path):
    data = docvqa(**WRITERS["docvqa"](tmp_path), on_bad_sample="skip")
    first = data[0]
    assert (first.task, first.prompt, first.target) == ("doc", "What is the date?",
                                                        "May 5, 1999")
    assert first.references == ("May 5, 1999", "5 May 1999")
    assert dict(first.meta) == {"docId": 1, "question_types": ["form"],
                                "where": f"{tmp_path / 'val_v1.0.json'} data[0]"}


def test_llava_turns_and_placeholders(tmp_path):
    data = llava_conversations(**WRITERS["llava"](tmp_path), on_bad_sample="skip")
    multi, mid = data[0], data[1]
    assert (multi.prompt, multi.target) == ("What colour is the square?", "Red.")
    assert multi.followups == (("How many squares?", "One."), ("Is it big?", "No."))
    assert multi.references == ("Red.",) and multi.task == "vqa"
    assert (mid.prompt, mid.target, mid.followups) == ("What is in this picture?", "A square.",
                                                       ())


def test_llava_several_images_go_where_the_first_question_marks_them(tmp_path):
    data = llava_conversations(**WRITERS["llava"](tmp_path), on_bad_sample="skip")
    two = data[2]
    assert two.id == "two-images" and len(two.image) == 2
    assert all(im.mode == "RGB" for im in two.image)
    assert two.prompt == "<image><image>Same?"  # the placeholders place the images


def test_llava_images_and_placeholders_that_disagree_name_the_record(tmp_path):
    files = WRITERS["llava"](tmp_path)
    records = json.loads((tmp_path / "llava.json").read_text())
    (tmp_path / "llava.json").write_text(json.dumps([records[0], records[4]]))
    with pytest.raises(VLMTrainError, match=r"llava.json\[1\]: record two-images-one-mark has 2 "
                                            r"images and 1 <image> placeholder\(s\) in its first "
                                            "question"):
        llava_conversations(**files)


def test_not_the_format_is_one_line(tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"data": []}))
    with pytest.raises(VLMTrainError, match="is not a COCO captions file: it needs 'images'"):
        coco_captions(str(wrong), str(tmp_path))
    with pytest.raises(VLMTrainError, match="is not a LLaVA conversation file"):
        llava_conversations(str(wrong), str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [1, 2')
    with pytest.raises(VLMTrainError, match=r"broken.json:1:15: not valid JSON \(Expecting"):
        docvqa(str(broken))
    with pytest.raises(VLMTrainError, match="DocVQA file '.*nope.json' does not exist"):
        docvqa(str(tmp_path / "nope.json"))
