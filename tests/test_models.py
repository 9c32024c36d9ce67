"""Tiny twins: real architectures, forward/backward/generate, save -> from_pretrained, LoRA."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlmtrain.data.collate import VLMCollator
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.models.families import PaliGemma, Qwen2_5_VL
from vlmtrain.models.hf import load_vlm
from vlmtrain.models.tiny import build_tiny_paligemma, build_tiny_qwen2_5_vl, sincos_2d


def _batch(vlm, n=4, generation=False):
    data = ShapesDataset("vqa", "train", size=n, image_size=48)
    return VLMCollator(vlm.processor, vlm.family, 128, with_generation=generation)(
        [data[i] for i in range(n)]
    )


def _model_inputs(batch):
    return batch["inputs"]


def test_architectures_are_the_real_ones(tiny_qwen, tiny_paligemma):
    assert type(tiny_qwen.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(tiny_paligemma.model).__name__ == "PaliGemmaForConditionalGeneration"
    for vlm in (tiny_qwen, tiny_paligemma):
        n = sum(p.numel() for p in vlm.model.parameters())
        assert 100_000 < n < 3_000_000, n


def test_forward_backward_generate(tiny_vlm):
    model = tiny_vlm.model
    batch = _batch(tiny_vlm, generation=True)
    out = model(**_model_inputs(batch))
    assert out.logits.shape[:2] == batch["inputs"]["input_ids"].shape
    out.logits.float().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)
    gen = model.generate(**batch["gen"], max_new_tokens=3, do_sample=False)
    assert gen.shape[0] == 4 and 1 <= gen.shape[1] - batch["gen"]["input_ids"].shape[1] <= 3


def test_builds_are_deterministic_and_cached(tmp_path):
    a = build_tiny_qwen2_5_vl(image_size=48, cache_dir=str(tmp_path / "a"))
    b = build_tiny_qwen2_5_vl(image_size=48, cache_dir=str(tmp_path / "b"))
    assert build_tiny_qwen2_5_vl(image_size=48, cache_dir=str(tmp_path / "a")) == a
    va = load_vlm(a, Qwen2_5_VL()).model.state_dict()
    vb = load_vlm(b, Qwen2_5_VL()).model.state_dict()
    assert va.keys() == vb.keys()
    assert all(torch.equal(va[k], vb[k]) for k in va)


def test_save_pretrained_from_pretrained_round_trip(tiny_vlm, tmp_path):
    tiny_vlm.model.save_pretrained(tmp_path)
    tiny_vlm.processor.save_pretrained(tmp_path)
    family = Qwen2_5_VL() if isinstance(tiny_vlm.family, Qwen2_5_VL) else PaliGemma()
    again = load_vlm(str(tmp_path), family)
    batch = _batch(tiny_vlm)
    again_batch = _batch(again)
    assert torch.equal(batch["inputs"]["input_ids"], again_batch["inputs"]["input_ids"])
    tiny_vlm.model.eval(), again.model.eval()
    with torch.no_grad():
        a = tiny_vlm.model(**_model_inputs(batch)).logits
        b = again.model(**_model_inputs(again_batch)).logits
    tiny_vlm.model.train()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("tie", [False, True])
def test_tiny_paligemma_embedding_tying_survives_from_pretrained(tie):
    # The twin unties its embeddings by default (see build_tiny_paligemma); tied stays available
    # and both load back through from_pretrained as saved.
    vlm = load_vlm(build_tiny_paligemma(image_size=48, tie_word_embeddings=tie), PaliGemma())
    out, inp = vlm.model.get_output_embeddings().weight, vlm.model.get_input_embeddings().weight
    assert (out.data_ptr() == inp.data_ptr()) is tie
    assert vlm.model.config.tie_word_embeddings is tie


def test_lora_trains_only_adapters_on_language_model(tmp_path):
    path = build_tiny_paligemma(image_size=48)
    vlm = load_vlm(path, PaliGemma(), lora={"r": 4, "alpha": 8, "dropout": 0.0})
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all("language_model" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)


def test_freeze_vision_and_projector():
    vlm = load_vlm(build_tiny_qwen2_5_vl(image_size=48), Qwen2_5_VL(), freeze_vision=True)
    for name, p in vlm.model.named_parameters():
        if "visual.blocks" in name or "visual.patch_embed" in name:
            assert not p.requires_grad, name
        if "visual.merger" in name or "language_model" in name:
            assert p.requires_grad, name
    both = load_vlm(build_tiny_qwen2_5_vl(image_size=48), Qwen2_5_VL(), freeze_vision=True,
                    freeze_projector=True)
    assert not any(p.requires_grad for n, p in both.model.named_parameters() if "visual" in n)


def test_logits_only_at_supervised_positions_match_full_logits(tiny_vlm):
    from vlmtrain.losses.functional import masked_cross_entropy, supervised_positions

    batch = _batch(tiny_vlm, n=6)
    inputs = _model_inputs(batch)
    tiny_vlm.model.eval()
    with torch.no_grad():
        full = tiny_vlm.model(**inputs).logits
        positions, targets = supervised_positions(batch["labels"])
        kept = tiny_vlm.model(**inputs, logits_to_keep=positions).logits
    tiny_vlm.model.train()
    reference = torch.nn.functional.cross_entropy(
        full[:, :-1].reshape(-1, full.shape[-1]), batch["labels"][:, 1:].reshape(-1))
    torch.testing.assert_close(masked_cross_entropy(kept, targets)[0], reference)


def test_sincos_position_table_shares_rows_and_columns():
    # Every cell of a column has the same column half (so "left" is one direction for all rows),
    # and the 9 cells of a 3x3 grid get 9 different vectors.
    table = sincos_2d(3, 128)
    assert table.shape == (9, 128)
    grid = table.reshape(3, 3, 128)
    assert torch.equal(grid[0, :, 64:], grid[2, :, 64:])  # column half: same in every row
    assert torch.equal(grid[:, 0, :64], grid[:, 1, :64])  # row half: same in every column
    assert torch.cdist(table, table).add(torch.eye(9)).min() > 0.1


def test_tiny_paligemma_sincos_position_init_survives_from_pretrained():
    vlm = load_vlm(build_tiny_paligemma(image_size=48, position_init="sincos"), PaliGemma())
    table = vlm.model.model.vision_tower.embeddings.position_embedding.weight
    assert torch.equal(table.detach(), sincos_2d(3, table.shape[1]))
    with pytest.raises(ValueError, match="position_init"):
        build_tiny_paligemma(image_size=48, position_init="learned")


def test_tiny_paligemma_pixel_statistics_position_scale_and_mlp_width_survive_from_pretrained(
        tmp_path):
    # The shapes scenes are ~94% background: normalised with the data's own statistics an empty
    # cell is ~0 and a shape is what stands out; the checkpoint's processor must carry that.
    path = build_tiny_paligemma(image_size=48, position_init="sincos", position_scale=4.0,
                                image_mean=[0.94] * 3, image_std=[0.15] * 3,
                                vision_mlp_ratio=4, cache_dir=str(tmp_path))
    vlm = load_vlm(path, PaliGemma())
    assert vlm.model.config.vision_config.intermediate_size == 4 * 128
    processor = vlm.processor.image_processor
    assert list(processor.image_mean) == [0.94] * 3 and list(processor.image_std) == [0.15] * 3
    background = Image.new("RGB", (48, 48), (240, 240, 240))  # 240 / 255 = 0.941
    red = Image.new("RGB", (48, 48), (215, 30, 30))
    assert processor(background, return_tensors="pt")["pixel_values"].abs().max() < 0.01
    assert processor(red, return_tensors="pt")["pixel_values"][0, 1].mean() < -5
    table = vlm.model.model.vision_tower.embeddings.position_embedding.weight
    assert torch.allclose(table.detach(), 4.0 * sincos_2d(3, table.shape[1]))
    with pytest.raises(ValueError, match="image_mean and image_std need 3 values"):
        build_tiny_paligemma(image_size=48, image_std=[0.15, 0.0, 0.15], cache_dir=str(tmp_path))


def test_tiny_builders_reject_an_image_size_the_patches_do_not_divide(tmp_path):
    # 48 px with 32 px patches would leave one token and half the image unseen; say so instead.
    with pytest.raises(ValueError, match=r"image_size=48 is not a multiple of patch_size=32"):
        build_tiny_paligemma(image_size=48, patch_size=32, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"multiple of patch_size x merge_size=32"):
        build_tiny_qwen2_5_vl(image_size=48, patch_size=16, cache_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing half-built is left in the cache
