"""VQA accuracy against a transcription of the official VQA evaluation (vqaEval.py).

The official script (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py) is not
pip-installable, so its routine is transcribed below as the oracle, tables included, with its
dict-based leave-one-out (answer dicts carry a distinct ``answer_id`` as in the official files).
"""

from __future__ import annotations

import random
import re

import pytest
import torch

from vlmtrain.metrics.functional.vqa import (
    normalize_prediction,
    process_punctuation,
    vqa_accuracy,
    vqa_accuracy_per_sample,
)
from vlmtrain.metrics.vqa import VQAAccuracy


# ----------------------------------------------------------------------------------------------
# Oracle: the official routine, transcribed (Python 3 syntax, same logic and order).
# ----------------------------------------------------------------------------------------------
class _OfficialVQAEval:
    def __init__(self):
        self.contractions = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've"}  # noqa: E501
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # noqa: E501
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]  # noqa: E501

    def processPunctuation(self, inText):  # noqa: N802
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) != None):  # noqa: E501,E711
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):  # noqa: N802
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
            else:
                pass
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        outText = " ".join(outText)
        return outText

    def evaluate(self, gts, res):
        """gts: {qid: {"answers": [{"answer", "answer_id"}]}}, res: {qid: {"answer"}}.
        Returns (per-question accuracies in [0, 1], unrounded overall fraction)."""
        accQA, perQ = [], {}
        for quesId in gts:
            resAns = res[quesId]["answer"]
            resAns = resAns.replace("\n", " ")
            resAns = resAns.replace("\t", " ")
            resAns = resAns.strip()
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)
            gtAcc = []
            gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
            if len(set(gtAnswers)) > 1:
                for ansDic in gts[quesId]["answers"]:
                    ansDic["answer"] = self.processPunctuation(ansDic["answer"])
            for gtAnsDatum in gts[quesId]["answers"]:
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            perQ[quesId] = avgGTAcc
        return perQ, float(sum(accQA)) / len(accQA)


def official(predictions, references):
    gts = {
        q: {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(refs)]}
        for q, refs in enumerate(references)
    }
    res = {q: {"answer": p} for q, p in enumerate(predictions)}
    per_q, overall = _OfficialVQAEval().evaluate(gts, res)
    return [per_q[q] for q in range(len(predictions))], overall


# ----------------------------------------------------------------------------------------------
# Generated cases
# ----------------------------------------------------------------------------------------------
_PIECES = [
    "yes", "no", "Yes", "2", "two", "Two", "TWO", "none", "0", "zero", "ten", "10", "one", "1",
    "dont", "don't", "do not", "isnt", "isn't", "im", "Im", "I'm", "its", "it's", "cant",
    "a", "an", "the", "The", "dog", "dogs", "hot dog", "hot-dog", "hot - dog", "red, white",
    "red,white", "1,000", "1000", "3.5", "3.", ".5", "end.", "mr. smith", "u.s.a.", "a.m.",
    "(left)", "left", "( left )", "yes!", "yes !", "what?", "x/y", "x / y", "@home", '"quoted"',
    "semi;colon", "under_score", "a+b", "a=b", "<tag>", "[x]", "{y}", "back\\slash", "`tick`",
    "café", "naïve", "東京", "ß", "colon:x", "half-time, 2,5", "1.5.", "...",
]
_SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", ""]


def _random_answer(rng: random.Random) -> str:
    words = [rng.choice(_PIECES) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]
    text = words[0]
    for w in words[1:]:
        text += rng.choice(_SEPARATORS) + w
    if rng.random() < 0.2:
        text = rng.choice([" ", "\t", "\n", "  "]) + text + rng.choice(["", " ", "\n"])
    return text


def _random_case(rng: random.Random) -> tuple[str, list[str]]:
    pool = [_random_answer(rng) for _ in range(rng.choice([1, 2, 3, 4]))]
    n = rng.choice([1, 2, 3, 4, 5, 9, 10, 10, 10, 12])
    answers = [rng.choice(pool) for _ in range(n)]
    mode = rng.random()
    if mode < 0.4:
        pred = rng.choice(answers)
    elif mode < 0.7:
        pred = rng.choice(answers).upper() if rng.random() < 0.5 else "the " + rng.choice(answers)
    else:
        pred = _random_answer(rng)
    return pred, answers


def test_matches_official_on_generated_cases():
    rng = random.Random(0)
    cases = [_random_case(rng) for _ in range(3000)]
    preds = [p for p, _ in cases]
    refs = [r for _, r in cases]
    want_per_q, want_overall = official(preds, refs)
    got_per_q = vqa_accuracy_per_sample(preds, refs)
    for i, (got, want) in enumerate(zip(got_per_q, want_per_q)):
        assert got == pytest.approx(want, abs=1e-9), (i, preds[i], refs[i])
    assert vqa_accuracy(preds, refs)["vqa_accuracy"] == pytest.approx(want_overall, abs=1e-9)
    # the generator must exercise partial credit, full credit and zero
    assert {0.0, 1.0} <= set(got_per_q) and any(0 < s < 1 for s in got_per_q)


@pytest.mark.parametrize(
    ("pred", "answers", "expected"),
    [
        # 3 of 10 agree: the 3 subsets that drop a "2" have 2 matches (2/3), the other 7 have 3.
        ("2", ["2"] * 3 + ["3"] * 7, (3 * 2 / 3 + 7) / 10),
        ("two", ["2"] * 10, 1.0),  # prediction's number word mapped to a digit
        ("Two", ["two"] * 10, 0.0),  # gold answers are never digit-mapped
        ("The dog.", ["dog"] * 10, 1.0),
        ("yes", ["yes"], 0.0),  # one answer: its only subset is empty, so always 0
        ("yes", ["yes", "yes", "yes", "yes"], 1.0),
        ("yes", ["yes", "yes", "yes"], 2 / 3),  # 3 answers: at most 2 matches per subset
        ("dont", ["dont", "no"] * 5, 0.0),  # prediction becomes "don't", disagreeing gold stays
        ("dont", ["don't"] * 10, 1.0),
        ("1,000", ["1000", "one thousand"] * 5, 1.0),  # digit-comma-digit deletes all punct
        ("red, white", ["red white", "red"] * 5, 1.0),  # "," touches a space: deleted
        ("red,white", ["red white", "red"] * 5, 1.0),  # otherwise replaced by a space
        ("3.5", ["3.5", "4"] * 5, 1.0),
    ],
)
def test_hand_worked_values(pred, answers, expected):
    got = vqa_accuracy([pred], [answers])["vqa_accuracy"]
    assert got == pytest.approx(expected, abs=1e-12)
    assert official([pred], [answers])[1] == pytest.approx(expected, abs=1e-12)


def test_period_strip_removes_at_most_32_periods():
    text = "." * 40
    assert process_punctuation(text) == "." * 8
    assert _OfficialVQAEval().processPunctuation(text) == "." * 8


def test_prediction_normalisation_examples():
    assert normalize_prediction("  The  Two dogs.\n") == "2 dogs"
    assert normalize_prediction("I don't KNOW!") == "i don't know"
    assert normalize_prediction("isnt it") == "isn't it"


def test_class_matches_functional_across_batches():
    rng = random.Random(1)
    cases = [_random_case(rng) for _ in range(200)]
    preds, refs = [p for p, _ in cases], [r for _, r in cases]
    metric = VQAAccuracy()
    for start in range(0, 200, 37):
        metric.update(preds[start : start + 37], refs[start : start + 37])
    out = metric.compute()
    assert set(out) == {"vqa_accuracy"} and out["vqa_accuracy"].dtype == torch.float64
    want = vqa_accuracy(preds, refs)["vqa_accuracy"]
    assert float(out["vqa_accuracy"]) == pytest.approx(want, abs=1e-12)
    metric.reset()
    metric.update(["yes"], [["yes"] * 10])
    assert float(metric.compute()["vqa_accuracy"]) == 1.0


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
