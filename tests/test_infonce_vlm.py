"""InfoNCE on a VLM: image-text batches, pooled embeddings, heads in the optimizer, retrieval
recall against torchmetrics-free brute force, and `+recipe=align_infonce` end to end."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from tests.conftest import run_vlmtrain
from vlmtrain.data.datamodule import VLMDataModule
from vlmtrain.data.image_text import ImageTextCollator
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.infonce import InfoNCELoss
from vlmtrain.metrics.retrieval import ImageTextRetrieval, caption_groups
from vlmtrain.models.embed import forward_embeddings


def _captions(n=4, split="train"):
    data = ShapesDataset("caption", split, size=n, image_size=48, seed=0)
    return [data[i] for i in range(n)]


def test_collator_encodes_images_and_captions_apart(tiny_vlm):
    samples = _captions(3)
    batch = ImageTextCollator(tiny_vlm.processor, tiny_vlm.family)(samples)
    assert set(batch) == {"inputs", "text", "meta"}
    assert set(batch["inputs"]) <= {"pixel_values", "image_grid_thw"}  # images only
    tok = tiny_vlm.processor.tokenizer
    ids, mask = batch["text"]["input_ids"], batch["text"]["attention_mask"]
    for i, s in enumerate(samples):
        row = ids[i][mask[i].bool()]
        assert tok.decode(row) == s.target  # the caption alone: no template, no special token
        assert mask[i][: len(row)].all() and not mask[i][len(row):].any()  # right-padded
    assert batch["meta"]["prompts"] == [s.target for s in samples]


def test_collator_refuses_preference_pairs(tiny_qwen):
    pair = ShapesDataset("preference", "train", size=1, image_size=48)[0]
    with pytest.raises(VLMTrainError, match="preference pair.*data=shapes_image_text"):
        ImageTextCollator(tiny_qwen.processor, tiny_qwen.family)([pair])
    skipping = ImageTextCollator(tiny_qwen.processor, tiny_qwen.family, on_bad_sample="skip")
    assert skipping([pair]) is None and skipping.skipped == 1


def test_pool_states_hand_worked():
    states = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]],
                           [[2.0, 4.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert_close(LF.pool_states(states, mask, "mean"), torch.tensor([[2.0, 1.0], [2.0, 4.0]]))
    assert_close(LF.pool_states(states, mask, "last"), torch.tensor([[3.0, 2.0], [2.0, 4.0]]))


def test_loss_is_clip_infonce_of_the_projected_embeddings(tiny_vlm):
    batch = ImageTextCollator(tiny_vlm.processor, tiny_vlm.family)(_captions(4))
    loss = InfoNCELoss(dim=16)
    loss.bind(tiny_vlm)
    with torch.no_grad():
        emb = forward_embeddings(tiny_vlm.model, batch)
        out = loss(emb, batch)
    hidden = tiny_vlm.model.config.text_config.hidden_size
    assert emb.image.shape == (4, hidden) and emb.text_states.shape[:2] == (4, batch[
        "text"]["input_ids"].shape[1])
    # by hand: mean of real caption states, the two heads, CLIP's loss at scale 1 / 0.07
    mask = batch["text"]["attention_mask"].unsqueeze(-1).float()
    text = (emb.text_states * mask).sum(1) / mask.sum(1)
    image_z, text_z = emb.image @ loss.image_head.weight.T, text @ loss.text_head.weight.T
    sim = torch.nn.functional.normalize(image_z, dim=-1) @ torch.nn.functional.normalize(
        text_z, dim=-1).T / 0.07
    target = torch.arange(4)
    expected = (torch.nn.functional.cross_entropy(sim, target)
                + torch.nn.functional.cross_entropy(sim.T, target)) / 2
    assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    assert_close(out.logs["logit_scale"], torch.tensor(1 / 0.07))


def test_text_side_sees_only_the_caption(tiny_qwen):
    """Padding a caption further must not change its embedding (mask honoured, no image)."""
    collate = ImageTextCollator(tiny_qwen.processor, tiny_qwen.family)
    short, long = _captions(2)
    alone = collate([short])
    padded = collate([short, long]) if len(long.target) > len(short.target) else collate(
        [long, short])
    row = 0 if padded["meta"]["prompts"][0] == short.target else 1
    with torch.no_grad():
        a = forward_embeddings(tiny_qwen.model, alone)
        b = forward_embeddings(tiny_qwen.model, padded)
    for how in ("mean", "last"):
        assert_close(LF.pool_states(a.text_states, a.text_mask, how)[0],
                     LF.pool_states(b.text_states, b.text_mask, how)[row], atol=1e-5, rtol=1e-5)
    assert_close(a.image[0], b.image[row], atol=1e-5, rtol=1e-5)


def _brute_force_recall(images, texts, groups, k):
    images = torch.nn.functional.normalize(images, dim=-1)
    texts = torch.nn.functional.normalize(texts, dim=-1)
    sim = images @ texts.T
    i2t = [any(groups[j] == groups[q] for j in sim[q].topk(k).indices) for q in range(len(sim))]
    t2i = [any(groups[j] == groups[q] for j in sim[:, q].topk(k).indices)
           for q in range(len(sim))]
    return sum(i2t) / len(i2t), sum(t2i) / len(t2i)


def test_retrieval_recall_hand_worked_and_brute_force():
    # 3 pairs; images are axes; text 1 is closest to image 0, so image 0 misses at K=1
    images = torch.eye(3)
    texts = torch.tensor([[0.6, 0.8, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    m = ImageTextRetrieval(ks=(1, 2))
    m.update(images[:2], texts[:2], torch.tensor([0, 1]))  # two batches: ranked over all 3
    m.update(images[2:], texts[2:], torch.tensor([2]))
    got = {k: float(v) for k, v in m.compute().items()}
    # image 0 -> text 1 (0.9) miss; image 1 -> text 0 (0.8) miss; image 2 -> text 2 hit
    # text 0 -> image 1 (0.8) miss; text 1 -> image 0 (0.9) miss; text 2 -> image 2 hit
    assert got == pytest.approx({"i2t_recall_at_1": 1 / 3, "t2i_recall_at_1": 1 / 3,
                                 "i2t_recall_at_2": 1.0, "t2i_recall_at_2": 1.0})
    # equal captions are one group: a tie between them is a hit
    m = ImageTextRetrieval(ks=(1,))
    m.update(images[:2], texts[:2], caption_groups(["A red circle", "a  red circle"]))
    assert float(m.compute()["i2t_recall_at_1"]) == 1.0
    gen = torch.Generator().manual_seed(0)
    images, texts = torch.randn(40, 8, generator=gen), torch.randn(40, 8, generator=gen)
    groups = torch.randint(0, 30, (40,), generator=gen)
    m = ImageTextRetrieval(ks=(1, 5))
    m.update(images, texts, groups)
    got = m.compute()
    for k in (1, 5):
        i2t, t2i = _brute_force_recall(images, texts, groups, k)
        assert float(got[f"i2t_recall_at_{k}"]) == pytest.approx(i2t)
        assert float(got[f"t2i_recall_at_{k}"]) == pytest.approx(t2i)


def test_heads_and_temperature_join_the_optimizer_and_the_checkpoint(tiny_qwen):
    from vlmtrain.module import VLMModule

    vlm = copy.copy(tiny_qwen)
    vlm.model = copy.deepcopy(tiny_qwen.model)
    from vlmtrain.models.hf import _freeze

    _freeze(vlm.model, vlm.family, vision=True, projector=False, language=True)
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trainable and all("visual.merger" in n for n in trainable)  # projector only
    module = VLMModule(vlm, InfoNCELoss(dim=8), optimizer=torch.optim.AdamW)
    groups = {g["name"]: g for g in module._param_groups()}
    assert set(groups) == {"projector", "loss", "loss_no_decay"}
    assert groups["loss_no_decay"]["weight_decay"] == 0.0
    assert groups["loss_no_decay"]["params"] == [module.loss_fn.logit_scale]
    assert {"loss_fn.image_head.weight", "loss_fn.text_head.weight",
            "loss_fn.logit_scale"} <= set(module.state_dict())


def test_contrastive_loss_needs_image_text_batches(tiny_qwen):
    vqa = ShapesDataset("vqa", "train", size=4, image_size=48)
    dm = VLMDataModule(vqa, None, processor=tiny_qwen.processor, family=tiny_qwen.family)
    with pytest.raises(VLMTrainError, match="_target_=vlmtrain.data.image_text.ImageTextCollator"):
        dm.check_fits(InfoNCELoss.needs, "InfoNCELoss")
    with pytest.raises(VLMTrainError, match="loss.pool='cls'"):
        InfoNCELoss(pool="cls")


def test_infonce_on_vqa_data_fails_at_start_up_in_one_line(tmp_path):
    result = run_vlmtrain("loss=infonce", "trainer=fast_dev_run", "logger=csv",
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if "ImageTextCollator" in line]
    assert len(error) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]


def _column(run_dir, key):
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.slow
def test_align_recipe_trains_projector_and_heads_only(tmp_path):
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    steps = 80
    result = run_vlmtrain("+recipe=align_infonce", f"hydra.run.dir={tmp_path}", "logger=csv",
                          f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps // 2}",
                          "trainer.log_every_n_steps=1", "data.val.size=128", "threads=1")
    assert result.returncode == 0, result.stderr[-3000:]
    before = load_file(f"{build_tiny_qwen2_5_vl(image_size=48)}/model.safetensors")
    after = load_file(tmp_path / "hf_model" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.merger") for k in changed), changed
    # both validations logged recall; the second (after 80 steps) retrieves better than the
    # first (40 steps) and far above chance (1/128 at K=1, 5/128 at K=5)
    val_loss = _column(tmp_path, "val/loss")
    r5 = [(a + b) / 2 for a, b in zip(_column(tmp_path, "val/i2t_recall_at_5"),
                                       _column(tmp_path, "val/t2i_recall_at_5"))]
    assert len(val_loss) == len(r5) == 2
    assert val_loss[1] < val_loss[0] < math.log(128)
    assert r5[1] > r5[0] and r5[1] > 3 * 5 / 128, r5


def test_batch_transfer_moves_tensors_and_leaves_meta_alone(tiny_qwen):
    data = ShapesDataset("caption", "train", size=2, image_size=48)
    dm = VLMDataModule(data, None, processor=tiny_qwen.processor, family=tiny_qwen.family,
                       collator=ImageTextCollator)
    batch = dm.train_collator(_captions(2))
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["meta"] is batch["meta"]  # strings and PIL images: not walked, not copied
    assert moved["text"]["input_ids"].device.type == "meta"
    assert all(v.device.type == "meta" for v in moved["inputs"].values())
    assert dm.transfer_batch_to_device(None, torch.device("cpu"), 0) is None
