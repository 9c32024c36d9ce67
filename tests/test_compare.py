"""vlmtrain.compare on run folders: differing keys, final/best metrics, filters, plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from vlmtrain.callbacks.run_record import write_json_atomic
from vlmtrain.tracking.compare import (
    differing_keys,
    find_run_dirs,
    label,
    load_offline,
    main,
    read_csv_history,
    table_rows,
)
from vlmtrain.tracking.plots import ema


def _run(folder: Path, lr: float, rows: list[dict], record: dict | None = None,
         version: int = 0, seed: int = 0) -> Path:
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\nrun_name: sft_vqa\nckpt_path: null\n"
        f"optim:\n  optimizer:\n    lr: {lr}\n    betas: [0.9, 0.98]\n"
        f"data:\n  train:\n    seed: ${{seed}}\n"
        f"logger:\n  wandb:\n    name: ${{run_name}}\n")
    csv_dir = folder / "csv" / f"version_{version}"
    csv_dir.mkdir(parents=True)
    keys = ["epoch", "step", "train/loss", "val/exact_match"]
    with open(csv_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    if record is not None:
        write_json_atomic(folder / "run.json", record)
    return folder


def _rows(losses, exact=None):
    rows = [{"epoch": 0, "step": s, "train/loss": v} for s, v in losses]
    rows += [{"epoch": 0, "step": s, "val/exact_match": v} for s, v in exact or []]
    return rows


@pytest.fixture
def sweep(tmp_path) -> Path:
    record = {"status": "finished", "recipe": "sft_vqa",
              "objective": {"name": "val/exact_match", "mode": "max"},
              "metrics": {"final": {"val/exact_match": {"value": 0.4, "step": 20}},
                          "best": {"val/exact_match": {"value": 0.5, "step": 10}}}}
    _run(tmp_path / "sweep" / "0", 1e-3, _rows([(0, 3.0), (9, 2.0), (19, 1.5)],
                                               [(9, 0.5), (19, 0.4)]), record)
    _run(tmp_path / "sweep" / "1", 5e-4, _rows([(0, 3.0), (9, 2.5), (19, 2.0)],
                                               [(9, 0.2), (19, 0.3)]),
         {"status": "interrupted", "recipe": "sft_vqa"})
    return tmp_path / "sweep"


def test_differing_keys_and_labels_come_from_the_unresolved_config(sweep):
    runs = [load_offline(p) for p in find_run_dirs(sweep)]
    assert [Path(r.source).name for r in runs] == ["0", "1"]
    # `data.train.seed: ${seed}` and the logger's name are the same text in both runs
    assert differing_keys(runs) == ["optim.optimizer.lr"]
    assert [label(r, ["optim.optimizer.lr"]) for r in runs] == [
        "optim.optimizer.lr=0.001", "optim.optimizer.lr=0.0005"]


def test_final_and_best_from_record_or_curve(sweep):
    runs = [load_offline(p) for p in find_run_dirs(sweep)]
    header, rows = table_rows(runs, ["optim.optimizer.lr"], ["val/exact_match", "train/loss"])
    assert header == ["run", "status", "optim.optimizer.lr", "val/exact_match final",
                      "val/exact_match best", "train/loss final", "train/loss best"]
    # run 0: from run.json; run 1: from its CSV curve (max for accuracy, min for a loss)
    assert rows[0][1:] == ["finished", "0.001", "0.4000 @20", "0.5000 @10", "1.5000 @19",
                           "1.5000 @19"]
    assert rows[1][1:] == ["interrupted", "0.0005", "0.3000 @19", "0.3000 @19", "2.0000 @19",
                           "2.0000 @19"]


def test_resumed_run_merges_csv_versions_and_applies_resume_overrides(tmp_path):
    run = _run(tmp_path / "run", 1e-3, _rows([(0, 3.0), (1, 2.9), (2, 2.8), (3, 2.7)]),
               {"status": "finished", "resumes": [{"overrides": ["trainer.max_steps=50"]}]})
    # killed after logging step 3; resumed from the checkpoint after step 1
    csv_dir = run / "csv" / "version_1"
    csv_dir.mkdir()
    (csv_dir / "metrics.csv").write_text("epoch,step,train/loss\n0,2,2.5\n0,3,2.4\n0,4,2.3\n")
    assert read_csv_history(run)["train/loss"] == [(0, 3.0), (1, 2.9), (2, 2.5), (3, 2.4),
                                                  (4, 2.3)]
    assert load_offline(run).config["trainer.max_steps"] == 50


def test_ema_matches_tensorboard_debiased_smoothing():
    # hand-worked: s_t = 0.5 s_{t-1} + 0.5 x_t from 0, divided by 1 - 0.5^t
    assert ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert ema([1.0, 2.0], 0.0) == [1.0, 2.0]


def test_command_filters_prints_writes_table_and_plots(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out), "--smooth", "0.6"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs" in printed and "optim.optimizer.lr" in printed and "0.0005" in printed
    assert (out / "table.md").read_text().count("\n") == 4
    for name in ("val_exact_match.png", "train_loss.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == (1200, 675)
    assert main([str(sweep), "--where", "optim.optimizer.lr=0.0005"]) == 0
    assert "1 runs" in capsys.readouterr().out
    assert main([str(sweep), "--recipe", "sft_caption"]) == 1
    assert "no run matches" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing-here")]) == 1
