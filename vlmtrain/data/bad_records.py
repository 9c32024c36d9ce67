"""What happens to a bad record: ``data.on_bad_sample: error | skip``, counted per reason.

Every reader, dataset and collator of vlmtrain raises :class:`BadRecord` for a record it cannot
use and hands it to a :class:`BadRecordPolicy`:

* ``error``: one :class:`~vlmtrain.errors.VLMTrainError` naming the file and line (or index),
  the record, the problem and the fix;
* ``skip``: the record is dropped, counted under its reason in :class:`SkipCounts` (logged as
  ``data/skipped/<reason>``), and the first :data:`LOG_FIRST` skips are logged in full.

The counts live in a shared-memory tensor so that skips found in DataLoader worker processes
(images decoded and samples collated there) reach the main process: workers get the dataset
and collator pickled (spawn) or forked, and in both cases a tensor moved to shared memory stays
the same memory. Each worker writes its own row, so two workers never race on one counter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import get_worker_info

from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)

POLICIES = ("error", "skip")
#: Why a record was dropped; the keys of ``data/skipped/<reason>``.
REASONS = (
    "missing_image",          # the image file named by the record does not exist
    "unreadable_image",       # the file exists but does not decode (corrupt, empty, truncated)
    "bad_image",              # decoded, but not a usable RGB image
    "several_images",         # more images than the field or layout takes (image-text pairs)
    "image_placeholders",     # <image> placeholders do not match the record's images
    "not_utf8",               # text with bytes that are not UTF-8
    "not_json",               # a line that is not one JSON object
    "missing_field",          # a required key is absent
    "wrong_type",             # a key holds the wrong type (number for text, text for a list ...)
    "empty_text",             # empty or whitespace-only prompt, answer or reference
    "duplicate_id",           # the record's id was already used
    "chosen_equals_rejected",  # a preference pair whose two answers are the same
    "bad_conversation",       # turns that do not alternate user / assistant
    "too_long",               # the prompt with its image tokens cannot fit data.max_length
    "not_a_pair",             # a record without a rejected answer in a preference batch
    "not_a_caption",          # a preference pair in an image-caption (contrastive) batch
    "invalid_value",          # any other value the record cannot have (unknown task ...)
)
#: Skipped records logged in full (per dataset or collator); the rest are only counted.
LOG_FIRST = 20
# Rows of the count table: the main process, then one per DataLoader worker. Workers beyond
# the table share its last row (counts stay right unless two of them skip at the same instant).
_ROWS = 65
_HINT = " (fix the data or set data.on_bad_sample=skip)"


class BadRecord(ValueError):
    """A record that cannot be used.

    Args:
        reason: one of :data:`REASONS`.
        detail: the record, the problem and the fix, without any advice on ``on_bad_sample``
            (logged as is under ``skip``). ``str(exc)`` appends that advice, for ``error``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise KeyError(f"unknown skip reason {reason!r}; add it to REASONS")
        self.reason = reason
        self.detail = detail
        super().__init__(detail + _HINT)


class SkipCounts:
    """Skipped records per reason, shared by the main process and its DataLoader workers.

    Build it in the main process (a dataset's or collator's ``__init__``), before workers start.
    """

    def __init__(self) -> None:
        self._table = torch.zeros(_ROWS, len(REASONS), dtype=torch.int64).share_memory_()
        self._startup = torch.zeros(len(REASONS), dtype=torch.int64)

    def add(self, reason: str) -> int:
        """Count one skip; returns the total so far (all reasons, all processes)."""
        info = get_worker_info()
        row = 0 if info is None else min(info.id + 1, _ROWS - 1)
        self._table[row, REASONS.index(reason)] += 1
        return int(self._table.sum())

    def mark_startup(self) -> None:
        """Remember the counts so far as the start-up checks'.

        Under DDP every rank reads and checks the same files, so start-up skips are the same on
        each rank, while skips found later (when samples are read) are each rank's own: a sum
        over ranks must add only the later ones (``by_reason(late_only=True)``).
        """
        self._startup = self._table.sum(dim=0).clone()

    def by_reason(self, late_only: bool = False) -> dict[str, int]:
        """``{reason: count}`` for every reason counted at least once.

        Args:
            late_only: only skips counted after :meth:`mark_startup`.
        """
        totals = self._table.sum(dim=0) - (self._startup if late_only else 0)
        return {reason: n for reason, n in zip(REASONS, totals.tolist()) if n}

    @property
    def total(self) -> int:
        return int(self._table.sum())


class BadRecordPolicy:
    """Apply ``data.on_bad_sample`` to bad records and keep their counts.

    Args:
        on_bad_sample: ``error`` or ``skip``.
    """

    def __init__(self, on_bad_sample: str = "error") -> None:
        if on_bad_sample not in POLICIES:
            raise VLMTrainError(
                f"data.on_bad_sample={on_bad_sample!r} is not one of {', '.join(POLICIES)}"
            )
        self.on_bad_sample = on_bad_sample
        self.counts = SkipCounts()

    @property
    def skip(self) -> bool:
        return self.on_bad_sample == "skip"

    def handle(self, exc: BadRecord, where: str) -> None:
        """Raise (``error``) or count and log (``skip``) one bad record.

        Args:
            exc: the problem.
            where: the file and line or index, e.g. ``"train.jsonl:12"``.

        Raises:
            VLMTrainError: under ``error``, one line: ``where: detail; fix (... or skip)``.
        """
        if not self.skip:
            # from None: the cause may hold the record's raw text (a UnicodeDecodeError holds
            # its whole input), which must not reach the terminal
            raise VLMTrainError(f"{where}: {exc}") from None
        total = self.counts.add(exc.reason)
        if total <= LOG_FIRST:
            log.warning("skipping %s: %s [data/skipped/%s]", where, exc.detail, exc.reason)
        elif total == LOG_FIRST + 1:
            log.warning("skipping %s [data/skipped/%s]; further skipped records are counted, "
                        "not logged (counts in the run summary)", where, exc.reason)


def skip_counts(*objects: Any, late_only: bool = False) -> dict[str, int]:
    """Sum the skip counts of datasets and collators, as ``{"data/skipped/<reason>": n}``.

    Args:
        objects: datasets (a ``ConcatDataset`` or ``Subset`` is searched inside) and
            collators; anything with a ``skip_counts`` attribute (:class:`SkipCounts`) or a
            ``policy`` (:class:`BadRecordPolicy`) contributes, anything else is ignored.
        late_only: leave out the readers' start-up skips (see :meth:`SkipCounts.mark_startup`).
    """
    out: dict[str, int] = {}
    for counts in _find_counts(objects):
        for reason, n in counts.by_reason(late_only).items():
            key = f"data/skipped/{reason}"
            out[key] = out.get(key, 0) + n
    return out


def _find_counts(objects: Iterable[Any]) -> list[SkipCounts]:
    found: list[SkipCounts] = []
    for obj in objects:
        if obj is None:
            continue
        counts = getattr(obj, "skip_counts", None)
        policy = getattr(obj, "policy", None)
        if isinstance(counts, SkipCounts):
            found.append(counts)
        elif isinstance(policy, BadRecordPolicy):
            found.append(policy.counts)
        inner = list(getattr(obj, "datasets", ()))  # ConcatDataset
        if getattr(obj, "dataset", None) is not None:  # Subset
            inner.append(obj.dataset)
        found += [c for c in _find_counts(inner) if all(c is not f for f in found)]
    return found
