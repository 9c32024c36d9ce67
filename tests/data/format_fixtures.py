"""Tiny copies of published formats (COCO captions, VQAv2, DocVQA, LLaVA), written to a folder.

Each holds good records and one bad record of each kind the reader must catch; ``BAD`` lists
the expected skip counts per format, ``GOOD`` the ids that survive.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

CAPTIONS = ["A red square.", "A square, red.", "Red square on white.", "A small red shape.",
            "One red square."]


def _image(path: Path, colour=(255, 0, 0)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path.name


def write_coco(root: Path) -> dict[str, str]:
    images = root / "train2017"
    _image(images / "000000000001.jpg")
    _image(images / "000000000002.jpg", (0, 0, 255))
    entries = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 8, "width": 8} for i in (1, 2, 3)]
    entries.append({"id": 4, "file_name": "000000000001.jpg"})  # no caption at all
    anns = [{"id": 10 + k, "image_id": 1, "caption": c} for k, c in enumerate(CAPTIONS)]
    anns += [{"id": 20, "image_id": 2, "caption": "A blue square."},
             {"id": 21, "image_id": 2, "caption": "   "},              # empty
             {"id": 22, "image_id": 2, "caption": ["not", "text"]},   # wrong type
             {"id": 23, "image_id": 2, "caption": "BADBYTE"},         # not UTF-8 (below)
             {"id": 24, "image_id": 3, "caption": "No file."}]        # image 3 has no file
    path = root / "annotations" / "captions_train2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"info": {}, "images": entries, "annotations": anns})
    path.write_bytes(text.encode().replace(b"BADBYTE", b"Bleu \xe9t\xe9"))  # latin-1 bytes
    return {"annotations": str(path), "images": str(images)}


def write_vqav2(root: Path) -> dict[str, str]:
    images = root / "val2014"
    for i in (1, 2):
        _image(images / f"COCO_val2014_{i:012d}.jpg")
    questions = [
        {"image_id": 1, "question": "How many squares?", "question_id": 10},
        {"image_id": 1, "question": "What colour?", "question_id": 11},
        {"image_id": 2, "question": "Is it red?", "question_id": 20},
        {"image_id": 2, "question": "No annotation?", "question_id": 21},
        {"image_id": 9, "question": "Missing image?", "question_id": 90},
        {"image_id": 1, "question": 5, "question_id": 12},
    ]
    answers = {10: ["2"] * 3 + ["3"] * 3 + ["two"] * 4,  # most common: "two"
               11: ["red"] * 5 + ["pink"] * 5,          # a tie: the first listed wins
               20: ["yes"] * 9 + ["no"], 90: ["x"] * 10, 12: ["y"] * 10}
    anns = [{"question_id": q, "image_id": 1, "question_type": "how many", "answer_type": "other",
             "multiple_choice_answer": a[0],
             "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1}
                         for k, x in enumerate(a)]} for q, a in answers.items()]
    qpath, apath = root / "questions.json", root / "annotations.json"
    qpath.write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    apath.write_text(json.dumps({"annotations": anns}))
    return {"questions": str(qpath), "annotations": str(apath), "images": str(images)}


def write_docvqa(root: Path) -> dict[str, str]:
    _image(root / "documents" / "page1.png", (255, 255, 255))
    data = [
        {"questionId": 49153, "question": "What is the date?", "image": "documents/page1.png",
         "docId": 1, "question_types": ["form"], "answers": ["May 5, 1999", "5 May 1999 "]},
        {"questionId": 49154, "question": "Who signed?", "image": "documents/page1.png",
         "docId": 1, "answers": ["J. Smith"]},
        {"questionId": 49155, "question": "Test split?", "image": "documents/page1.png"},
        {"questionId": 49156, "question": "Lost page?", "image": "documents/page9.png",
         "answers": ["x"]},
    ]
    path = root / "val_v1.0.json"
    path.write_text(json.dumps({"dataset_name": "docvqa", "dataset_split": "val", "data": data}))
    return {"annotations": str(path)}


def _turns(*texts: str) -> list[dict]:
    return [{"from": "human" if k % 2 == 0 else "gpt", "value": t} for k, t in enumerate(texts)]


def write_llava(root: Path) -> dict[str, str]:
    _image(root / "images" / "coco" / "a.jpg")
    records = [
        {"id": "multi", "image": "coco/a.jpg", "conversations": _turns(
            "<image>\nWhat colour is the square?", "Red.", "How many squares?", "One.",
            "Is it big?", "No.")},
        {"id": "mid", "image": ["coco/a.jpg"], "conversations": [
            {"from": "user", "value": "What is in <image> this picture?"},
            {"from": "assistant", "value": "A square."}]},
        {"id": "text-only", "conversations": _turns("Hello?", "Hi.")},
        {"id": "two-images", "image": ["coco/a.jpg", "coco/a.jpg"],
         "conversations": _turns("<image><image>Same?", "Yes.")},
        {"id": "two-images-one-mark", "image": ["coco/a.jpg", "coco/a.jpg"],
         "conversations": _turns("Is <image> the same?", "Yes.")},
        {"id": "no-placeholder", "image": "coco/a.jpg", "conversations": _turns("What?", "A.")},
        {"id": "two-placeholders", "image": "coco/a.jpg",
         "conversations": _turns("<image> What? <image>", "A.")},
        {"id": "gpt-first", "image": "coco/a.jpg",
         "conversations": [{"from": "gpt", "value": "<image>Hi"}, {"from": "human", "value": "?"}]},
        {"id": "unanswered", "image": "coco/a.jpg",
         "conversations": _turns("<image>What?", "A.", "And?")},
        {"id": "empty-answer", "image": "coco/a.jpg",
         "conversations": _turns("<image>What?", "A.", "And?", " ")},
        {"id": "multi", "image": "coco/a.jpg", "conversations": _turns("<image>Again?", "Yes.")},
    ]
    path = root / "llava.json"
    path.write_text(json.dumps(records))
    return {"annotations": str(path), "images": str(root / "images")}


BAD = {
    "coco": {"empty_text": 1, "wrong_type": 1, "not_utf8": 1, "missing_image": 1,
             "missing_field": 1},
    "vqav2": {"missing_field": 1, "missing_image": 1, "wrong_type": 1},
    "docvqa": {"missing_field": 1, "missing_image": 1},
    "llava": {"missing_field": 1, "image_placeholders": 3,
              "bad_conversation": 2, "empty_text": 1, "duplicate_id": 1},
}
GOOD = {"coco": ["1", "2"], "vqav2": ["10", "11", "20"], "docvqa": ["49153", "49154"],
        "llava": ["multi", "mid", "two-images"]}
WRITERS = {"coco": write_coco, "vqav2": write_vqav2, "docvqa": write_docvqa, "llava": write_llava}
