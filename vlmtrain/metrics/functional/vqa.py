"""VQA accuracy, equal to the official VQA evaluation (``vqaEval.py`` of the VQA API).

Reference: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of github.com/GT-Vision-Lab/VQA.
Two versions of that file are available by name; the default is the current one:

* ``"2021"`` (default): the file at commit a013f0043c1e2cdc995922dfe257f7149aa9af06 ("Fixed
  processing answers bug", March 2021), the head of the repository.
* ``"2017"``: the file as released with VQA v2.0, commit a4f1afd59cfda2f1a7f7f720f40bfea2e338c6ad
  (Oct 2017, the parent of a013f00; the file itself last changed in Oct 2016). Kept only to
  reproduce numbers computed with it; ask for it explicitly.

Accuracy of one question with answers ``g_1..g_n`` (n = 10 in VQA) is the mean over the n
leave-one-annotator-out subsets of ``min(1, #matches in the subset / 3)``. The versions differ
only in which strings are compared:

* ``"2021"``: the prediction and every gold answer get ``\\n``/``\\t`` -> space and ``strip()``.
  Then, only when the annotators disagree (``len(set(gold)) > 1`` after that clean-up), the gold
  answers AND the prediction get :func:`process_punctuation` then :func:`process_digit_article`.
  When all annotators agree, the strings are compared as they are (``"Yes"`` != ``"yes"``).
* ``"2017"``: the prediction always gets the clean-up, :func:`process_punctuation` and
  :func:`process_digit_article`; the gold answers get only :func:`process_punctuation`, only when
  the raw answers are not all identical, and are never stripped, lower-cased or digit-mapped.

Quirks of the official normalisation, reproduced in both versions:

* The period regex has a typo, ``(?!<=\\d)`` (a no-op look-ahead) where a look-behind was meant,
  so a period is removed whenever no digit follows it; and ``re.UNICODE`` is passed positionally
  as the ``count`` argument of ``Pattern.sub``, so at most 32 periods are removed.
* The official script is Python 2; this module follows Python 3 string semantics (as the test
  oracle does): ``\\d`` also matches non-ASCII decimal digits and ``lower()`` uses full case
  mapping, which matters only for such characters (e.g. ``"٣.٥"``, ``"İ"``).

This module imports neither torch nor torchmetrics, so ``python -m vlmtrain.evaluate`` starts fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vlmtrain.metrics.functional._inputs import check_answer_inputs, mean

# The official tables, kept verbatim (they are data, not logic). Keys with capitals ("Im",
# "Ive", "Id've", "I'dve") can never match because the text is lower-cased first; kept as the
# official script has them.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# Order matters: each character is replaced in turn. No "'", ":" or "." here ("." has its own
# regex); older copies of the script list different characters.
PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
)
# Same behaviour as the official "(?!<=\d)(\.)(?!\d)": its first group is a look-ahead that
# never matches right before a ".", so only "no digit follows" is tested.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_REMOVALS = int(re.UNICODE)  # 32: the flag the official script passes as ``count``
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``.

    Each punctuation character is deleted when it touches a space anywhere in the ORIGINAL text
    (``"p "`` or ``" p"``) or when the text contains digit-comma-digit (``"1,000"``); otherwise
    it becomes a space. Then periods not followed by a digit are deleted (32 at most).
    """
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        if delete_all or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_REMOVALS)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, split on whitespace, number words ->
    digits, drop articles, expand contractions, join with single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _normalize_2021(prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    pred = _clean(prediction)
    gold = [_clean(a) for a in answers]
    if len(set(gold)) > 1:  # annotators disagree: normalise both sides
        gold = [process_digit_article(process_punctuation(a)) for a in gold]
        pred = process_digit_article(process_punctuation(pred))
    return pred, gold


def _normalize_2017(prediction: str, answers: Sequence[str]) -> tuple[str, list[str]]:
    pred = process_digit_article(process_punctuation(_clean(prediction)))
    if len(set(answers)) > 1:  # tested on the raw answers: no clean-up of the gold side
        return pred, [process_punctuation(a) for a in answers]
    return pred, list(answers)


# The versions a user can ask for by name (see the module docstring); the first is the default.
_NORMALIZERS = {"2021": _normalize_2021, "2017": _normalize_2017}
VERSIONS: tuple[str, ...] = tuple(_NORMALIZERS)
DEFAULT_VERSION = "2021"
COMMITS: dict[str, str] = {
    "2021": "a013f0043c1e2cdc995922dfe257f7149aa9af06",
    "2017": "a4f1afd59cfda2f1a7f7f720f40bfea2e338c6ad",
}


def check_version(version: str | int) -> str:
    """The version name as a string (YAML reads ``2017`` as an int), or a ValueError naming the
    valid ones."""
    name = str(version)
    if name not in _NORMALIZERS:
        raise ValueError(
            f"vqa_accuracy: unknown VQA evaluation version {version!r}; use one of "
            f"{', '.join(VERSIONS)} (default {DEFAULT_VERSION}, the current official script)"
        )
    return name


def normalize(
    prediction: str, answers: Sequence[str], version: str | int = DEFAULT_VERSION
) -> tuple[str, list[str]]:
    """The strings the official script compares for one question.

    Args:
        prediction: the predicted answer (raw model text).
        answers: the gold answers of the question.
        version: ``"2021"`` (current official script) or ``"2017"`` (pre-fix script).

    Returns:
        ``(prediction, gold answers)`` after the version's normalisation.
    """
    return _NORMALIZERS[check_version(version)](prediction, answers)


def vqa_accuracy_single(
    prediction: str, answers: Sequence[str], version: str | int = DEFAULT_VERSION
) -> float:
    """VQA accuracy of one question, in [0, 1].

    Leave-one-annotator-out: for each of the n gold answers, count the matches among the other
    n - 1 and score ``min(1, matches / 3)``; return the mean of the n scores, summed in the
    official order so the float is the official one bit for bit. The official script drops
    annotator i by comparing answer dicts, which removes exactly one entry because every
    official answer carries a distinct ``answer_id``; here the i-th answer is dropped by position.

    Args:
        prediction: the predicted answer (raw model text).
        answers: the n >= 1 gold answers (any n, not only 10).
        version: ``"2021"`` (default, current official script) or ``"2017"``.
    """
    pred, gold = normalize(prediction, answers, version)
    total_matches = sum(1 for g in gold if g == pred)
    subset_scores = [min(1, float(total_matches - (g == pred)) / 3) for g in gold]
    return float(sum(subset_scores)) / len(subset_scores)


def vqa_accuracy_per_sample(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    version: str | int = DEFAULT_VERSION,
) -> list[float]:
    """VQA accuracy of each question.

    Args:
        predictions: N predicted answers.
        references: N lists of gold answers (non-empty).
        version: ``"2021"`` (default, current official script) or ``"2017"``.

    Returns:
        N floats in [0, 1].
    """
    version = check_version(version)
    check_answer_inputs(predictions, references, "vqa_accuracy")
    return [vqa_accuracy_single(p, r, version) for p, r in zip(predictions, references)]


def vqa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    version: str | int = DEFAULT_VERSION,
) -> dict[str, float]:
    """Mean VQA accuracy over questions, as a fraction in [0, 1].

    The official script prints ``round(100 * sum / N, 2)``; this returns the unrounded
    ``sum / N`` (same float as the official one before its rounding).

    Args:
        predictions: N predicted answers.
        references: N lists of gold answers (non-empty).
        version: ``"2021"`` (default, current official script) or ``"2017"``.

    Returns:
        ``{"vqa_accuracy": float}``.
    """
    return {"vqa_accuracy": mean(vqa_accuracy_per_sample(predictions, references, version))}
