"""Shared fixtures: an isolated model cache, offline W&B, tiny models built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Subprocesses inherit these: tiny models are built once into this session's cache.
    os.environ["VLMTRAIN_CACHE"] = str(tmp_path_factory.getbasetemp() / "vlmcache")
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the network in tests
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("HYDRA_FULL_ERROR", None)


@pytest.fixture(autouse=True)
def _own_wandb_service() -> None:
    # wandb keeps its service's address in os.environ (WANDB_SERVICE) once a test has used W&B
    # in this process; a `python -m vlmtrain` started afterwards would share that service, and a
    # run killed with SIGKILL would then stay registered there, so its resume fails with "run ID
    # ... is in use". A user's fresh shell starts its own service: so does every test.
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def tiny_qwen():
    from vlmtrain.models.families import Qwen2_5_VL
    from vlmtrain.models.hf import load_vlm
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    return load_vlm(build_tiny_qwen2_5_vl(image_size=48), Qwen2_5_VL())


@pytest.fixture(scope="session")
def tiny_paligemma():
    from vlmtrain.models.families import PaliGemma
    from vlmtrain.models.hf import load_vlm
    from vlmtrain.models.tiny import build_tiny_paligemma

    return load_vlm(build_tiny_paligemma(image_size=48), PaliGemma())


@pytest.fixture(params=["qwen", "paligemma"])
def tiny_vlm(request, tiny_qwen, tiny_paligemma):
    """Each test using it runs for both families. Callers must not mutate the weights."""
    return tiny_qwen if request.param == "qwen" else tiny_paligemma


def run_vlmtrain(*overrides: str, cwd: Path | None = None, timeout: int = 600,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vlmtrain`` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "vlmtrain", *overrides], cwd=cwd or REPO, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )
