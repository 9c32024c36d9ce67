"""Metrics per group of samples (question type, answer type): ``val/<key>/<group>``.

The official VQA evaluation reports accuracy per answer type and per question type, DocVQA per
question type: the same metric computed on each group's samples alone. Here each group gets its
own copy of every metric (a fresh ``deepcopy`` of the reset metric), updated with that group's
samples only, so a group's value means exactly what the overall value means, on fewer samples.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.errors import VLMTrainError

_UNSAFE = re.compile(r"[^\w.-]+")


def group_name(value: Any) -> str:
    """A group value as a metric-key component: ``"yes/no"`` -> ``"yes_no"`` (a ``/`` would
    nest the key one level deeper in W&B)."""
    return _UNSAFE.sub("_", str(value)).strip("_") or "none"


def sample_groups(sample_meta: Sequence[Mapping[str, Any]] | None, key: str) -> list[list[str]]:
    """The groups of each sample of a batch, from its metadata at ``key``.

    A list value (DocVQA's ``question_types``) puts the sample in each of its groups, as the
    DocVQA evaluation does; a sample without the key is in no group.

    Raises:
        VLMTrainError: no sample of the batch has ``key`` (a misspelt ``group_by``).
    """
    metas = list(sample_meta or [])
    if not any(key in m for m in metas):
        have = sorted({k for m in metas for k in m})
        raise VLMTrainError(
            f"callbacks.generation_eval.group_by={key!r}: no validation sample has this metadata "
            f"key (samples have: {', '.join(have) or 'no metadata'}); set group_by to one of "
            "them or to null")
    out = []
    for m in metas:
        value = m.get(key)
        values = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
        out.append(sorted({group_name(v) for v in values}))
    return out


class GroupedMetrics:
    """One copy of each metric per group seen during an evaluation.

    Args:
        metrics: name -> metric (the callback's); each group gets a deepcopy of the reset one.
        key: the ``Sample.meta`` key naming a sample's group (``qtype``, ``answer_type``).
        names: which metrics to split by group (``None`` = all).
    """

    def __init__(self, metrics: Mapping[str, Metric], key: str,
                 names: Sequence[str] | None = None) -> None:
        unknown = sorted(set(names or ()) - set(metrics))
        if unknown:
            raise VLMTrainError(
                f"callbacks.generation_eval.group_metrics names {unknown}, which are not in "
                f"metrics ({', '.join(metrics)}); use those names or null for all")
        self.key = key
        self.templates = {n: m for n, m in metrics.items() if names is None or n in names}
        self.groups: dict[str, dict[str, Metric]] = {}

    def reset(self) -> None:
        self.groups = {}

    def update(self, meta: Mapping[str, Any], predictions: Sequence[str],
               update: Any) -> None:
        """Update each group's metrics with that group's samples of the batch.

        Args:
            meta: the batch's ``meta`` (``sample_meta``, ``references``, ``images``, ``ids``).
            predictions: one generated text per sample.
            update: ``update(metric, predictions, references, images, ids)``, the callback's own
                way of feeding a metric (image-taking metrics get their images and the ids that
                name a sample they refuse, here as for the whole split).
        """
        members: dict[str, list[int]] = {}
        for i, groups in enumerate(sample_groups(meta.get("sample_meta"), self.key)):
            for g in groups:
                members.setdefault(g, []).append(i)
        images, ids = meta.get("images"), meta.get("ids")
        for g, idx in members.items():
            for metric in self._group(g).values():
                update(metric, [predictions[i] for i in idx],
                       [meta["references"][i] for i in idx],
                       [images[i] for i in idx] if images is not None else None,
                       [ids[i] for i in idx] if ids is not None else None)

    def compute(self) -> dict[str, Tensor]:
        """``{"<metric key>/<group>": value}`` for every group seen on any rank."""
        for g in _all_ranks(sorted(self.groups)):
            self._group(g)  # a group another rank saw: compute() syncs every rank's copy
        values: dict[str, Tensor] = {}
        for g in sorted(self.groups):
            for name, metric in self.groups[g].items():
                result = metric.compute()
                items = result.items() if isinstance(result, dict) else [(name, result)]
                values.update({f"{k}/{g}": v for k, v in items})
        return values

    def _group(self, g: str) -> dict[str, Metric]:
        if g not in self.groups:
            self.groups[g] = {}
            for name, template in self.templates.items():
                clone = copy.deepcopy(template)
                clone.reset()
                self.groups[g][name] = clone
        return self.groups[g]


def _all_ranks(names: list[str]) -> list[str]:
    """The union of ``names`` over DDP ranks (every rank must compute the same groups, or the
    metric sync would wait forever on a rank that never saw a group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return names
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, names)
    return sorted({n for part in gathered for n in part})


