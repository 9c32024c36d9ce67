"""InfoNCE under DDP: 2 CPU ranks (gloo), each with half the batch, gather every rank's pairs
(and hard negatives) with gradients; loss and parameter gradients must equal one process that
sees the full batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.testing import assert_close

from vlmtrain.losses.functional import CLIP_INIT_LOGIT_SCALE, info_nce, info_nce_distributed

WORLD, BATCH, DIM, TIMEOUT_S = 2, 8, 6, 120


class Towers(nn.Module):
    """Two linear "encoders" and CLIP's learnable temperature: enough to carry gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same initial weights in every process
        self.image, self.text = nn.Linear(DIM, 4), nn.Linear(DIM, 4)
        self.logit_scale = nn.Parameter(torch.tensor(CLIP_INIT_LOGIT_SCALE))

    def forward(self, images, texts, negatives):
        return self.image(images), self.text(texts), self.text(negatives), self.logit_scale


def _data():
    gen = torch.Generator().manual_seed(1)
    images, texts = torch.randn(BATCH, DIM, generator=gen), torch.randn(BATCH, DIM, generator=gen)
    negatives = texts + 0.3 * torch.randn(BATCH, DIM, generator=gen)  # one per pair
    return images, texts, negatives


def _worker(rank: int, workdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/pg", rank=rank,
                            world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(Towers())
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        images, texts, negatives = (x[shard] for x in _data())
        image_emb, text_emb, negative_emb, scale = model(images, texts, negatives)
        image_emb.retain_grad()
        loss = info_nce_distributed(image_emb, text_emb, scale, negative_emb)
        loss.backward()  # DDP averages the parameter gradients over the ranks here
        grads = {name: p.grad for name, p in model.module.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads, "image_emb_grad": image_emb.grad},
                   Path(workdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("infonce_ddp")
    # fork, as tests/metrics/test_ddp.py: CPU only, no process group in the parent.
    ctx = mp.start_processes(_worker, args=(str(workdir),), nprocs=WORLD, join=False,
                             start_method="fork")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"InfoNCE DDP ranks did not finish in {TIMEOUT_S} s")
    return [torch.load(workdir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    model = Towers()
    image_emb, text_emb, negative_emb, scale = model(*_data())
    image_emb.retain_grad()
    loss = info_nce(image_emb, text_emb, scale, negative_emb)
    loss.backward()
    return {"loss": loss.detach(), "image_emb_grad": image_emb.grad,
            "grads": {name: p.grad for name, p in model.named_parameters()}}


def test_loss_equals_full_batch_on_every_rank(per_rank, single):
    for rank, got in enumerate(per_rank):
        assert_close(got["loss"], single["loss"], atol=1e-6, rtol=0, msg=f"rank {rank}")


def test_parameter_gradients_equal_full_batch(per_rank, single):
    for rank, got in enumerate(per_rank):
        assert got["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            assert grad.abs().sum() > 0, name
            assert_close(got["grads"][name], grad, atol=1e-6, rtol=1e-5,
                         msg=f"rank {rank}, {name}")


def test_negatives_on_other_ranks_send_gradient_back(per_rank, single):
    # Each rank's own rows get the full-batch gradient from every rank's copy of the loss
    # (W times it, before DDP's average): with a gather that cuts the graph they would get
    # only their own rank's share and the parameter gradients above would be wrong.
    for rank, got in enumerate(per_rank):
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        assert_close(got["image_emb_grad"], WORLD * single["image_emb_grad"][rows], atol=1e-6,
                     rtol=1e-5)
