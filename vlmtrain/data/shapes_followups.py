"""Follow-up questions: further turns about the scene of a VQA sample, in one conversation.

Several questions about one image make one training sequence: more supervised answers for one
rendered and encoded image. Two ways to draw them (``ShapesDataset(followups=...)``):

* ``"fresh"`` (:class:`FollowupPlanner`): no turn can be answered from what earlier turns said.
* ``"independent"`` (:func:`followup_question`): each turn drawn on its own, as if it were the
  first; a later turn may repeat a fact or ask what an earlier turn already said.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from vlmtrain.data.shapes_render import COLOURS, KINDS, Shape
from vlmtrain.data.shapes_vqa import QTYPES, QUESTION_TEMPLATES, Question

FOLLOWUP_MODES = ("fresh", "independent")


def _ask(rng: random.Random, qtype: str, s: Shape, n_shapes: int,
         axis: str = "h") -> tuple[str, str]:
    """Word a ``colour | shape | size | position`` question about shape ``s``; its answer."""
    if qtype == "colour":
        key = "colour_single" if n_shapes == 1 and rng.random() < 0.5 else "colour"
        return rng.choice(QUESTION_TEMPLATES[key]).format(kind=s.kind), s.colour
    if qtype == "shape":
        return rng.choice(QUESTION_TEMPLATES["shape"]).format(colour=s.colour), s.kind
    if qtype == "size":
        return rng.choice(QUESTION_TEMPLATES["size"]).format(colour=s.colour, kind=s.kind), s.size
    text = QUESTION_TEMPLATES[f"position_{axis}"][0].format(colour=s.colour, kind=s.kind)
    return text, s.column_name if axis == "h" else s.row_name


def _ask_exists(rng: random.Random, kind: str, colour: str, present: bool) -> tuple[str, str]:
    text = rng.choice(QUESTION_TEMPLATES["exists"]).format(colour=colour, kind=kind)
    return text, "yes" if present else "no"


class FollowupPlanner:
    """Follow-up questions about a scene that earlier turns of the conversation do not answer.

    Several questions about one image form one training sequence, so a later turn can see every
    earlier question and answer. Drawn naively, ~70% of colour and shape follow-ups could be
    answered by copying a word from an earlier turn ("Is the red circle at the top?" ... "What
    colour is the circle?"): the model then learns to copy instead of to look, on exactly the
    hardest question types, and evaluation (one question per image) never offers the shortcut.
    The planner tracks what the conversation has told: which shapes have been *named* (their
    colour and kind said together, in a question or by an answer), and which facts have been
    asked. A colour or shape question is only asked about a shape not yet named, no fact is
    asked twice, and an ``exists`` question is only asked while both a "yes" and a "no" are
    possible (otherwise later turns would lean to "no").

    Args:
        first: The conversation's first question (it has told its own facts already).
    """

    def __init__(self, first: Question) -> None:
        self.shapes = first.shapes
        self.named: set[Shape] = set()
        self.asked: set[tuple[Any, ...]] = set()
        self.kinds = Counter(s.kind for s in self.shapes)
        self.colours = Counter(s.colour for s in self.shapes)
        self.pairs = Counter((s.kind, s.colour) for s in self.shapes)
        # Shapes a question can describe by colour and kind without ambiguity.
        self.unique = [s for s in self.shapes if self.pairs[(s.kind, s.colour)] == 1]
        facts = {"count": ("count",), "size": ("size", first.target),
                 "position": ("position", first.target, first.meta.get("axis")),
                 "exists": ("exists", first.pair)}
        if first.qtype in facts:  # colour and shape questions tell a name, not a fact
            self.asked.add(facts[first.qtype])
        if first.target is not None:
            self.named.add(first.target)

    def _options(self, qtype: str) -> list[tuple[Any, ...]]:
        unique = self.unique
        if qtype == "count":
            return [] if ("count",) in self.asked else [("count",)]
        if qtype == "colour":
            return [("colour", s) for s in self.shapes
                    if self.kinds[s.kind] == 1 and s not in self.named]
        if qtype == "shape":
            return [("shape", s) for s in self.shapes
                    if self.colours[s.colour] == 1 and s not in self.named]
        if qtype == "size":
            return [("size", s) for s in unique if ("size", s) not in self.asked]
        if qtype == "position":
            return [("position", s, a) for s in unique for a in ("h", "v")
                    if ("position", s, a) not in self.asked]
        if qtype == "exists":
            yes = [(s.kind, s.colour) for s in unique if s not in self.named]
            no = [(k, c) for k in KINDS for c in COLOURS
                  if (k, c) not in self.pairs and ("exists", (k, c)) not in self.asked]
            return [("exists", yes), ("exists", no)] if yes and no else []
        raise ValueError(f"unknown VQA question type {qtype!r}; use one of {', '.join(QTYPES)}")

    def next(self, rng: random.Random, weights: Mapping[str, float]) -> tuple[str, str] | None:
        """Draw a question type by ``weights`` among those still askable, then a question.

        Returns:
            ``(question, answer)``, or ``None`` when the scene has nothing left to ask.
        """
        options = {q: self._options(q) for q, w in weights.items() if w > 0}
        options = {q: o for q, o in options.items() if o}
        if not options:
            return None
        qtype = rng.choices(list(options), weights=[weights[q] for q in options])[0]
        if qtype == "exists":
            pool = rng.choice(options[qtype])[1]
            kind, colour = rng.choice(pool)
            present = (kind, colour) in self.pairs
            self.asked.add(("exists", (kind, colour)))
            if present:
                self.named.add(next(s for s in self.shapes if (s.kind, s.colour) == (kind, colour)))
            return _ask_exists(rng, kind, colour, present)
        fact = rng.choice(options[qtype])
        self.asked.add(fact)
        if qtype == "count":
            return rng.choice(QUESTION_TEMPLATES["count"]), str(len(self.shapes))
        self.named.add(fact[1])
        return _ask(rng, qtype, fact[1], len(self.shapes), *fact[2:])


def followup_question(rng: random.Random, qtype: str, shapes: list[Shape]) -> tuple[str, str]:
    """Another question about an existing scene, and its answer.

    The described object is always unique in the scene, as in :func:`make_question`; a type that
    no object of the scene supports (no unique kind for ``colour``, no unique colour for
    ``shape``) becomes ``count``. Answers follow the scene, so they are balanced only as far as
    scenes are.

    Args:
        rng: Random generator of the sample.
        qtype: One of :data:`QTYPES`.
        shapes: The scene.

    Returns:
        ``(question, answer)``.
    """
    kinds = Counter(s.kind for s in shapes)
    colours = Counter(s.colour for s in shapes)
    pairs = Counter((s.kind, s.colour) for s in shapes)
    if qtype == "colour":
        pool = [s for s in shapes if kinds[s.kind] == 1]
        if pool:
            return _ask(rng, qtype, rng.choice(pool), len(shapes))
    elif qtype == "shape":
        pool = [s for s in shapes if colours[s.colour] == 1]
        if pool:
            return _ask(rng, qtype, rng.choice(pool), len(shapes))
    elif qtype in ("position", "size"):
        pool = [s for s in shapes if pairs[(s.kind, s.colour)] == 1]
        if pool:
            s = rng.choice(pool)
            axis = rng.choice(("h", "v")) if qtype == "position" else "h"
            return _ask(rng, qtype, s, len(shapes), axis)
    elif qtype == "exists":
        if rng.random() < 0.5:
            kind, colour = rng.choice(sorted(pairs))
        else:
            absent = [(k, c) for k in KINDS for c in COLOURS if (k, c) not in pairs]
            kind, colour = rng.choice(absent)
        return _ask_exists(rng, kind, colour, (kind, colour) in pairs)
    elif qtype != "count":
        raise ValueError(f"unknown VQA question type {qtype!r}; use one of {', '.join(QTYPES)}")
    return rng.choice(QUESTION_TEMPLATES["count"]), str(len(shapes))
