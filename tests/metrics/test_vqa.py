"""VQA accuracy against the official VQA evaluation (vqaEval.py), both versions.

The oracle is a Python 3 transcription of the official file (tests/metrics/vqa_official_oracle.py:
``VQAEval`` = current head a013f00, ``VQAEval2017`` = its parent a4f1afd), run on a seeded corpus
generated below. Every per-question accuracy, the rounded per-question and per-answer-type numbers
the script reports, and the overall value must be equal as floats, not approximately.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn

from tests.metrics.vqa_official_oracle import QASet, VQAEval, VQAEval2017
from vlmtrain.callbacks.generation_eval import GenerationEval
from vlmtrain.metrics.functional.vqa import (
    normalize,
    process_punctuation,
    vqa_accuracy,
    vqa_accuracy_per_sample,
)
from vlmtrain.metrics.vqa import VQAAccuracy
from vlmtrain.paths import config_dir

ROOT = Path(__file__).resolve().parents[2]
ORACLES = {"2021": VQAEval, "2017": VQAEval2017}

# ----------------------------------------------------------------------------------------------
# Generated corpus: every category crossed with every way the annotators can (dis)agree.
# ----------------------------------------------------------------------------------------------
CATEGORIES: dict[str, tuple[str, ...]] = {
    "number_words": ("two", "Two", "TWO", "2", "none", "zero", "0", "ten", "10", "one", "1",
                     "eleven", "11", "three dogs", "3 dogs", "one two"),
    "articles": ("the dog", "a dog", "dog", "The Dog", "an apple", "apple", "the", "a",
                 "theater", "a a", "the the cat", "An"),
    "contractions": ("dont", "don't", "do not", "isnt", "isn't", "Im", "im", "I'm", "cant",
                     "can't", "somebody'd", "somebodyd", "yall", "y'all", "oclock", "dont know"),
    "punctuation": ("red, white", "red,white", "red white", "hot-dog", "hot - dog", "hot dog",
                    "(left)", "( left )", "left", "yes!", "yes !", "what?", "x/y", "x / y",
                    "@home", '"quoted"', "semi;colon", "under_score", "a+b", "<tag>", "[x]",
                    "{y}", "back\\slash", "`tick`", "colon:x", "it's"),
    "comma_numbers": ("1,000", "1000", "1,000 dollars", "1,5", "one thousand", "a,b 1,000",
                      "1 , 000", "1,000,000", "red,1,2", "1,000!"),
    "periods": ("3.5", "3.", ".5", "end.", "end", "mr. smith", "mr smith", "u.s.a.", "usa",
                "1.5.", "...", "a.m.", "3.50", "v.2", "." * 40, "a." * 20),
    "case": ("Yes", "yes", "YES", "No", "no", "Red", "red", "BLUE", "blue", "Dog"),
    "blank": ("", " ", "\t", "\n", "  yes  ", "yes\n", "\tno", "yes \t", "no\n\n"),
    "non_ascii": ("café", "CAFÉ", "Café", "東京", "naïve", "NAÏVE", "ß", "SS", "İstanbul",
                  "istanbul", "٣.٥", "٣", "１,０００", "１０００", "\u00a0yes\u00a0",
                  "yes\u3000no", "don’t", "…", "a–b"),
}
# Pairs that normalise to the same string under some rule and not another: put side by side in
# disagreeing answer sets, they make every rule (and its quirks) change a score.
TWINS: dict[str, tuple[tuple[str, str], ...]] = {
    "number_words": (("two", "2"), ("none", "0"), ("Ten", "10")),
    "articles": (("the dog", "dog"), ("a dog", "dog"), ("An apple", "apple")),
    "contractions": (("dont", "don't"), ("isnt", "isn't"), ("somebody'd", "somebodyd"),
                     ("yall", "y'all")),
    "punctuation": (("red, white", "red white"), ("red,white", "red white"),
                    ("hot-dog", "hot dog"), ("( left )", "left"), ("yes!", "yes")),
    "comma_numbers": (("1,000", "1000"), ("1,000 dollars", "1000 dollars"), ("1,000!", "1000")),
    "periods": (("." * 40, "." * 8), ("end.", "end"), ("u.s.a.", "usa"), ("3.", "3"),
                ("1.5.", "1.5")),
    "case": (("Yes", "yes"), ("RED", "red")),
    "blank": (("  yes  ", "yes"), ("\tno", "no"), ("", " ")),
    "non_ascii": (("１,０００", "１０００"), ("٣.٥", "٣٥"), ("CAFÉ", "café"),
                  ("İstanbul", "i̇stanbul")),
}
AGREEMENT = ("agree", "agree_after_cleanup", "disagree")
ALL_PIECES = tuple(p for pieces in CATEGORIES.values() for p in pieces)
_NUMBER_SWAP = {"two": "2", "2": "two", "ten": "10", "10": "ten", "none": "0", "0": "zero"}
_VARIANTS = (
    str.upper, str.title, str.lower, lambda t: "the " + t, lambda t: "a " + t,
    lambda t: t + ".", lambda t: t + "!", lambda t: " " + t + "\n", lambda t: "\t" + t,
    lambda t: t.replace(" ", "  "), lambda t: _NUMBER_SWAP.get(t, t + "s"),
)


def _answers(rng: random.Random, category: str, agreement: str) -> list[str]:
    pool = CATEGORIES[category]
    n = rng.choice((10, 10, 10, 10, 10, 10, 3, 5, 9, 12) + ((1,) if agreement == "agree" else ()))
    if agreement == "agree":
        return [rng.choice(pool)] * n
    if agreement == "agree_after_cleanup":  # raw answers differ only in surrounding whitespace
        core = rng.choice(pool).strip() or "yes"
        wrapped = [rng.choice((core, " " + core, core + "\n", "\t" + core + " ")) for _ in range(n)]
        return [core, core + " "] + wrapped[2:]
    if rng.random() < 0.5:
        distinct = list(rng.choice(TWINS[category])) + rng.sample(pool, rng.randint(0, 2))
    else:
        distinct = rng.sample(pool, rng.randint(2, 4))
    if rng.random() < 0.2:
        distinct.append(rng.choice(ALL_PIECES))
    answers = distinct[:2] + [rng.choice(distinct) for _ in range(n - 2)]
    rng.shuffle(answers)
    return answers


def _prediction(rng: random.Random, pool: tuple[str, ...], answers: list[str]) -> str:
    mode = rng.random()
    if mode < 0.35:
        return rng.choice(answers)
    if mode < 0.7:
        return rng.choice(_VARIANTS)(rng.choice(answers))
    return rng.choice(pool if mode < 0.85 else ALL_PIECES)


def make_corpus(n: int = 810, seed: int = 13) -> list[dict]:
    """``n`` questions ``{"prediction", "answers", "category", "agreement"}``, round-robin over
    every (category, agreement) cell so each cell gets n / 27 questions."""
    rng = random.Random(seed)
    cells = [(c, a) for c in CATEGORIES for a in AGREEMENT]
    corpus = []
    for i in range(n):
        category, agreement = cells[i % len(cells)]
        answers = _answers(rng, category, agreement)
        corpus.append({"prediction": _prediction(rng, CATEGORIES[category], answers),
                       "answers": answers, "category": category, "agreement": agreement})
    return corpus


CORPUS = make_corpus()
PREDS = [q["prediction"] for q in CORPUS]
REFS = [q["answers"] for q in CORPUS]
ANSWER_TYPES = ("yes/no", "number", "other")


def run_official(version: str, preds: list[str], refs: list[list[str]]) -> VQAEval:
    """Run the transcribed official ``evaluate`` on official-format annotation dicts."""
    gts = {q: {"question_id": q, "question_type": f"type {q % 5}",
               "answer_type": ANSWER_TYPES[q % 3],
               "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                           for i, a in enumerate(answers)]}
           for q, answers in enumerate(refs)}
    res = {q: {"question_id": q, "answer": p} for q, p in enumerate(preds)}
    evaluator = ORACLES[version](QASet(gts), QASet(res))
    evaluator.evaluate()
    return evaluator


def _official_percent(scores: list[float]) -> float:
    return round(100 * float(sum(scores)) / len(scores), 2)  # setAccuracy's formula


def test_corpus_covers_every_case():
    cells = Counter((q["category"], q["agreement"]) for q in CORPUS)
    assert len(CORPUS) >= 300 and len(cells) == 27 and min(cells.values()) >= 30
    texts = PREDS + [a for refs in REFS for a in refs]
    has = {name: sum(bool(re.search(pattern, t)) for t in texts) for name, pattern in {
        "digit_comma_digit": r"\d,\d", "period_before_digit": r"\.\d",
        "period_not_before_digit": r"\.(?!\d)", "punct_touching_space": r"[-/(,!] |[ (]\W",
        "punct_not_touching_space": r"\w[-/,;+_]\w", "upper_case": r"[A-ZÉÏİ]",
        "non_ascii": r"[^\x00-\x7f]", "surrounding_space": r"^\s|\s$", "over_32_periods": r"\.{33}",
    }.items()}
    assert min(has.values()) >= 5, has
    assert sum(t == "" for t in texts) >= 5 and sum(t.isspace() for t in texts) >= 5
    new = vqa_accuracy_per_sample(PREDS, REFS)
    old = vqa_accuracy_per_sample(PREDS, REFS, version="2017")
    assert {0.0, 1.0} <= set(new) and sum(0 < s < 1 for s in new) >= 50
    assert sum(a != b for a, b in zip(new, old)) >= 100  # the versions really differ here


@pytest.mark.parametrize("version", ["2021", "2017"])
def test_equals_official_on_generated_corpus(version):
    official = run_official(version, PREDS, REFS)
    got = vqa_accuracy_per_sample(PREDS, REFS, version=version)
    for q, score in enumerate(got):
        assert score == official.rawEvalQA[q], (q, CORPUS[q])  # exact float equality
        assert round(100 * score, 2) == official.evalQA[q]
    raw = [official.rawEvalQA[q] for q in range(len(CORPUS))]
    assert vqa_accuracy(PREDS, REFS, version=version)["vqa_accuracy"] == sum(raw) / len(raw)
    assert _official_percent(got) == official.accuracy["overall"]
    for answer_type, percent in official.accuracy["perAnswerType"].items():
        group = [s for q, s in enumerate(got) if ANSWER_TYPES[q % 3] == answer_type]
        assert _official_percent(group) == percent


def test_default_is_current_version_and_versions_are_named():
    assert vqa_accuracy(PREDS, REFS) == vqa_accuracy(PREDS, REFS, version="2021")
    assert vqa_accuracy(PREDS, REFS, version=2017) == vqa_accuracy(PREDS, REFS, version="2017")
    for bad in ("master", "2020", None):
        with pytest.raises(ValueError, match="use one of 2021, 2017"):
            vqa_accuracy(["yes"], [["yes"]], version=bad)
    with pytest.raises(ValueError, match="unknown VQA evaluation version 'latest'"):
        VQAAccuracy(version="latest")


@pytest.mark.parametrize(
    ("pred", "answers", "v2021", "v2017"),
    [
        # 3 of 10 agree: the 3 subsets that drop a "2" have 2 matches (2/3), the other 7 have 3.
        ("2", ["2"] * 3 + ["3"] * 7, 0.9, 0.9),
        # docs/metrics.md example: 2021 maps the gold "two" to "2" too (4 matches, all subsets 1)
        ("two", ["2", "2", "2", "two"] + ["3"] * 6, 1.0, 0.9),
        ("two", ["2"] * 10, 0.0, 1.0),  # agreeing gold: 2021 compares the raw strings
        ("Yes", ["yes"] * 10, 0.0, 1.0),
        ("The dog.", ["dog"] * 10, 0.0, 1.0),
        ("Café", ["café"] * 10, 0.0, 1.0),
        ("Two", ["two"] * 10, 0.0, 0.0),  # 2017: the prediction becomes "2", gold stays "two"
        (" yes\n", ["yes"] * 10, 1.0, 1.0),
        # gold differs only by a trailing space: 2021 strips it (agree), 2017 keeps "yes " apart
        ("yes", ["yes "] * 8 + ["yes"] * 2, 1.0, (2 * (1 / 3) + 8 * (2 / 3)) / 10),
        ("dont", ["dont", "no"] * 5, 1.0, 0.0),  # 2017 never expands the gold "dont"
        ("1,000", ["1000", "one thousand"] * 5, 1.0, 1.0),  # digit-comma-digit: punct deleted
        ("red,white", ["red, white", "red"] * 5, 1.0, 1.0),  # "," touching a space: deleted
        ("the dog", ["dog", "dogs"] * 5, 1.0, 1.0),
        ("3.5", ["3.5", "4"] * 5, 1.0, 1.0),
        ("", [""] * 10, 1.0, 1.0),
        # at most 32 periods go: "." * 40 keeps 8, "." * 8 loses all (2 matches, not 10)
        ("." * 8, ["." * 40] * 8 + ["." * 8] * 2, 0.6, 0.6),
        # Python 3 regexes: "\d" matches non-ASCII digits ("１,０００" is digit-comma-digit)
        ("１０００", ["１,０００"] * 8 + ["１０００"] * 2, 1.0, 1.0),
        ("٣٥", ["٣.٥"] * 8 + ["٣٥"] * 2, 0.6, 0.6),
        ("somebody'd", ["somebody'd", "x"] * 5, 1.0, 0.0),  # the table maps it to "somebodyd"
        ("yes", ["yes"], 0.0, 0.0),  # one answer: its only subset is empty
        ("yes", ["yes"] * 3, 2 / 3, 2 / 3),  # 3 answers: at most 2 matches per subset
        ("yes", ["yes"] * 4, 1.0, 1.0),
    ],
)
def test_hand_worked_values(pred, answers, v2021, v2017):
    for version, expected in (("2021", v2021), ("2017", v2017)):
        got = vqa_accuracy([pred], [answers], version=version)["vqa_accuracy"]
        assert got == pytest.approx(expected, abs=1e-12), version
        assert run_official(version, [pred], [answers]).rawEvalQA[0] == got


def test_normalisation_examples():
    assert normalize("  The  Two dogs.\n", ["dog", "cat"]) == ("2 dogs", ["dog", "cat"])
    assert normalize("Yes.", ["yes", "yes "]) == ("Yes.", ["yes", "yes"])
    assert normalize("Yes.", ["yes", "yes "], "2017") == ("yes", ["yes", "yes "])
    assert normalize("isnt it", ["a", "b"], "2017") == ("isn't it", ["a", "b"])


def test_period_strip_removes_at_most_32_periods():
    text = "." * 40
    assert process_punctuation(text) == "." * 8
    assert VQAEval(QASet({}), QASet({})).processPunctuation(text) == "." * 8


@pytest.mark.parametrize("version", ["2021", "2017"])
def test_class_matches_functional_across_batches(version):
    metric = VQAAccuracy(version=version)
    for start in range(0, 300, 37):  # uneven batches, the last one shorter
        stop = min(start + 37, 300)
        metric.update(PREDS[start:stop], REFS[start:stop])
    out = metric.compute()
    assert set(out) == {"vqa_accuracy"} and out["vqa_accuracy"].dtype == torch.float64
    want = vqa_accuracy(PREDS[:300], REFS[:300], version=version)["vqa_accuracy"]
    assert float(out["vqa_accuracy"]) == pytest.approx(want, abs=1e-12)
    metric.reset()
    metric.update(["Yes"], [["yes"] * 10])
    assert float(metric.compute()["vqa_accuracy"]) == {"2021": 0.0, "2017": 1.0}[version]


@pytest.mark.parametrize(("overrides", "version"),
                         [((), "2021"), (("metrics.vqa.version=2017",), "2017")])
def test_config_and_callback_give_the_versions_numbers(overrides, version):
    """configs/metrics/vqa.yaml -> VQAAccuracy -> GenerationEval logs the official value."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        metrics = instantiate(compose("train", overrides=list(overrides)).metrics)
    assert metrics["vqa"].version == version
    preds, refs = PREDS[:64], REFS[:64]
    logged = {}
    module = SimpleNamespace(device=torch.device("cpu"),
                             generate_answers=lambda batch: batch["answers"],
                             log=lambda key, value, **_: logged.update({key: float(value)}))
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.VALIDATING),
                              global_step=7, global_rank=0, loggers=[])
    callback = GenerationEval(metrics=metrics)
    callback.on_validation_epoch_start(trainer, module)
    for i, start in enumerate(range(0, 64, 16)):
        meta = {"references": refs[start : start + 16], "ids": list(range(16)),
                "prompts": ["q"] * 16}
        # metadata both flat and under "meta" (generation inputs as "gen_input_ids" / "gen"),
        # so the test holds for either batch layout of the collators
        batch = {"gen_input_ids": None, "gen": {}, "meta": meta, **meta,
                 "answers": preds[start : start + 16]}
        callback.on_validation_batch_end(trainer, module, None, batch, i)
    callback.on_validation_epoch_end(trainer, module)
    raw = run_official(version, preds, refs).rawEvalQA
    want = sum(raw.values()) / len(raw)
    assert callback.last["vqa_accuracy"] == pytest.approx(want, abs=1e-12)
    assert logged["val/vqa_accuracy"] == pytest.approx(want, rel=1e-7)  # logged as float32


@pytest.mark.parametrize("version", ["2021", "2017"])
def test_evaluate_cli_equals_official(tmp_path, version):
    preds, refs = PREDS[::10], REFS[::10]  # 81 questions, every category
    pred_file, ref_file = tmp_path / "preds.json", tmp_path / "annotations.json"
    pred_file.write_text(json.dumps([{"question_id": q, "answer": p}
                                     for q, p in enumerate(preds)]), encoding="utf-8")
    ref_file.write_text(json.dumps({"annotations": [
        {"question_id": q, "answers": [{"answer": a, "answer_id": i + 1}
                                       for i, a in enumerate(answers)]}
        for q, answers in enumerate(refs)]}), encoding="utf-8")
    version_args = [] if version == "2021" else ["--vqa-eval-version", version]
    proc = subprocess.run(
        [sys.executable, "-m", "vlmtrain.evaluate", "--task", "vqa", "--metrics", "vqa_accuracy",
         "--predictions", str(pred_file), "--references", str(ref_file), *version_args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    raw = run_official(version, preds, refs).rawEvalQA
    assert json.loads(proc.stdout) == {"vqa_accuracy": sum(raw.values()) / len(raw)}


@pytest.mark.parametrize(
    ("preds", "refs", "match"),
    [
        (["a"], [[]], r"references\[0\] is empty"),
        (["a", "b"], [["a"]], "2 predictions but 1"),
        ([], [], "no samples"),
        ([3], [["3"]], r"predictions\[0\] must be a str"),
        (["a"], ["a"], r"references\[0\] is a str"),
    ],
)
def test_bad_inputs_raise(preds, refs, match):
    with pytest.raises(ValueError, match=match):
        vqa_accuracy(preds, refs)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_compute_without_update_raises():
    with pytest.raises(RuntimeError, match="no samples"):
        VQAAccuracy().compute()
