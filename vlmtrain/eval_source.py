"""Which model an evaluation-only run (``fit=false``, the ``eval_*`` recipes) validates.

``eval_from=PATH`` takes any of:

- a Lightning checkpoint (``.../checkpoints/last.ckpt``): the configured model (``model=...``)
  is built, then the checkpoint's weights are loaded into it;
- a run folder (``outputs/<date>/<time>``): the run's own model config (from its
  ``.hydra/config.yaml``, so the family and LoRA settings match) with the weights of its
  exported ``hf_model/``, or of ``checkpoints/last.ckpt`` when it exported none or only a LoRA
  adapter;
- a Hugging Face model folder (``config.json`` + weights), like ``model.name_or_path=DIR``.

Without ``eval_from`` the configured model is evaluated as it is: the embedded default as
shipped, or ``model.name_or_path=DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vlmtrain.errors import VLMTrainError


def resolve_eval_source(cfg: DictConfig) -> tuple[DictConfig, str | None]:
    """The config whose ``model`` node builds the model to evaluate, and the Lightning
    checkpoint to load into it (``None``: the built model as it is).

    Raises:
        VLMTrainError: ``eval_from`` is none of the three kinds of source.
    """
    source = cfg.get("eval_from")
    if not source:
        return cfg, cfg.get("ckpt_path")
    path = Path(str(source)).expanduser()
    if path.is_file():
        return cfg, str(path)
    if _is_hf_model(path):
        return _with_model(cfg, cfg.model, path), None
    record = path / ".hydra" / "config.yaml"
    if record.is_file():
        model = _run_model(record)
        if _is_hf_model(path / "hf_model"):
            return _with_model(cfg, model, path / "hf_model"), None
        last = path / "checkpoints" / "last.ckpt"
        if last.is_file():
            return _with_model(cfg, model, None), str(last)
        raise VLMTrainError(
            f"eval_from={source}: this run folder has neither hf_model/ (a full model) nor "
            "checkpoints/last.ckpt; pass a checkpoint file or a model folder instead")
    raise VLMTrainError(
        f"eval_from={source}: not a Lightning checkpoint file, a run folder (with .hydra/) or a "
        "Hugging Face model folder (with config.json); check the path")


def _is_hf_model(path: Path) -> bool:
    # a LoRA-only export has adapter_config.json and no config.json: not loadable on its own
    return (path / "config.json").is_file()


def _run_model(record: Path) -> Any:
    """The run's model node, its interpolations (``${seed}``, ``${image_size}``) resolved
    against the run's own config."""
    run_cfg = OmegaConf.load(record)
    return OmegaConf.create(OmegaConf.to_container(run_cfg.model, resolve=True))


def _with_model(cfg: DictConfig, model: Any, name_or_path: Path | None) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = OmegaConf.create(OmegaConf.to_container(model))
        if name_or_path is not None:
            cfg.model.name_or_path = str(name_or_path)
    return cfg
