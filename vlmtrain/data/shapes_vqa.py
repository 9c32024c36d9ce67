"""Questions about shapes scenes: templates, balanced answers, annotators, wrong answers.

Each question type first draws its answer uniformly from the type's answer set and then builds a
scene in which that answer is true. Answers are therefore balanced by construction, so a model
cannot beat the chance levels of :func:`chance_level` without looking at the image.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlmtrain.data.shapes_render import (
    CELLS,
    COLOURS,
    COLUMNS,
    KINDS,
    ROWS,
    SIZES,
    Shape,
    sample_scene,
)

QTYPES = ("count", "colour", "shape", "position", "size", "exists")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
N_ANNOTATORS = 10

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "count": ("How many shapes are there?", "How many shapes are in the image?",
              "How many objects can you see?"),
    "colour": ("What colour is the {kind}?", "What is the colour of the {kind}?"),
    "colour_single": ("What colour is the shape?",),
    "shape": ("What shape is the {colour} object?", "Which shape is {colour}?"),
    "position_h": ("Is the {colour} {kind} on the left, in the middle or on the right?",),
    "position_v": ("Is the {colour} {kind} at the top, in the centre or at the bottom?",),
    "size": ("Is the {colour} {kind} big or small?", "Is the {colour} {kind} large or small?"),
    "exists": ("Is there a {colour} {kind}?", "Is there a {colour} {kind} in the image?"),
}

# What a careless annotator says instead of the true answer: synonyms (still right) and
# near-misses (a neighbouring value). Keys are answers; lists are alternatives.
SYNONYMS: dict[str, tuple[str, ...]] = {
    **{str(n): (NUMBER_WORDS[n],) for n in range(1, 10)},
    "purple": ("violet",), "circle": ("round",), "diamond": ("rhombus",),
    "middle": ("center", "centre"), "centre": ("center", "middle"),
    "large": ("big",), "small": ("little", "tiny"), "yes": ("yeah",), "no": ("nope",),
}
NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "red": ("orange",), "orange": ("red", "yellow"), "yellow": ("orange",), "green": ("blue",),
    "blue": ("purple",), "purple": ("blue",), "square": ("diamond",), "diamond": ("square",),
    "circle": ("square",), "triangle": ("diamond",), "left": ("middle",), "right": ("middle",),
    "middle": ("left", "right"), "top": ("centre",), "bottom": ("centre",),
    "centre": ("top", "bottom"), "large": ("small",), "small": ("large",), "yes": ("no",),
    "no": ("yes",),
}


@dataclass(frozen=True)
class Question:
    """A question with the scene it is about.

    Attributes:
        qtype: One of :data:`QTYPES`.
        text: The question.
        answer: The true answer (single lowercase word).
        shapes: The scene.
        meta: Extras such as the axis of a position question.
        target: The shape the question is about (``None`` for ``count`` and for ``exists``
            questions whose answer is "no").
        pair: ``(kind, colour)`` an ``exists`` question asks about.
    """

    qtype: str
    text: str
    answer: str
    shapes: list[Shape]
    meta: dict[str, Any] = field(default_factory=dict)
    target: Shape | None = None
    pair: tuple[str, str] | None = None


def answer_space(qtype: str, max_shapes: int) -> tuple[str, ...]:
    """All answers a question type can have (each equally likely by construction)."""
    spaces = {"count": tuple(str(n) for n in range(1, max_shapes + 1)), "colour": tuple(COLOURS),
              "shape": KINDS, "position": COLUMNS + ROWS, "size": SIZES, "exists": ("yes", "no")}
    return spaces[qtype]


def make_question(rng: random.Random, qtype: str, image_size: int, max_shapes: int) -> Question:
    """Draw a balanced answer for ``qtype`` and a scene in which it is true.

    Args:
        rng: Random generator of the sample.
        qtype: One of :data:`QTYPES`.
        image_size: Image side in pixels.
        max_shapes: Largest number of shapes in a scene.
    """
    n = rng.randint(1, max_shapes)
    colour, kind = rng.choice(tuple(COLOURS)), rng.choice(KINDS)

    def not_same(k: str, c: str) -> bool:
        # The described shape must be the only one matching its description.
        return (k, c) != (kind, colour)

    if qtype == "count":
        shapes, _ = sample_scene(rng, image_size, n)
        return Question(qtype, rng.choice(QUESTION_TEMPLATES["count"]), str(n), shapes)
    if qtype == "colour":
        shapes, target = sample_scene(rng, image_size, n, (kind, colour, None),
                                      allow=lambda k, c: k != kind)
        key = "colour_single" if n == 1 and rng.random() < 0.5 else "colour"
        return Question(qtype, rng.choice(QUESTION_TEMPLATES[key]).format(kind=kind), colour,
                        shapes, target=target)
    if qtype == "shape":
        shapes, target = sample_scene(rng, image_size, n, (kind, colour, None),
                                      allow=lambda k, c: c != colour)
        text = rng.choice(QUESTION_TEMPLATES["shape"]).format(colour=colour)
        return Question(qtype, text, kind, shapes, target=target)
    if qtype == "position":
        axis = rng.choice(("h", "v"))
        value = rng.randrange(3)
        cells = [(c, r) for c, r in CELLS if (c if axis == "h" else r) == value]
        shapes, target = sample_scene(rng, image_size, n, (kind, colour, None), cells, not_same)
        answer = (COLUMNS if axis == "h" else ROWS)[value]
        text = QUESTION_TEMPLATES[f"position_{axis}"][0].format(colour=colour, kind=kind)
        return Question(qtype, text, answer, shapes, {"axis": axis}, target=target)
    if qtype == "size":
        size = rng.choice(SIZES)
        shapes, target = sample_scene(rng, image_size, n, (kind, colour, size), allow=not_same)
        text = rng.choice(QUESTION_TEMPLATES["size"]).format(colour=colour, kind=kind)
        return Question(qtype, text, size, shapes, target=target)
    if qtype == "exists":
        present = rng.random() < 0.5
        target = (kind, colour, None) if present else None
        shapes, shape = sample_scene(rng, image_size, n, target, allow=not_same)
        text = rng.choice(QUESTION_TEMPLATES["exists"]).format(colour=colour, kind=kind)
        return Question(qtype, text, "yes" if present else "no", shapes, target=shape,
                        pair=(kind, colour))
    raise ValueError(f"unknown VQA question type {qtype!r}; use one of {', '.join(QTYPES)}")


def annotator_answers(rng: random.Random, answer: str, noise_rate: float) -> tuple[str, ...]:
    """Ten annotator answers: all ``answer`` except, for a ``noise_rate`` fraction of
    questions, one or two annotators who give a synonym or a near-miss.

    Args:
        rng: Random generator of the sample.
        answer: The true answer.
        noise_rate: Probability that a question has any deviating annotator.

    Returns:
        ``N_ANNOTATORS`` answers; the true answer is always the most common one (>= 8 of 10).
    """
    answers = [answer] * N_ANNOTATORS
    if rng.random() < noise_rate:
        for slot in rng.sample(range(N_ANNOTATORS), rng.randint(1, 2)):
            synonyms, misses = SYNONYMS.get(answer, ()), NEAR_MISSES.get(answer, ())
            pool = synonyms if synonyms and (rng.random() < 0.6 or not misses) else misses
            answers[slot] = rng.choice(pool) if pool else answer
    return tuple(answers)


def majority_answer(answers: tuple[str, ...]) -> str:
    """Most common answer (ties: the one seen first)."""
    return Counter(answers).most_common(1)[0][0]


def rejected_answer(rng: random.Random, question: Question, max_shapes: int) -> str:
    """A plausible wrong answer: same type, never the answer or one of its synonyms.

    Prefers values visible in the scene (the colour of another shape, a neighbouring count), which
    is what a model that half-looked at the image would say.
    """
    answer, qtype = question.answer, question.qtype
    wrong = {answer, *SYNONYMS.get(answer, ())}
    if qtype == "count":
        n = int(answer)
        pool = [str(m) for m in (n - 1, n + 1) if 1 <= m <= max(max_shapes, 2) and m != n]
    elif qtype == "colour":
        pool = [s.colour for s in question.shapes if s.colour != answer] or list(COLOURS)
    elif qtype == "shape":
        pool = [s.kind for s in question.shapes if s.kind != answer] or list(KINDS)
    elif qtype == "position":
        pool = list(COLUMNS if question.meta["axis"] == "h" else ROWS)
    else:  # size, exists: the other of two values
        pool = list(answer_space(qtype, max_shapes))
    return rng.choice([p for p in pool if p not in wrong])


def default_question_types() -> dict[str, float]:
    """Every VQA question type with weight 1."""
    return {q: 1.0 for q in QTYPES}


def chance_level(question_types: Mapping[str, float] | None = None,
                 max_shapes: int = 3) -> dict[str, dict[str, float]]:
    """Accuracy of image-blind baselines on the shapes VQA task, worked out analytically.

    Answers are uniform within each type by construction (checked empirically in the tests), so:

    * ``majority``: always say the type's most frequent answer (a model that knows the question
      type but not the image): 1 / number of answers of the type.
    * ``uniform``: guess uniformly among the type's answers: the same value, by balance.
    * ``blind``: the best any model that reads the whole question but not the image can do. It
      differs only for ``position``, whose question names the axis (3 candidates, not 6).

    ``overall`` weights types by ``question_types`` and adds ``constant``: one answer for every
    question (the best single answer's share). Values are exact match on the target; VQA
    accuracy adds at most the near-miss annotators' partial credit (< 0.01 at noise 0.08).

    Args:
        question_types: Mapping type -> sampling weight (default: all types, equal weights).
        max_shapes: Largest number of shapes (sets the count answers 1..max_shapes).

    Returns:
        ``{qtype: {"majority", "uniform", "blind"}, ..., "overall": {"majority", "uniform",
        "blind", "constant"}}``.
    """
    weights = normalise_weights(question_types or default_question_types(), QTYPES)
    result: dict[str, dict[str, float]] = {}
    answer_mass: Counter[str] = Counter()
    for qtype, weight in weights.items():
        space = answer_space(qtype, max_shapes)
        p = 1.0 / len(space)
        result[qtype] = {"majority": p, "uniform": p, "blind": 1 / 3 if qtype == "position" else p}
        for ans in space:
            answer_mass[ans] += weight * p
    result["overall"] = {
        key: sum(w * result[q][key] for q, w in weights.items())
        for key in ("majority", "uniform", "blind")
    }
    result["overall"]["constant"] = max(answer_mass.values())
    return result


def normalise_weights(weights: Mapping[str, float], known: tuple[str, ...]) -> dict[str, float]:
    """Check a ``name -> weight`` mapping against the known names and scale it to sum 1.

    Raises:
        ValueError: For an unknown name, a negative weight, or all-zero weights.
    """
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ValueError(f"unknown question type(s) {unknown}; choose from {', '.join(known)}")
    if any(float(w) < 0 for w in weights.values()):
        raise ValueError(f"question type weights must be >= 0, got {dict(weights)}")
    total = sum(float(w) for w in weights.values())
    if total <= 0:
        raise ValueError(f"question type weights sum to {total}; give at least one type a "
                         "positive weight")
    return {q: float(w) / total for q, w in weights.items() if float(w) > 0}
