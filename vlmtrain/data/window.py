"""Training batches grouped by optimizer step, so token means cover the whole accumulated batch.

With ``trainer.accumulate_grad_batches = k`` Lightning divides each micro-batch's loss by ``k``.
For a loss that is a mean over answer tokens that gives a mean of per-micro-batch means: a
micro-batch of short answers weighs as much as one of long answers, and the gradient differs
from the one of a single batch of the same samples (the bug transformers fixed in 2024 with
``num_items_in_batch``). This loader reads the ``k`` micro-batches of a step ahead and tells
each of them how many answer tokens the whole step has, so the loss can divide by that number.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader

IGNORE_INDEX = -100


class AccumulationWindowLoader(DataLoader):
    """A ``DataLoader`` whose batches carry ``window_tokens``: answer tokens of their step.

    Args:
        *args, **kwargs: as for :class:`torch.utils.data.DataLoader`.
        window: micro-batches per optimizer step (``trainer.accumulate_grad_batches``).

    Each yielded batch gets ``batch["window_tokens"]``, an int64 scalar tensor: the number of
    supervised next-token positions (``labels[:, 1:] != -100``) summed over the ``window``
    consecutive batches it is accumulated with (fewer at the end of an epoch). Lightning steps
    the optimizer after every ``window`` batches of an epoch, counting from its first batch, so
    the groups here are the groups the optimizer sees.
    """

    def __init__(self, *args: Any, window: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = max(1, int(window))

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        while group := list(islice(batches, self.window)):
            # None: a batch whose samples were all skipped as bad (its step is skipped)
            # a batch without labels (image-text pairs) has no tokens to count: its loss is a
            # per-batch mean, and Lightning's division by the window is the right scaling
            counted = [b for b in group if b is not None and "labels" in b]
            total = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in counted)
            for batch in group:
                if batch is not None and "labels" in batch:
                    batch["window_tokens"] = torch.tensor(total, dtype=torch.long)
                yield batch
