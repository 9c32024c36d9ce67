"""CLIPScore / RefCLIPScore against the formulas of Hessel et al. (2021) written out with numpy as
the reference code (github.com/jmhessel/clipscore) computes them, on a tiny randomly initialised
CLIP saved to disk and loaded back by path (the hub is not needed)."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmtrain.metrics.clipscore import CLIPScore
from vlmtrain.metrics.functional.clipscore import (
    clip_score,
    clipscore_from_features,
    refclipscore_from_features,
)

DATA = Path(__file__).parent / "data" / "clip_flickr8k_captions.jsonl"
PREFIX = "A photo depicts "


def _tiny_clip(folder: Path) -> str:
    """A 2-layer CLIP with a character-level BPE tokenizer and a 32x32 image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,'-")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("t", "h"), ("th", "e</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    torch.set_num_threads(1)
    return _tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def samples():
    """8 Flickr8k samples: candidate = caption 0, references = captions 1-4, with images of
    several sizes and kinds (PIL RGB / grey, uint8 tensor, float tensor)."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:8]]
    rng = np.random.default_rng(0)
    sizes = [(40, 32), (32, 57), (64, 64), (33, 45), (50, 31), (32, 32), (70, 41), (36, 36)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images[1] = images[1].convert("L")
    images[2] = torch.from_numpy(np.array(images[2])).permute(2, 0, 1).contiguous()  # uint8
    images[3] = torch.from_numpy(np.array(images[3])).permute(2, 0, 1).float() / 255
    return images, [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]


def _as_pil(image):
    if isinstance(image, torch.Tensor):
        if image.is_floating_point():
            image = (image * 255).round()
        return Image.fromarray(image.to(torch.uint8).permute(1, 2, 0).numpy())
    return image


def _reference(clip_path: str, images, predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample CLIP-S and RefCLIP-S, the way the reference code computes them (numpy)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(clip_path).eval()
    proc = CLIPProcessor.from_pretrained(clip_path)
    with torch.no_grad():
        pixels = proc(images=[_as_pil(im) for im in images], return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=pixels).pooler_output.numpy()

        def text(texts):  # every text gets the prefix (CLIPCapDataset), candidates and references
            tok = proc.tokenizer([PREFIX + t for t in texts], padding=True, truncation=True,
                                 max_length=77, return_tensors="pt")
            return model.get_text_features(**tok).pooler_output.numpy()

        cand, refs = text(predictions), [text(r) for r in references]
    norm = lambda x: x / np.sqrt(np.sum(x**2, axis=1, keepdims=True))  # noqa: E731
    img, cand = norm(img), norm(cand)
    clip_s = 2.5 * np.clip(np.sum(img * cand, axis=1), 0, None)
    ref_s = np.array([np.max(c.dot(norm(r).T)) for c, r in zip(cand, refs)])
    return clip_s, 2 * clip_s * ref_s / (clip_s + ref_s)


def test_hand_worked_formula():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    cand = torch.tensor([[0.6, 0.8], [-1.0, 0.0]])  # cos = 0.6 and -1
    refs = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    clip_s = clipscore_from_features(image, cand)
    torch.testing.assert_close(clip_s, torch.tensor([1.5, 0.0]))  # 2.5 * 0.6; clipped at 0
    # sample 0: refs cos 0.96 and 0.8 -> 0.96; H-mean(1.5, 0.96) = 2.88 / 2.46.
    # sample 1: refs cos 1 and -1 -> 1, but CLIP-S is 0 -> H-mean 0.
    ref_s = refclipscore_from_features(clip_s, cand, refs, [2, 2])
    torch.testing.assert_close(ref_s, torch.tensor([2.88 / 2.46, 0.0]))
    # the text side is clipped at 0 (paper) and 0/0 gives 0, not NaN
    ref_neg = refclipscore_from_features(torch.tensor([0.0]), cand[1:], refs[3:], [1])
    assert ref_neg.tolist() == [0.0]


def test_equals_reference_computation(clip_path, samples):
    images, predictions, references = samples
    clip_s, ref_s = _reference(clip_path, images, predictions, references)
    got = clip_score(images, predictions, references, model_name_or_path=clip_path,
                     device="cpu", batch_size=3)
    assert got.keys() == {"clipscore", "refclipscore"}
    assert abs(got["clipscore"] - clip_s.mean()) < 1e-6
    assert abs(got["refclipscore"] - ref_s.mean()) < 1e-6
    assert got["clipscore"] > 0  # the random model does not give a degenerate all-zero case
    assert clip_score(images, predictions, model_name_or_path=clip_path, device="cpu").keys() == {
        "clipscore"}


def test_metric_in_batches_equals_functional(clip_path, samples):
    images, predictions, references = samples
    expected = clip_score(images, predictions, references, model_name_or_path=clip_path,
                          device="cpu")
    metric = CLIPScore(model_name_or_path=clip_path)
    for s in (slice(0, 3), slice(3, 8)):
        metric.update(predictions[s], references[s], images=images[s])
    got = metric.compute()
    for key, value in expected.items():
        assert abs(float(got[key]) - value) < 1e-6
    metric.reset()
    metric.update(predictions[:2], images=images[:2])
    assert metric.compute().keys() == {"clipscore"}


def test_references_and_images_are_encoded_once_across_evaluations(clip_path, samples,
                                                                  monkeypatch):
    """A validation split's references and images come back at every evaluation: the metric
    encodes them once and later evaluations encode only the new candidates, with the same
    values."""
    import vlmtrain.metrics.functional.clipscore as F

    images, predictions, references = samples
    expected = clip_score(images, predictions, references, model_name_or_path=clip_path,
                          device="cpu")
    encoded: list[str] = []
    text_features, image_features = F.clip_text_features, F.clip_image_features
    monkeypatch.setattr(F, "clip_text_features", lambda m, p, texts, *a: (
        encoded.extend(texts), text_features(m, p, texts, *a))[1])
    seen_images: list = []
    monkeypatch.setattr(F, "clip_image_features", lambda m, p, ims, *a: (
        seen_images.extend(ims) if not a[1:] or a[1] is None else None,
        image_features(m, p, ims, *a))[1])
    metric = CLIPScore(model_name_or_path=clip_path)
    for _ in range(2):  # two evaluations of the same split
        metric.reset()
        encoded.clear()
        seen_images.clear()
        metric.update(predictions, references, images=images)
        got = metric.compute()
        for key, value in expected.items():
            assert abs(float(got[key]) - value) < 1e-6
    assert encoded == list(predictions)  # the second time: candidates only
    assert seen_images == []  # and no image


def test_errors(clip_path, samples):
    images, predictions, references = samples
    with pytest.raises(ValueError, match="2 images but 3 predictions"):
        clip_score(images[:2], predictions[:3], model_name_or_path=clip_path)
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        clip_score(images[:2], predictions[:2], [["a"], []], model_name_or_path=clip_path)
    with pytest.raises(ValueError, match="must lie in"):
        clip_score([torch.full((3, 8, 8), 2.0)], ["a dog"], model_name_or_path=clip_path)
    metric = CLIPScore(model_name_or_path=clip_path)
    with pytest.raises(ValueError, match="images="):
        metric.update(predictions[:1], references[:1])
    metric.update(predictions[:1], references[:1], images=images[:1])
    metric.update(predictions[1:2], images=images[1:2])
    with pytest.raises(ValueError, match="for every batch"):
        metric.compute()


def _ddp_worker(rank: int, world: int, init_file: str, clip_path: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:5]]
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)) for _ in rows]
    idx = [i for i in range(len(rows)) if i % world == rank]  # uneven shards: 3 and 2 samples
    metric = CLIPScore(model_name_or_path=clip_path)
    metric.update([rows[i]["captions"][0] for i in idx], [rows[i]["captions"][1:] for i in idx],
                  images=[images[i] for i in idx])
    got = {k: float(v) for k, v in metric.compute().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(got))
    dist.destroy_process_group()


def test_ddp_two_ranks(clip_path, tmp_path):
    # fork: the ranks inherit the imported modules instead of importing torch again (~20 s each)
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), clip_path, str(tmp_path)), nprocs=2,
        start_method="fork")
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:5]]
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)) for _ in rows]
    predictions, references = [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]
    expected = clip_score(images, predictions, references, model_name_or_path=clip_path,
                          device="cpu")
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key in expected:
            assert abs(got[key] - expected[key]) < 1e-6, (rank, key)


def test_functional_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, vlmtrain.metrics.functional.clipscore, "
            "vlmtrain.metrics.functional.bertscore, vlmtrain.metrics.functional.spice; "
            "print(sorted(m for m in ('torch', 'transformers', 'bert_score') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert out.stdout.strip() == "[]"


def test_several_images_per_sample_are_refused(clip_path, samples):
    images, predictions, _ = samples
    one = clip_score(images[:2], predictions[:2], model_name_or_path=clip_path, device="cpu")
    wrapped = clip_score([(images[0],), images[1]], predictions[:2], model_name_or_path=clip_path,
                         device="cpu")
    assert wrapped == one  # a one-item tuple is its image
    metric = CLIPScore(model_name_or_path=clip_path)
    with pytest.raises(ValueError, match=r"clipscore: sample q7 holds 2 images, but CLIPScore "
                                         "scores one caption against one image"):
        metric.update(predictions[:2], images=[images[0], (images[0], images[1])],
                      ids=["q6", "q7"])
    metric.update(predictions[:2], images=images[:2])  # the refused batch left no score behind
    assert abs(float(metric.compute()["clipscore"]) - one["clipscore"]) < 1e-6
    with pytest.raises(ValueError, match=r"images\[0\] holds 2 images"):  # before CLIP loads
        clip_score([tuple(images[:2])], predictions[:1], model_name_or_path="/no/such/clip")
