"""GenerationEval: the W&B sample table (same ids each time, images, per-sample scores),
per-group metrics and its counters across a resume."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict
from PIL import Image

from vlmtrain.__main__ import register_recipes
from vlmtrain.callbacks.generation_eval import GenerationEval
from vlmtrain.callbacks.sample_table import SampleTable
from vlmtrain.errors import VLMTrainError
from vlmtrain.metrics.anls import ANLS
from vlmtrain.metrics.grouped import GroupedMetrics
from vlmtrain.metrics.squad import SquadMatch
from vlmtrain.metrics.vqa import VQAAccuracy
from vlmtrain.paths import config_dir
from vlmtrain.train import build_module


def _meta(ids, refs, groups=None, key="qtype"):
    return {"ids": ids, "prompts": [f"q{i}" for i in ids], "references": refs,
            "images": [Image.new("RGB", (4, 4)) for _ in ids],
            "sample_meta": [{key: g} for g in (groups or [None] * len(ids))]}


def test_sample_table_scores_a_hand_checked_row_and_keeps_its_ids():
    table = SampleTable(2)
    metrics = {"squad": SquadMatch(), "vqa": VQAAccuracy()}
    table.start()
    table.add(_meta(["a", "b", "c"], [["red"] * 10, ["two"] * 3 + ["2"] * 7, ["x"]]),
              ["the red one", "2", "x"], metrics)
    rows = table.finish()
    assert [r["id"] for r in rows] == ["a", "b"]
    # "the red one" -> SQuAD tokens [red, one] vs [red]: P = 1/2, R = 1, F1 = 2/3; not exact.
    # VQA: no annotator said "the red one" -> 0. "2": 7 of 10 annotators -> min(7/3, 1) = 1;
    # SQuAD exact against "2" -> 1.
    assert rows[0]["exact_match"] == 0.0 and rows[0]["f1"] == pytest.approx(2 / 3)
    assert rows[0]["vqa_accuracy"] == 0.0
    assert rows[1]["exact_match"] == 1.0 and rows[1]["vqa_accuracy"] == 1.0
    assert rows[0]["references"] == " | ".join(["red"] * 10)
    assert isinstance(rows[0]["image"], Image.Image)
    # the next evaluation sees the samples in another order: the table keeps a and b
    table.start()
    table.add(_meta(["c", "b"], [["x"], ["2"]]), ["x", "2"], metrics)
    table.add(_meta(["a"], [["red"]]), ["red"], metrics)
    assert [r["id"] for r in table.finish()] == ["a", "b"]
    # the picked ids survive a checkpoint
    restored = SampleTable(2)
    restored.load_state_dict(table.state_dict())
    assert restored.ids == ["a", "b"] and restored.frozen


def test_grouped_metrics_hand_worked():
    # exact match per question type: colour 1 of 2 right, shape 1 of 1, count 0 of 1
    grouped = GroupedMetrics({"squad": SquadMatch()}, "qtype")
    feed = lambda m, p, r, images, ids: m.update(p, r)  # noqa: E731
    grouped.update(_meta(["1", "2", "3"], [["red"], ["blue"], ["circle"]],
                         ["colour", "colour", "shape"]), ["red", "green", "circle"], feed)
    grouped.update(_meta(["4"], [["3"]], ["count"]), ["two"], feed)
    values = {k: float(v) for k, v in grouped.compute().items()}
    assert values == {"exact_match/colour": 0.5, "f1/colour": 0.5, "exact_match/count": 0.0,
                      "f1/count": 0.0, "exact_match/shape": 1.0, "f1/shape": 1.0}
    # DocVQA: a question with several types counts in each; "yes/no" must not nest in W&B
    docs = GroupedMetrics({"anls": ANLS()}, "question_types")
    docs.update(_meta(["1", "2"], [["abc"], ["7"]], [["form", "table/list"], ["form"]],
                      key="question_types"), ["abc", "8"], feed)
    assert {k: float(v) for k, v in docs.compute().items()} == {
        "anls/form": 0.5, "anls/table_list": 1.0}
    with pytest.raises(VLMTrainError, match="group_by='qtyp'.*samples have: qtype"):
        GroupedMetrics({"squad": SquadMatch()}, "qtyp").update(
            _meta(["1"], [["red"]], ["colour"]), ["red"], feed)


def _grouped_rank(rank: int, workdir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/pg", rank=rank, world_size=2)
    try:
        grouped = GroupedMetrics({"squad": SquadMatch()}, "qtype")
        feed = lambda m, p, r, images, ids: m.update(p, r)  # noqa: E731
        if rank == 0:  # colour: 1 of 2 right; rank 1 never sees a colour question
            grouped.update(_meta(["1", "2"], [["red"], ["blue"]], ["colour", "colour"]),
                           ["red", "green"], feed)
        else:  # size: right; shape: wrong (rank 0 never sees either)
            grouped.update(_meta(["3", "4"], [["large"], ["circle"]], ["size", "shape"]),
                           ["large", "square"], feed)
        values = {k: float(v) for k, v in grouped.compute().items() if k.startswith("exact")}
        Path(workdir, f"rank{rank}.json").write_text(json.dumps(values))
    finally:
        dist.destroy_process_group()


def test_grouped_metrics_under_ddp_cover_groups_only_one_rank_saw(tmp_path):
    import torch.multiprocessing as mp

    # fork: the ranks inherit the imported modules (spawning re-imports torch for 20-40 s)
    mp.start_processes(_grouped_rank, args=(str(tmp_path),), nprocs=2, start_method="fork")
    expected = {"exact_match/colour": 0.5, "exact_match/shape": 0.0, "exact_match/size": 1.0}
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected


def _cfg(*overrides: str):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[
            "+recipe=sft_vqa", "data.train.datasets.0.size=0", "data.train.datasets.1.size=0",
            "data.train.datasets.2.size=64", "data.val.size=12", "data.batch_size=4",
            "data.eval_batch_size=6", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    return cfg


def _parts(cfg):
    L.seed_everything(0)
    vlm = instantiate(cfg.model)
    data = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    return build_module(cfg, vlm, data), data


def test_two_evaluations_log_the_same_rows_with_images_and_groups(tmp_path, monkeypatch):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    # W&B stages a table's images as a run artifact under its data folder until synced
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    cfg = _cfg()
    module, data = _parts(cfg)
    # the recipe's callback config: per-question-type metrics by default
    evaluator = instantiate(cfg.callbacks.generation_eval, log_samples=4)
    assert evaluator.grouped is not None and evaluator.grouped.key == "qtype"
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="t")
    logged = []
    log_table = logger.log_table
    monkeypatch.setattr(logger, "log_table", lambda key, columns, data, step: (
        logged.append((key, columns, data)), log_table(key, columns=columns, data=data,
                                                        step=step)))
    trainer = L.Trainer(max_steps=2, val_check_interval=1, logger=logger,
                        enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[evaluator], num_sanity_val_steps=0, limit_val_batches=2)
    trainer.fit(module, datamodule=data)
    final = {k: float(v) for k, v in trainer.callback_metrics.items()}
    logger.experiment.finish()
    tables = sorted(Path(tmp_path).glob("wandb/offline-run-*/files/media/table/val/samples_*"),
                    key=lambda p: int(p.name.split("_")[1]))
    assert len(tables) == 2, tables
    loaded = [json.loads(t.read_text()) for t in tables]
    for table in loaded:
        assert table["columns"][:5] == ["id", "image", "prompt", "prediction", "references"]
        assert {"exact_match", "f1", "vqa_accuracy"} <= set(table["columns"])
    assert [r[0] for r in loaded[0]["data"]] == [r[0] for r in loaded[1]["data"]]
    assert len(loaded[0]["data"]) == 4
    # what reached W&B: an image per row, the sample's own image, written as a PNG file
    assert [key for key, _, _ in logged] == ["val/samples", "val/samples"]
    by_id = {data.val_set[i].id: data.val_set[i] for i in range(12)}
    for _, columns, rows in logged:
        for row in rows:
            image = row[columns.index("image")]
            assert isinstance(image, wandb.Image)
            assert image.image.tobytes() == by_id[row[0]].image.tobytes()
    pngs = [p for p in (tmp_path / "wandb_data").rglob("*") if p.is_file()
            and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(pngs) >= 4
    # the groups partition the 12 samples: their count-weighted mean is the overall value
    counts: dict[str, int] = {}
    for i in range(12):
        q = data.val_set[i].meta["qtype"]
        counts[q] = counts.get(q, 0) + 1
    assert {k.rsplit("/", 1)[1] for k in final if k.startswith("val/exact_match/")} == set(counts)
    weighted = sum(final[f"val/exact_match/{q}"] * n for q, n in counts.items()) / 12
    assert weighted == pytest.approx(final["val/exact_match"])


def test_counters_and_table_ids_continue_after_a_resume(tmp_path):
    cfg = _cfg()
    module, data = _parts(cfg)
    first = GenerationEval(instantiate(cfg.metrics), every_n_val=2, log_samples=3)
    kwargs = dict(val_check_interval=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=1,
                  default_root_dir=tmp_path)
    trainer = L.Trainer(max_steps=1, callbacks=[first], **kwargs)
    trainer.fit(module, datamodule=data)
    ckpt = tmp_path / "one.ckpt"
    trainer.save_checkpoint(ckpt)
    assert first._runs == 1 and len(first.table.ids) == 3 and first.last_step == 1

    # validation 2 of the resumed run is the second of every_n_val=2: no generation; the
    # third generates, and its table shows the samples the first one picked
    resumed = GenerationEval(instantiate(cfg.metrics), every_n_val=2, log_samples=3)
    trainer = L.Trainer(max_steps=2, callbacks=[resumed], **kwargs)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    assert resumed._runs == 2 and resumed.last_step is None
    assert resumed.table.ids == first.table.ids
    trainer.save_checkpoint(ckpt)
    again = GenerationEval(instantiate(cfg.metrics), every_n_val=2, log_samples=3)
    trainer = L.Trainer(max_steps=3, callbacks=[again], **kwargs)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    assert again._runs == 3 and again.last_step == 3
    assert [r["id"] for r in again.samples] == first.table.ids
    assert torch.is_tensor(trainer.callback_metrics["val/exact_match"])
