"""A start model made by another recipe: built on first use, cached, then loaded like any other.

Preference optimisation starts from a model that already answers (an SFT model). For the
embedded default there is no such checkpoint to download, so a DPO recipe names the recipe that
makes one; the first run trains it (its output streams to the console), later runs load it from
the cache. The result is the ``hf_model`` folder that run exported, so the DPO stage loads it
with ``from_pretrained`` exactly as it would load a real checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)


def trained_by_recipe(recipe: str, model: str, overrides: Sequence[str] = (),
                      cache_dir: str | None = None, **architecture: Any) -> str:
    """Folder of the model ``python -m vlmtrain +recipe=RECIPE model=MODEL ...`` exports.

    Args:
        recipe: the recipe that trains the start model (e.g. ``sft_vqa``).
        model: the model config it trains (e.g. ``tiny_qwen2_5_vl``).
        overrides: further command-line overrides of that run (e.g. ``trainer.max_steps=1200``).
        cache_dir: where finished stages are kept; ``None`` = ``$VLMTRAIN_CACHE/stages``
            (``~/.cache/vlmtrain/stages`` when unset).
        **architecture: the settings of ``model.name_or_path`` of the model config (a tiny
            builder's sizes and seed), passed on to the stage so that it builds exactly the
            architecture this config describes.

    Returns:
        Path of the exported Hugging Face folder (model + processor).

    Raises:
        VLMTrainError: if the stage run fails (its log is kept and named).
    """
    args = [f"+recipe={recipe}", f"model={model}", *overrides,
            *(f"model.name_or_path.{k}={_value(v)}" for k, v in sorted(architecture.items()))]
    key = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:12]
    root = os.environ.get("VLMTRAIN_CACHE", "~/.cache/vlmtrain")
    final = Path(cache_dir or Path(root) / "stages").expanduser() / f"{recipe}-{model}-{key}"
    hf_model = final / "hf_model"
    final.parent.mkdir(parents=True, exist_ok=True)
    # One process trains a stage; another one asking for it at the same time waits, then loads.
    with open(final.with_name(final.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (hf_model / "config.json").is_file():
            log.info("start model: %s (made by `python -m vlmtrain %s`)", hf_model,
                     " ".join(args))
            return str(hf_model)
        _train_stage(args, final)
    return str(hf_model)


def _train_stage(args: list[str], final: Path) -> None:
    """Run the stage into ``<final>.partial`` and move it to ``final`` when it succeeded."""
    work = final.with_name(final.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "-m", "vlmtrain", *args, "logger=csv", f"hydra.run.dir={work}"]
    log.info("start model: not cached yet; training it first: python -m vlmtrain %s",
             " ".join(args))
    done = subprocess.run(command, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    if done.returncode != 0 or not (work / "hf_model" / "config.json").is_file():
        raise VLMTrainError(
            f"the start-model stage `python -m vlmtrain {' '.join(args)}` failed (exit "
            f"{done.returncode}); its output folder is {work}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)  # a finished stage appears whole or not at all
    log.info("start model: cached at %s", final / "hf_model")


def _value(v: Any) -> str:
    """A command-line value Hydra parses back to ``v``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    raise VLMTrainError(f"model.name_or_path setting {v!r}: a start-model stage takes plain "
                        "values (numbers, strings, booleans) only")
