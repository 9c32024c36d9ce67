"""Sweeps from config: the W&B spec a sweep config becomes, and the runs a W&B agent starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, run_vlmtrain
from vlmtrain.errors import VLMTrainError
from vlmtrain.tracking.sweeps import main, wandb_parameter, wandb_spec


@pytest.mark.parametrize(("expr", "expected"), [
    ("interval(0.1, 0.5)", {"distribution": "uniform", "min": 0.1, "max": 0.5}),
    ("tag(log, interval(1e-4, 3e-3))",
     {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3}),
    ("tag(int, interval(1, 8))", {"distribution": "int_uniform", "min": 1, "max": 8}),
    ("choice(0, 50, 100)", {"values": [0, 50, 100]}),
    ("0.05,0.1,0.5", {"values": [0.05, 0.1, 0.5]}),
    ("range(1, 7, 2)", {"values": [1, 3, 5]}),
    ("sigmoid", {"value": "sigmoid"}),
])
def test_hydra_sweep_syntax_becomes_wandb_parameters(expr, expected):
    assert wandb_parameter("x", expr) == expected


def test_shipped_sweep_config_becomes_a_spec_running_vlmtrain(capsys):
    assert main(["lr", "--recipe", "sft_vqa", "--project", "proj", "trainer.max_steps=500"]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    assert spec["method"] == "bayes" and spec["run_cap"] == 12 and spec["project"] == "proj"
    assert spec["metric"] == {"name": "val/exact_match", "goal": "maximize"}
    assert spec["parameters"] == {
        "optim.optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3},
        "optim.scheduler.num_warmup_steps": {"values": [0, 50, 100]}}
    assert spec["command"] == ["${env}", "${interpreter}", "-m", "vlmtrain", "+recipe=sft_vqa",
                               "trainer.max_steps=500", "project=proj", "${args_no_hyphens}"]
    # the objective and its goal follow the recipe
    caption = wandb_spec({"params": {"seed": "0,1"}}, recipe="sft_caption")
    assert caption["metric"] == {"name": "val/cider", "goal": "maximize"}
    with pytest.raises(VLMTrainError, match="no params"):
        wandb_spec({}, recipe="sft_vqa")
    assert main(["no_such_sweep"]) == 1 and "lr" in capsys.readouterr().err


def test_agent_command_is_a_valid_vlmtrain_command(capsys):
    # Expand the spec's command as `wandb agent` does (its own create_sweep_command_args and
    # ${...} macros) for one sampled point, and let vlmtrain compose it.
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    assert main(["lr", "--recipe", "sft_vqa"]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    sampled = {"optim.optimizer.lr": {"value": 0.00042}, "optim.scheduler.num_warmup_steps":
               {"value": 50}}
    macros = create_sweep_command_args({"args": sampled})
    macros.update(env=[], interpreter=[sys.executable], program=[spec["program"]])
    argv = []
    for part in spec["command"]:
        argv += macros[part[2:-1]] if part.startswith("${") else [part]
    result = subprocess.run([*argv, "--cfg", "job"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    job = yaml.safe_load(result.stdout)
    assert job["optim"]["optimizer"]["lr"] == 0.00042
    assert job["optim"]["scheduler"]["num_warmup_steps"] == 50 and job["run_name"] == "sft_vqa"


def test_optuna_sweep_runs_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                        reason="optional extra: pip install 'vlmtrain[sweep]'")
    result = run_vlmtrain("-m", "+sweep=lr", "+recipe=sft_vqa", "hydra.sweeper.n_trials=2",
                          "logger=csv", "trainer.max_steps=2", "trainer.val_check_interval=2",
                          "data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
                          "data.train.datasets.2.size=48", "data.val.size=16",
                          "data.batch_size=8", "data.eval_batch_size=16",
                          f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Best parameters" in result.stdout + result.stderr
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optim.optimizer.lr",
                                        "optim.scheduler.num_warmup_steps"}
    assert 1e-4 <= best["best_params"]["optim.optimizer.lr"] <= 3e-3
    assert (tmp_path / "0" / "run.json").exists() and (tmp_path / "1" / "run.json").exists()
