"""InfoNCE (CLIP's symmetric contrastive loss) against a hand-worked 3x3 example, open_clip's
``ClipLoss`` formula and Hugging Face ``CLIPModel``'s own loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vlmtrain.losses.functional import CLIP_INIT_LOGIT_SCALE, info_nce

# Images are the unit axes, so the similarity of image i and text j is text j's i-th coordinate.
IMAGES = torch.eye(3)
TEXTS = torch.tensor([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]])
# S[i, j] = cos(image i, text j) = TEXTS[j, i]:
#   [[0.6, 0.0, 0.0],
#    [0.8, 1.0, 0.6],
#    [0.0, 0.0, 0.8]]
SCALE = 10.0  # exp(logit_scale)


def _hand_worked(extra_column: list[float] | None = None) -> float:
    """Row b's CE is log(sum_j exp(s * S[b, j])) - s * S[b, b] = log(1 + sum_{j!=b} exp(s * (S[b, j] -
    S[b, b]))). With s = 10 every term is exp of an integer."""
    image_to_text = [
        math.log(1 + math.exp(-6) + math.exp(-6)),  # row 0: 0.6 | 0.0, 0.0
        math.log(1 + math.exp(-2) + math.exp(-4)),  # row 1: 1.0 | 0.8, 0.6
        math.log(1 + math.exp(-8) + math.exp(-8)),  # row 2: 0.8 | 0.0, 0.0
    ]
    if extra_column is not None:  # one more negative per row: exp(s * (extra[b] - S[b, b]))
        positives = (0.6, 1.0, 0.8)
        image_to_text = [
            math.log(math.exp(v) + math.exp(SCALE * (extra_column[b] - positives[b])))
            for b, v in enumerate(image_to_text)
        ]
    text_to_image = [  # rows of S transposed
        math.log(1 + math.exp(2) + math.exp(-6)),  # text 0: 0.6 | 0.8, 0.0
        math.log(1 + math.exp(-10) + math.exp(-10)),  # text 1: 1.0 | 0.0, 0.0
        math.log(1 + math.exp(-2) + math.exp(-8)),  # text 2: 0.8 | 0.6, 0.0
    ]
    return (sum(image_to_text) / 3 + sum(text_to_image) / 3) / 2


def test_hand_worked_3x3():
    expected = _hand_worked()
    # (0.0049 + 0.1429 + 0.0007) / 3 image->text, (2.1272 + 0.0001 + 0.1272) / 3 text->image
    assert abs(expected - 0.40051) < 1e-5
    loss = info_nce(IMAGES, TEXTS, torch.tensor(math.log(SCALE)))
    assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)


def test_embeddings_are_normalised_inside():
    loss = info_nce(3.0 * IMAGES, 0.5 * TEXTS, torch.tensor(math.log(SCALE)))
    assert_close(loss, torch.tensor(_hand_worked()), atol=1e-6, rtol=0)


def test_hard_negative_is_an_image_to_text_column_only():
    # One hard negative for the batch: text (1, 0, 0), similarity 1.0 / 0.0 / 0.0 to the images.
    extra = torch.tensor([[1.0, 0.0, 0.0]])
    loss = info_nce(IMAGES, TEXTS, torch.tensor(math.log(SCALE)), extra_text_emb=extra)
    assert_close(loss, torch.tensor(_hand_worked([1.0, 0.0, 0.0])), atol=1e-6, rtol=0)


def _open_clip_loss(image_features, text_features, logit_scale):
    """open_clip ``ClipLoss.forward``, single process (mlfoundations/open_clip,
    src/open_clip/loss.py at 00aa464c): features already normalised, logit_scale exponentiated."""
    logits_per_image = logit_scale * image_features @ text_features.T
    logits_per_text = logit_scale * text_features @ image_features.T
    labels = torch.arange(logits_per_image.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def test_equals_open_clip_on_random_embeddings():
    gen = torch.Generator().manual_seed(0)
    image, text = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    log_scale = torch.tensor(CLIP_INIT_LOGIT_SCALE)
    expected = _open_clip_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1),
                               log_scale.exp())
    assert_close(info_nce(image, text, log_scale), expected, atol=1e-6, rtol=0)


def test_equals_hugging_face_clip_model_loss():
    from transformers import CLIPConfig, CLIPModel

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2}
    config = CLIPConfig(text_config=dict(small, vocab_size=20, max_position_embeddings=8,
                                         bos_token_id=18, eos_token_id=19,
                                         pad_token_id=19),
                        vision_config=dict(small, image_size=16, patch_size=8), projection_dim=8)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    # HF stores log(1 / 0.07) rounded to 2.6592
    assert_close(model.logit_scale.detach(), torch.tensor(CLIP_INIT_LOGIT_SCALE), atol=1e-4, rtol=0)
    ids = torch.randint(0, 18, (4, 6))  # eos (19) last: the pooled position
    ids[:, -1] = 19
    out = model(input_ids=ids, pixel_values=torch.randn(4, 3, 16, 16), return_loss=True)
    ours = info_nce(out.image_embeds, out.text_embeds, model.logit_scale)
    assert_close(ours, out.loss, atol=1e-6, rtol=0)


def test_logit_scale_is_clamped_at_100():
    capped = info_nce(IMAGES, TEXTS, torch.tensor(math.log(100.0)))
    beyond = torch.tensor(math.log(1000.0), requires_grad=True)
    loss = info_nce(IMAGES, TEXTS, beyond)
    assert_close(loss, capped)
    loss.backward()
    assert beyond.grad == 0  # past the cap the temperature stops moving


def test_gradient_reaches_both_towers_and_the_temperature():
    image = torch.randn(4, 8, requires_grad=True)
    text = torch.randn(4, 8, requires_grad=True)
    log_scale = torch.tensor(CLIP_INIT_LOGIT_SCALE, requires_grad=True)
    info_nce(image, text, log_scale).backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0 and log_scale.grad != 0


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="image_emb and text_emb"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))
    with pytest.raises(ValueError, match="extra_text_emb"):
        info_nce(torch.zeros(3, 4), torch.zeros(3, 4), torch.tensor(1.0), torch.zeros(3, 5))
