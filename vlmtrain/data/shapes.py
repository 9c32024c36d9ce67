"""The synthetic shapes world: a deterministic, download-free dataset for every task.

Sample ``i`` of ``ShapesDataset(task, split, seed=s)`` is generated on access from a random
generator seeded with a cryptographic hash of ``(s, split, task, i)``. Nothing is stored, the same
index gives the same pixels and text in every process (Python's ``hash()`` is salted per process
and is therefore never used), and splits draw from unrelated streams. On top of that the split is
folded into the background tint, so no image can be byte-identical across splits.

Tasks:
    * ``vqa``: single-word answers to count / colour / shape / position / size / exists
      questions, 10 annotator answers each (see :mod:`vlmtrain.data.shapes_vqa`).
    * ``caption``: 5 reference captions (see :mod:`vlmtrain.data.shapes_captions`).
    * ``doc``: reading questions on pages of printed words (see :mod:`vlmtrain.data.shapes_doc`).
    * ``preference``: a VQA question with the right answer as chosen and a plausible wrong one as
      rejected.
    * ``pair``: image + caption for contrastive alignment (empty prompt).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

from torch.utils.data import Dataset

from vlmtrain.data.records import TASKS, Sample
from vlmtrain.data.shapes_captions import (
    BACKGROUND_WORDS,
    COUNT_WORDS,
    PICTURE_WORDS,
    POSITION_PHRASES,
    SIZE_WORDS,
    listing,
    make_captions,
)
from vlmtrain.data.shapes_doc import (
    CASE_STYLES,
    DOC_QTYPES,
    DOC_TEMPLATES,
    DOC_WORDS,
    NUMBER_RANGE,
    make_doc_question,
    min_page_size,
    styled,
)
from vlmtrain.data.shapes_followups import FOLLOWUP_MODES, FollowupPlanner, followup_question
from vlmtrain.data.shapes_render import SPLITS, background, render_scene, sample_scene
from vlmtrain.data.shapes_vqa import (
    NEAR_MISSES,
    QTYPES,
    QUESTION_TEMPLATES,
    SYNONYMS,
    Question,
    annotator_answers,
    chance_level,
    majority_answer,
    make_question,
    normalise_weights,
    rejected_answer,
)

__all__ = ["ShapesDataset", "chance_level", "corpus_texts", "sample_rng"]

CAPTION_PROMPT = "Describe the image."
LISTING_PROMPT = "Describe the shapes."
CAPTION_STYLES = ("references", "listing")


def sample_rng(seed: int, split: str, task: str, index: int) -> random.Random:
    """The random generator of one sample, identical in every process and Python run.

    Args:
        seed: Dataset seed.
        split: ``"train" | "val" | "test"``.
        task: Task name.
        index: Sample index.
    """
    key = f"vlmtrain-shapes|{seed}|{split}|{task}|{index}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


class ShapesDataset(Dataset[Sample]):
    """Procedurally generated shapes scenes for captioning, VQA, documents, preferences, pairs.

    Args:
        task: ``"caption" | "vqa" | "doc" | "preference" | "pair"``.
        split: ``"train" | "val" | "test"``.
        size: Number of samples.
        seed: Seed of the whole dataset; change it for a fresh world of the same distribution.
        image_size: Side of shapes images in pixels.
        max_shapes: Largest number of shapes in a scene (1..9; count answers are 1..max_shapes).
        question_types: ``name -> weight`` for ``vqa``/``preference`` (names from
            ``shapes_vqa.QTYPES``) or ``doc`` (names from ``shapes_doc.DOC_QTYPES``); default:
            every type with equal weight.
        doc_image_size: Side of document pages in pixels.
        doc_max_words: Most words or numbers on one page (1..8).
        noise_rate: Share of VQA questions where 1-2 of the 10 annotators deviate.
        caption_prompt: Prompt of ``caption`` samples (default: ``"Describe the image."``, or
            ``"Describe the shapes."`` with ``caption_style="listing"``).
        caption_style: ``caption`` only: ``"references"`` (5 reference captions, the target
            rotating through them) or ``"listing"`` (one fixed-format target naming every
            shape's cell, size, colour and kind in reading order; see
            :func:`~vlmtrain.data.shapes_captions.listing`).
        questions_per_image: ``vqa`` only: questions asked about each image, as one multi-turn
            conversation (the first as without it, then up to ``questions_per_image - 1`` follow-ups
            of types drawn from ``question_types``). More supervised answers per rendered and
            encoded image: a cheap way to speed up learning. Keep 1 for evaluation splits.
        followups: How follow-up turns are drawn: ``"fresh"`` (never answerable from what
            earlier turns said; a small scene may run out, giving a shorter conversation) or
            ``"independent"`` (each drawn on its own; a later turn may ask what an earlier turn
            already told). See :mod:`vlmtrain.data.shapes_followups`.
    """

    def __init__(self, task: str = "vqa", split: str = "train", size: int = 1000, seed: int = 0,
                 image_size: int = 64, max_shapes: int = 3,
                 question_types: Mapping[str, float] | None = None, doc_image_size: int = 128,
                 doc_max_words: int = 4, noise_rate: float = 0.08,
                 caption_prompt: str | None = None, questions_per_image: int = 1,
                 followups: str = "fresh", caption_style: str = "references") -> None:
        if task not in TASKS:
            raise ValueError(f"unknown shapes task {task!r}; use one of {', '.join(TASKS)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if size < 0:
            raise ValueError(f"data size must be >= 0, got {size}")
        if not 1 <= max_shapes <= 9:
            raise ValueError(f"max_shapes must be in 1..9 (a 3x3 grid), got {max_shapes}")
        if not 1 <= doc_max_words <= 8:
            raise ValueError(f"doc_max_words must be in 1..8, got {doc_max_words}")
        if image_size < 32 or doc_image_size < min_page_size(doc_max_words):
            raise ValueError(f"image_size must be >= 32 and doc_image_size >= "
                             f"{min_page_size(doc_max_words)} (for doc_max_words={doc_max_words}) "
                             f"to stay legible, got {image_size} and {doc_image_size}")
        if questions_per_image < 1 or (questions_per_image > 1 and task != "vqa"):
            raise ValueError(f"questions_per_image must be >= 1, and 1 unless task='vqa'; got "
                             f"{questions_per_image} for task {task!r}")
        if followups not in FOLLOWUP_MODES:
            raise ValueError(f"unknown followups mode {followups!r}; use one of "
                             f"{', '.join(FOLLOWUP_MODES)}")
        if caption_style not in CAPTION_STYLES:
            raise ValueError(f"unknown caption_style {caption_style!r}; use one of "
                             f"{', '.join(CAPTION_STYLES)}")
        if not 0.0 <= noise_rate <= 1.0:
            raise ValueError(f"noise_rate must be in [0, 1], got {noise_rate}")
        known = DOC_QTYPES if task == "doc" else QTYPES
        weights = normalise_weights(question_types or {q: 1.0 for q in known}, known)
        if task == "doc" and doc_max_words == 1:
            weights.pop("below", None)  # needs two lines; keep the other types
        self.task, self.split, self.size, self.seed = task, split, size, seed
        self.image_size, self.max_shapes = image_size, max_shapes
        self.doc_image_size, self.doc_max_words = doc_image_size, doc_max_words
        if caption_prompt is None:
            caption_prompt = LISTING_PROMPT if caption_style == "listing" else CAPTION_PROMPT
        self.noise_rate, self.caption_prompt = noise_rate, caption_prompt
        self.caption_style = caption_style
        self.questions_per_image, self.followups = questions_per_image, followups
        self._weights = weights  # question type -> weight, for the follow-up planner
        self._qtypes, self._qweights = list(weights), list(weights.values())
        self.epoch = 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Rotate which reference caption is the target: ``references[(i + epoch) % 5]``.

        Only ``caption`` and ``pair`` samples depend on it. DataLoader workers hold a copy of the
        dataset, so call this before the epoch's iterator is created (``persistent_workers=False``)
        or the workers keep the old epoch.
        """
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} {self.task} samples")
        rng = sample_rng(self.seed, self.split, self.task, index)
        sample_id = f"{self.task}-{self.split}-{index:06d}"
        if self.task in ("vqa", "preference"):
            return self._question_sample(rng, sample_id)
        if self.task == "doc":
            return self._doc_sample(rng, sample_id)
        return self._caption_sample(rng, sample_id, index)

    def _qtype(self, rng: random.Random) -> str:
        return rng.choices(self._qtypes, weights=self._qweights)[0]

    def _question_sample(self, rng: random.Random, sample_id: str) -> Sample:
        qtype = self._qtype(rng)
        question = make_question(rng, qtype, self.image_size, self.max_shapes)
        image = render_scene(question.shapes, self.image_size,
                             background(rng, self.split, 232, 250))
        answers = annotator_answers(rng, question.answer, self.noise_rate)
        rejected = None
        if self.task == "preference":
            rejected = rejected_answer(rng, question, self.max_shapes)
        meta = {"qtype": qtype, "answer": question.answer, **question.meta,
                "shapes": tuple(s.as_dict() for s in question.shapes)}
        # Drawn last, so the first turn is the same sample whatever questions_per_image is.
        followups = self._followups(rng, question)
        return Sample(sample_id, image, question.text, majority_answer(answers), answers,
                      self.task, rejected, meta, followups)

    def _followups(self, rng: random.Random, question: Question) -> tuple[tuple[str, str], ...]:
        if self.followups == "independent":
            return tuple(followup_question(rng, self._qtype(rng), question.shapes)
                         for _ in range(self.questions_per_image - 1))
        planner, turns = FollowupPlanner(question), []
        for _ in range(self.questions_per_image - 1):
            turn = planner.next(rng, self._weights)
            if turn is None:  # every fact of a small scene asked: a shorter conversation
                break
            turns.append(turn)
        return tuple(turns)

    def _doc_sample(self, rng: random.Random, sample_id: str) -> Sample:
        qtype = self._qtype(rng)
        doc = make_doc_question(rng, qtype, self.split, self.doc_image_size, self.doc_max_words)
        meta = {"qtype": qtype, **doc.meta, "items": tuple(t.as_dict() for t in doc.items)}
        return Sample(sample_id, doc.image, doc.text, doc.answer, doc.references, "doc",
                      meta=meta)

    def _caption_sample(self, rng: random.Random, sample_id: str, index: int) -> Sample:
        n = rng.randint(1, self.max_shapes)
        shapes, _ = sample_scene(rng, self.image_size, n)
        image = render_scene(shapes, self.image_size, background(rng, self.split, 232, 250))
        if self.caption_style == "listing":
            captions = (listing(shapes),)
        else:
            captions = make_captions(rng, shapes)
        target = captions[(index + self.epoch) % len(captions)]
        prompt = self.caption_prompt if self.task == "caption" else ""
        meta = {"n_shapes": n, "shapes": tuple(s.as_dict() for s in shapes)}
        return Sample(sample_id, image, prompt, target, captions, self.task, meta=meta)


def _vocabulary_lines() -> list[str]:
    """Every word the generators can emit, including rare synonyms and all printed strings."""
    lines = [t.format(kind="circle", colour="red", text="apple")
             for templates in (*QUESTION_TEMPLATES.values(), *DOC_TEMPLATES.values())
             for t in templates]
    lines += [" ".join(SYNONYMS.keys()), " ".join(w for v in SYNONYMS.values() for w in v)]
    lines += [" ".join(NEAR_MISSES.keys()), " ".join(COUNT_WORDS), " ".join(PICTURE_WORDS)]
    lines += [" ".join(BACKGROUND_WORDS), " ".join(w for v in SIZE_WORDS.values() for w in v)]
    lines += [p for phrases in POSITION_PHRASES.values() for p in phrases]
    lines += [CAPTION_PROMPT, "a single shape: there is"]
    lines += [" ".join(styled(w, s) for w in DOC_WORDS) for s in CASE_STYLES]
    numbers = [str(n) for n in range(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1)]
    lines += [" ".join(numbers[i:i + 50]) for i in range(0, len(numbers), 50)]
    return lines


def corpus_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """Text corpus covering every prompt, answer, caption and printed word of all tasks.

    Meant for training a small tokenizer: it starts with vocabulary lines that list every word
    any generator can emit (so rare synonyms are never out of vocabulary), followed by the
    prompts, targets, references and rejected answers of ``n`` generated train samples spread
    over all tasks (so word frequencies look like the data).

    Args:
        n: Number of generated samples to draw texts from.
        seed: Dataset seed of those samples.

    Returns:
        Non-empty strings.
    """
    texts = _vocabulary_lines()
    tasks = ("vqa", "caption", "doc", "preference")  # "pair" texts are caption texts
    per_task = -(-n // len(tasks))
    for task in tasks:
        data = ShapesDataset(task, "train", size=per_task, seed=seed)
        for i in range(per_task):
            s = data[i]
            texts += [s.prompt, *dict.fromkeys(s.references)]
            if s.rejected is not None:
                texts.append(s.rejected)
    return [t for t in texts if t]
