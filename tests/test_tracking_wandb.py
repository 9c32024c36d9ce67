"""Secret redaction: whole-word secret keys are masked everywhere a run records its config;
ordinary keys (``max_new_tokens``) stay visible. The end-of-run summary names real places."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import run_vlmtrain
from vlmtrain.tracking.offline import read_offline_run
from vlmtrain.tracking.wandb import is_secret_key, redact, redact_argv

SMALL = ["data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
         "data.train.datasets.2.size=48", "data.val.size=16", "data.batch_size=8",
         "data.eval_batch_size=16"]


@pytest.mark.parametrize("key", [
    "hf_token", "token", "HF_TOKEN", "hfToken", "accessToken", "api_key", "wandb_api_key",
    "apiKey", "secret_api_key", "password", "db_passwd", "client_secret", "credentials",
    "private_key", "logger.wandb.api_key", "+hub.token"])
def test_secret_keys_are_secret(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "max_new_tokens", "num_tokens", "token_accuracy", "answer_tokens", "pad_token",
    "eos_token_id", "tokenizer", "monitor", "key", "secret.lr", "tokens_per_sec"])
def test_ordinary_keys_stay_visible(key):
    assert not is_secret_key(key)


def test_redact_masks_values_of_secret_keys_only():
    cfg = {"module": {"generation": {"max_new_tokens": 16}}, "hf_token": "t",
           "logger": {"wandb": {"api_key": "k", "project": "p"}},
           "special": {"pad_token": "<pad>"}, "nested": [{"password": "x", "lr": 1e-3}]}
    assert redact(cfg) == {"module": {"generation": {"max_new_tokens": 16}}, "hf_token": "***",
                           "logger": {"wandb": {"api_key": "***", "project": "p"}},
                           "special": {"pad_token": "<pad>"},
                           "nested": [{"password": "***", "lr": 1e-3}]}
    assert redact_argv(["prog", "module.generation.max_new_tokens=7", "+hf_token=abc",
                        "++x.client_secret=s", "seed=1,2"]) == [
        "prog", "module.generation.max_new_tokens=7", "+hf_token=***", "++x.client_secret=***",
        "seed=1,2"]


def test_run_logs_ordinary_keys_and_masks_secrets_everywhere(tmp_path):
    # The real entry point with W&B (offline) and CSV loggers: W&B config, W&B's recorded
    # command line and Lightning's hparams.yaml all keep max_new_tokens and mask the secrets.
    result = run_vlmtrain("+recipe=sft_vqa", "logger=default", "trainer.max_steps=2",
                          "trainer.val_check_interval=2", "module.generation.max_new_tokens=7",
                          "+hf_token=tok-do-not-log", "+auth.password=pw-do-not-log",
                          f"hydra.run.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert run.config["module"]["generation"]["max_new_tokens"] == 7
    assert run.config["hf_token"] == "***" and run.config["auth"] == {"password": "***"}
    assert "module.generation.max_new_tokens=7" in run.args and "+hf_token=***" in run.args
    hparams = yaml.safe_load((tmp_path / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["module"]["generation"]["max_new_tokens"] == 7
    assert hparams["hf_token"] == "***"
    for path in [p for p in tmp_path.rglob("*") if p.is_file() and ".hydra" not in p.parts]:
        data = path.read_bytes()
        assert b"tok-do-not-log" not in data and b"pw-do-not-log" not in data, path

    # the summary: whole paths, the offline folder to sync, no per-batch counts
    out = result.stdout
    assert "…" not in out and "bound method" not in out
    assert f"wandb sync {run_dir}" in out
    assert "val/exact_match" in out and "answer_tokens" not in out
    assert re.search(rf"best checkpoint\s+{re.escape(str(tmp_path))}/checkpoints/step2\.ckpt",
                     out), out


@pytest.mark.slow  # 2-30 s measured: wandb's service start and retries add to init_timeout
def test_unreachable_wandb_falls_back_to_offline_with_sync_hint(tmp_path, monkeypatch, caplog):
    """Online credentials, but nothing listens at the W&B address: the run goes offline within
    the init timeout, says how to sync, and logging works."""
    import logging

    from vlmtrain.tracking.wandb import finish_wandb, make_wandb_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with caplog.at_level(logging.WARNING, logger="vlmtrain.tracking.wandb"):
        logger = make_wandb_logger(mode="auto", init_timeout=2, project="t", name="n",
                                   save_dir=str(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "logging offline instead" in warnings[0]
    message = warnings[0]
    assert f"wandb sync {tmp_path}/wandb/offline-run-*" in message
    logger.log_metrics({"train/loss": 1.5}, step=1)
    assert logger.experiment.settings.mode == "offline"
    finish_wandb(0)
    runs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
