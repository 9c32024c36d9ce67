"""The training sampler: one order per (seed, epoch), split over DDP ranks so each step's
per-rank batches are one process's global batch, resumable mid-epoch, length-grouped on demand."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import DataLoader

from vlmtrain.data.length_grouping import group_by_length
from vlmtrain.data.resumable import ResumableSampler

N, B, W = 46, 3, 2  # 46 samples: neither a multiple of the global batch nor of a megabatch
LENGTHS = [random.Random(i).choice([8, 12, 40, 90, 200]) for i in range(N)]


def _batches(sampler: ResumableSampler, batch: int) -> list[list[int]]:
    loader = DataLoader(list(range(N)), batch_size=batch, sampler=sampler, drop_last=True)
    return [b.tolist() for b in loader]


def _sampler(world: int, rank: int, grouped: bool, batch: int, epoch: int = 2):
    sampler = ResumableSampler(list(range(N)), shuffle=True, seed=5, num_replicas=world,
                               rank=rank, lengths=LENGTHS if grouped else None, batch_size=batch)
    sampler.set_epoch(epoch)
    return sampler


@pytest.mark.parametrize("grouped", [False, True])
def test_ranks_draw_the_global_batches_of_one_process(grouped):
    one = _batches(_sampler(1, 0, grouped, B * W), B * W)
    ranks = [_batches(_sampler(W, r, grouped, B), B) for r in range(W)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == N // (B * W)
    for step, batch in enumerate(one):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
        assert set(ranks[0][step]).isdisjoint(ranks[1][step])  # no sample twice (no padding)


@pytest.mark.parametrize("grouped", [False, True])
def test_a_rank_resumes_mid_epoch_where_it_stopped(grouped):
    full = _batches(_sampler(W, 1, grouped, B), B)
    again = _sampler(W, 1, grouped, B)
    again.resume({"epoch": 2, "batches": 3}, batch_size=B)  # each rank had done 3 batches
    assert _batches(again, B) == full[3:]
    assert _batches(again, B) == full  # the skip applies once
    assert _batches(_sampler(W, 1, grouped, B, epoch=3), B) != full  # a new epoch, a new order


def test_length_grouping_cuts_padding_and_keeps_every_sample_once():
    def padding(batches):  # padded positions / all positions, batches padded to their longest
        pad = sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)
        return pad / sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)

    plain = _batches(_sampler(1, 0, False, 4), 4)
    grouped = _batches(_sampler(1, 0, True, 4), 4)
    assert padding(grouped) < 0.5 * padding(plain)
    assert grouped == _batches(_sampler(1, 0, True, 4), 4)  # deterministic per (seed, epoch)
    order = list(range(N))
    out = group_by_length(order, LENGTHS, 4, torch.Generator().manual_seed(0), megabatches=2)
    assert sorted(out) == order
    # megabatches of 8: the last one (40..45) makes one batch of 4 and an incomplete batch of
    # its 2 shortest, kept last so that drop_last drops it as it would without grouping
    assert out[-2:] == sorted(range(40, N), key=lambda j: -LENGTHS[j])[-2:]
    for start in range(0, N - 2, 4):  # every full batch comes from one megabatch
        assert len({i // 8 for i in out[start:start + 4]}) == 1


def test_validation_is_split_over_ranks_without_repeats(tiny_qwen):
    from types import SimpleNamespace

    from vlmtrain.data.datamodule import VLMDataModule
    from vlmtrain.data.shapes import ShapesDataset
    from vlmtrain.errors import VLMTrainError

    def loaders(val_size: int):
        out = []
        for rank in range(W):
            dm = VLMDataModule(ShapesDataset("vqa", "train", size=8, image_size=48),
                               ShapesDataset("vqa", "val", size=val_size, image_size=48),
                               processor=tiny_qwen.processor, family=tiny_qwen.family)
            dm.trainer = SimpleNamespace(world_size=W, global_rank=rank,
                                         accumulate_grad_batches=1)
            out.append(dm)
        return out

    shards = [list(dm.val_dataloader().sampler) for dm in loaders(7)]
    assert sorted(shards[0] + shards[1]) == list(range(7))  # 4 + 3, none twice
    train = [list(dm.train_dataloader().sampler) for dm in loaders(7)]
    assert set(train[0]).isdisjoint(train[1]) and len(train[0]) == len(train[1]) == 4
    with pytest.raises(VLMTrainError, match="the validation set has 1 samples for 2 ranks"):
        loaders(1)[0].val_dataloader()
