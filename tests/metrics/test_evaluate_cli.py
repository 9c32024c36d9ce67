"""``python -m vlmtrain.evaluate`` run as a subprocess on small files of every supported format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmtrain.metrics.functional.anls import anls
from vlmtrain.metrics.functional.squad import squad_scores
from vlmtrain.metrics.functional.vqa import vqa_accuracy

ROOT = Path(__file__).resolve().parents[2]

VQA_ANSWERS = {
    101: ["2"] * 3 + ["3"] * 7,
    102: ["yes"] * 10,
    103: ["red, white", "red"] * 5,
    104: ["don't know", "dont know", "no"] + ["yes"] * 7,
}
VQA_PREDS = {101: "two", 102: "Yes.", 103: "red,white", 104: "don't know"}
DOC_ANSWERS = {7: ["$1.50", "1.50"], 8: ["New York City", "NYC"], 9: ["Smith"]}
DOC_PREDS = {7: "1.5", 8: "new york", 9: "smith"}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlmtrain.evaluate", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300, encoding="utf-8",
    )


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def vqa_files(tmp_path):
    tmp_path = tmp_path / "vqa"
    tmp_path.mkdir()
    preds = write(tmp_path / "preds.json",
                  [{"question_id": q, "answer": a} for q, a in VQA_PREDS.items()])
    official = write(tmp_path / "refs_official.json", {"annotations": [
        {"question_id": q,
         "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(ans)]}
        for q, ans in VQA_ANSWERS.items()
    ]})
    mapping = write(tmp_path / "refs_map.json", {str(q): a for q, a in VQA_ANSWERS.items()})
    return preds, official, mapping


@pytest.fixture
def doc_files(tmp_path):
    tmp_path = tmp_path / "docvqa"
    tmp_path.mkdir()
    preds = write(tmp_path / "preds.json",
                  [{"questionId": q, "answer": a} for q, a in DOC_PREDS.items()])
    official = write(tmp_path / "refs_official.json", {
        "dataset_name": "docvqa", "data": [{"questionId": q, "answers": a}
                                           for q, a in DOC_ANSWERS.items()]})
    mapping = write(tmp_path / "refs_map.json", {str(q): a for q, a in DOC_ANSWERS.items()})
    return preds, official, mapping


CAPTIONS = {
    391895: ("a man rides a bike down a dirt road", [
        "A man with a red helmet on a small moped on a dirt road.",
        "Man riding a motor bike on a dirt road on the countryside.",
        "A man riding on the back of a motorcycle."]),
    522418: ("a woman cuts a cake", [
        "A woman wearing a net on her head cutting a cake.", "A woman cutting a large white "
        "sheet cake.", "A woman wearing a hair net cutting a large sheet cake."]),
    184613: ("a child holds an umbrella near cows", [
        "A child holding a flowered umbrella and petting a yak.",
        "A young man holding an umbrella next to a herd of cattle."]),
    "1000268201_693b08cb0e.jpg": ("a girl in pink climbs stairs", [
        "A child in a pink dress is climbing up a set of stairs in an entry way .",
        "A little girl climbing the stairs to her playhouse ."]),
}


@pytest.fixture
def caption_files(tmp_path):
    tmp_path = tmp_path / "caption"
    tmp_path.mkdir()
    preds = write(tmp_path / "preds.json",
                  [{"image_id": i, "caption": c} for i, (c, _) in CAPTIONS.items()])
    official = write(tmp_path / "refs_official.json", {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in CAPTIONS],
        "annotations": [{"image_id": i, "id": n, "caption": r}
                        for n, (i, (_, refs)) in enumerate(CAPTIONS.items()) for r in refs]})
    mapping = write(tmp_path / "refs_map.json", {str(i): refs for i, (_, refs) in CAPTIONS.items()})
    return preds, official, mapping


def _ok(proc: subprocess.CompletedProcess) -> dict[str, float]:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # no traceback
    return lines[0]


@pytest.mark.parametrize("ref_format", ["official", "mapping"])
def test_vqa_both_reference_formats(vqa_files, ref_format):
    preds, official, mapping = vqa_files
    refs = official if ref_format == "official" else mapping
    got = _ok(run("--task", "vqa", "--predictions", preds, "--references", refs))
    p, r = list(VQA_PREDS.values()), list(VQA_ANSWERS.values())
    want = {**vqa_accuracy(p, r), **squad_scores(p, r)}
    assert list(got) == ["vqa_accuracy", "exact_match", "f1"]
    assert got == pytest.approx(want, abs=1e-12)
    # current vqaEval.py: 101 prediction "two" -> "2", 3 of 10 gold "2"; 102 agreeing gold is
    # compared raw ("Yes." != "yes"); 103 both sides become "red white"; 104 the gold "dont know"
    # becomes "don't know" too, so 2 matches: (2 * 1/3 + 8 * 2/3) / 10
    assert got["vqa_accuracy"] == pytest.approx((0.9 + 0.0 + 1.0 + 0.6) / 4, abs=1e-12)


def test_vqa_eval_version_flag(vqa_files):
    preds, official, _ = vqa_files
    base = ("--task", "vqa", "--predictions", preds, "--references", official,
            "--metrics", "vqa_accuracy")
    current = _ok(run(*base, "--vqa-eval-version", "2021"))
    assert current == _ok(run(*base))  # 2021 is the default
    old = _ok(run(*base, "--vqa-eval-version", "2017"))
    p, r = list(VQA_PREDS.values()), list(VQA_ANSWERS.values())
    assert old == pytest.approx(vqa_accuracy(p, r, version="2017"), abs=1e-12)
    # pre-2021 script: the prediction is always normalised, the gold answers only de-punctuated
    assert old["vqa_accuracy"] == pytest.approx((0.9 + 1.0 + 1.0 + 0.3) / 4, abs=1e-12)
    line = _error(run(*base, "--vqa-eval-version", "master"))
    assert "--vqa-eval-version" in line and "'2021', '2017'" in line


@pytest.mark.parametrize("ref_format", ["official", "mapping"])
def test_docvqa_both_reference_formats(doc_files, ref_format, tmp_path):
    preds, official, mapping = doc_files
    refs = official if ref_format == "official" else mapping
    out = tmp_path / "sub" / "scores.json"
    got = _ok(run("--task", "docvqa", "--predictions", preds, "--references", refs,
                  "--metrics", "anls,f1", "--out", out))
    p, r = list(DOC_PREDS.values()), list(DOC_ANSWERS.values())
    assert got == pytest.approx({"anls": anls(p, r)["anls"], "f1": squad_scores(p, r)["f1"]})
    assert json.loads(out.read_text()) == got
    # "1.5" vs "1.50": 1 - 1/4 (beats "$1.50": 1 - 2/5); "new york" vs "New York City": 1 - 5/13
    assert got["anls"] == pytest.approx((0.75 + (1 - 5 / 13) + 1.0) / 3, abs=1e-12)


def test_missing_ids_error_and_allow_missing(vqa_files, tmp_path):
    preds, official, _ = vqa_files
    extra = write(tmp_path / "extra.json",
                  [{"question_id": q, "answer": a} for q, a in VQA_PREDS.items() if q != 104]
                  + [{"question_id": 999, "answer": "x"}])
    line = _error(run("--task", "vqa", "--predictions", extra, "--references", official))
    assert "1 prediction id(s) not in the references: 999" in line
    assert "1 reference id(s) without a prediction: 104" in line
    assert "--allow-missing" in line
    proc = run("--task", "vqa", "--predictions", extra, "--references", official,
               "--allow-missing", "--metrics", "vqa_accuracy")
    got = _ok(proc)
    assert "warning: scoring 3 ids" in proc.stderr
    assert got["vqa_accuracy"] == pytest.approx((0.9 + 0.0 + 1.0) / 3, abs=1e-12)


def test_missing_ids_are_listed_first_20_and_counted(tmp_path):
    preds = write(tmp_path / "p.json", [{"question_id": i, "answer": "a"} for i in range(50)])
    refs = write(tmp_path / "r.json", {"0": ["a"]})
    line = _error(run("--task", "vqa", "--predictions", preds, "--references", refs))
    assert "49 prediction id(s)" in line and "(49 in all)" in line
    assert ", 19, 20 ... " in line and ", 21" not in line


@pytest.mark.parametrize(
    ("preds", "refs", "extra", "message"),
    [
        ([{"question_id": 1, "answer": "a"}] * 2, {"1": ["a"]}, [], "duplicate prediction"),
        ([{"question_id": 1, "answer": "a"}], {"1": ["a"]}, ["--metrics", "cider"],
         "valid: vqa_accuracy, exact_match, f1"),
        ([{"question_id": 1, "answer": "a"}], {"1": []}, [], "empty reference list"),
        ([{"question_id": 1, "answer": 3}], {"1": ["a"]}, [], "must be a string"),
        ([{"question": 1, "answer": "a"}], {"1": ["a"]}, [], "no 'question_id' key"),
        ({"1": "a"}, {"1": ["a"]}, [], "must be a JSON list"),
        ([{"question_id": 1, "answer": "a"}], {"1": "a"}, [], "must be a list of strings"),
    ],
)
def test_input_errors_are_one_line(tmp_path, preds, refs, extra, message):
    p = write(tmp_path / "p.json", preds)
    r = write(tmp_path / "r.json", refs)
    assert message in _error(run("--task", "vqa", "--predictions", p, "--references", r, *extra))


def test_bad_json_and_bad_arguments(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    assert "not valid JSON" in _error(run("--task", "vqa", "--predictions", bad,
                                          "--references", bad))
    assert "--task" in _error(run("--task", "nope", "--predictions", bad, "--references", bad))
    assert "--anls-threshold" in _error(run("--task", "docvqa", "--predictions", bad,
                                            "--references", bad, "--anls-threshold", "x"))
    help_text = run("--help")
    assert help_text.returncode == 0 and "questionId" in help_text.stdout


def test_empty_strings_unicode_and_long_strings(tmp_path):
    long_text = "très long 東京 " * 20_000
    preds = write(tmp_path / "p.json", [
        {"questionId": "a", "answer": ""}, {"questionId": "b", "answer": long_text},
        {"questionId": "c", "answer": "naïve 東京"}, {"questionId": "d", "answer": ""},
    ])
    refs = write(tmp_path / "r.json", {"a": [""], "b": [long_text + "x"], "c": ["NAÏVE 東京"],
                                        "d": ["x"]})
    got = _ok(run("--task", "docvqa", "--predictions", preds, "--references", refs))
    p = ["", long_text, "naïve 東京", ""]
    r = [[""], [long_text + "x"], ["NAÏVE 東京"], ["x"]]
    assert got == pytest.approx({**anls(p, r), **squad_scores(p, r)}, abs=1e-12)
    # a: both empty -> ANLS 1, EM 1, F1 0 (SQuAD v1.1); c: case-insensitive; d: empty vs "x" -> 0
    assert got["exact_match"] == pytest.approx(2 / 4)
    assert 0.99 < got["anls"] * 4 - 2 < 1 and 0.99 < got["f1"] * 4 - 1 < 1


def test_clipscore_without_images_is_a_clear_error(tmp_path):
    p = write(tmp_path / "p.json", [{"image_id": 1, "caption": "a dog"}])
    r = write(tmp_path / "r.json", {"1": ["a dog runs"]})
    line = _error(run("--task", "caption", "--predictions", p, "--references", r,
                      "--metrics", "clipscore"))
    assert "--images" in line
    line = _error(run("--task", "caption", "--predictions", p, "--references", r,
                      "--metrics", "clipscore", "--images", tmp_path))
    assert "no image in" in line and ": 1" in line


_NO_HEAVY_IMPORTS = """
import sys
from vlmtrain.evaluate import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "torchmetrics") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def test_answer_tasks_do_not_import_torch(vqa_files, doc_files):
    for task, (preds, refs, _) in (("vqa", vqa_files), ("docvqa", doc_files)):
        proc = subprocess.run(
            [sys.executable, "-c", _NO_HEAVY_IMPORTS, "--task", task, "--predictions", str(preds),
             "--references", str(refs)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "HEAVY=\n" in proc.stderr, proc.stderr


def test_model_metrics_get_images_references_and_options(tmp_path, monkeypatch, capsys):
    """The plumbing of spice / bertscore / clipscore, with the scorers replaced by recorders
    (their values are tested against the official code in their own test files)."""
    import vlmtrain.metrics.bertscore
    import vlmtrain.metrics.clipscore
    import vlmtrain.metrics.spice
    from vlmtrain.evaluate import main

    calls = {}

    def record(name, result):
        def stand_in(*args, **kwargs):
            calls[name] = (args, kwargs)
            return result
        return stand_in

    monkeypatch.setattr(vlmtrain.metrics.spice, "spice_score", record("spice", {"spice": 0.1}))
    monkeypatch.setattr(vlmtrain.metrics.bertscore, "bert_score", record("bert", {
        "bertscore_precision": 0.2, "bertscore_recall": 0.3, "bertscore_f1": 0.4}))
    monkeypatch.setattr(vlmtrain.metrics.clipscore, "clip_score", record("clip", {
        "clipscore": 0.5, "refclipscore": 0.6}))
    images = tmp_path / "images"
    images.mkdir()
    for name in ("COCO_val2014_000000000042.jpg", "7.png", "abc.jpg"):
        (images / name).write_bytes(b"")
    preds = write(tmp_path / "p.json", [{"image_id": 42, "caption": "a dog"},
                                        {"image_id": 7, "caption": "a cat"},
                                        {"image_id": "abc.jpg", "caption": "a bird"}])
    refs = write(tmp_path / "r.json", {
        "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}],
        "annotations": [{"image_id": 42, "caption": "a dog runs"}, {"image_id": 7, "caption": "c"},
                        {"image_id": "abc.jpg", "caption": "b"}, {"image_id": 42, "caption": "d"}]})
    rc = main(["--task", "caption", "--predictions", str(preds), "--references", str(refs),
               "--metrics", "spice,bertscore_f1,refclipscore", "--images", str(images),
               "--bertscore-model", "some/model", "--bertscore-num-layers", "3",
               "--clip-model", "some/clip"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == {"spice": 0.1, "bertscore_f1": 0.4,
                                                   "refclipscore": 0.6}
    want_refs = [["a dog runs", "d"], ["c"], ["b"]]
    assert calls["spice"][0] == (["a dog", "a cat", "a bird"], want_refs)
    assert calls["bert"][1] == {"model_type": "some/model", "num_layers": 3}
    (paths, preds_arg), options = calls["clip"]
    assert [Path(p).name for p in paths] == ["COCO_val2014_000000000042.jpg", "7.png", "abc.jpg"]
    assert preds_arg == ["a dog", "a cat", "a bird"]
    assert options == {"references": want_refs, "model_name_or_path": "some/clip"}


NGRAM = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")


@pytest.mark.parametrize("ref_format", ["official", "mapping"])
def test_caption_ngram_metrics_both_reference_formats(caption_files, ref_format):
    from vlmtrain.metrics.caption import caption_scores

    preds, official, mapping = caption_files
    refs = official if ref_format == "official" else mapping
    got = _ok(run("--task", "caption", "--predictions", preds, "--references", refs,
                  "--metrics", *NGRAM))
    want = caption_scores([c for c, _ in CAPTIONS.values()], [r for _, r in CAPTIONS.values()],
                          metrics=NGRAM)
    assert list(got) == list(NGRAM)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got["bleu_1"] < 1 and got["cider"] > 0


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.usefixtures("machine_meteor_index")  # restricted paraphrase table: fast JVM start
def test_caption_default_metrics_include_meteor(caption_files):
    from vlmtrain.metrics.caption import caption_scores

    preds, official, _ = caption_files
    got = _ok(run("--task", "caption", "--predictions", preds, "--references", official))
    want = caption_scores([c for c, _ in CAPTIONS.values()], [r for _, r in CAPTIONS.values()])
    assert list(got) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"]
    assert got == pytest.approx(want, abs=1e-12)


def test_caption_ngram_metrics_do_not_import_torch(caption_files):
    preds, official, _ = caption_files
    proc = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY_IMPORTS, "--task", "caption", "--predictions", str(preds),
         "--references", str(official), "--metrics", *NGRAM],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr
