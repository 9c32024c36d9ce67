"""``python -m vlmtrain.export RUN_DIR_OR_CHECKPOINT --out DIR [--merge]``: a Hugging Face folder.

The run folder holds ``.hydra/config.yaml`` (how the model was built) and ``checkpoints/``
(Lightning checkpoints whose ``state_dict`` is the module's, the policy under ``model.``). The
model is rebuilt from the config's ``model`` node with the same ``load_vlm`` training used, the
checkpoint's weights are loaded into it, and the folder is written with ``save_pretrained``:

* LoRA run, default: the adapter alone, in PEFT format (``adapter_config.json`` +
  ``adapter_model.safetensors``, naming the base model). ``AutoModelForImageTextToText.
  from_pretrained(DIR)`` loads base + adapter (transformers' PEFT integration), as does
  ``PeftModel.from_pretrained(base, DIR)``; serving engines (vLLM ``--lora-modules``) take it.
* LoRA run, ``--merge``: the adapter folded into the base weights, a plain model folder.
* full fine-tune: the whole model (``--merge`` changes nothing).

The processor is saved next to the weights either way. Checkpoints are read with
``torch.load(weights_only=True)``: a checkpoint file cannot run code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)
_PREFIX = "model."  # VLMModule keeps the policy as ``self.model``


def find_run(path: Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint)`` from a run folder (its ``last.ckpt``) or a checkpoint file."""
    path = path.expanduser()
    if not path.exists():
        raise VLMTrainError(f"'{path}' does not exist; pass a run folder or a .ckpt file")
    if path.is_dir():
        run, ckpt = path, path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            found = sorted(str(p.relative_to(run)) for p in run.glob("**/*.ckpt"))
            raise VLMTrainError(f"{ckpt} does not exist; pass one of the run's checkpoints "
                                f"instead: {', '.join(found) or 'none found'}")
    else:
        ckpt = path
        run = next((p for p in path.parents if (p / ".hydra" / "config.yaml").is_file()), None)
        if run is None:
            raise VLMTrainError(f"no .hydra/config.yaml in a folder above {path}: the model "
                                "config is needed to rebuild the model; pass the run folder")
    if not (run / ".hydra" / "config.yaml").is_file():
        raise VLMTrainError(f"{run} has no .hydra/config.yaml: is it a vlmtrain run folder?")
    return run, ckpt


def load_policy_state(ckpt: Path) -> dict[str, torch.Tensor]:
    """The policy's tensors (``model.`` prefix removed) from a Lightning checkpoint."""
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 -- unpickling errors have no common base class
        raise VLMTrainError(f"cannot read checkpoint {ckpt} with weights_only=True "
                            f"({str(exc).splitlines()[0][:200]}); is it a Lightning checkpoint?"
                            ) from None
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise VLMTrainError(f"{ckpt} has no 'state_dict': not a Lightning checkpoint")
    policy = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
    if not policy:
        raise VLMTrainError(f"{ckpt} holds no '{_PREFIX}*' weights: not a vlmtrain checkpoint")
    return policy


def restore(model: torch.nn.Module, state: dict[str, torch.Tensor], ckpt: Path) -> None:
    """Load ``state`` into ``model``; every trainable tensor must come from the checkpoint.

    Frozen base weights may be absent (a checkpoint that keeps trainable state only): they
    are the base model's, just loaded. Anything unknown means the config does not match.
    """
    result = model.load_state_dict(state, strict=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lacking = sorted(trainable & set(result.missing_keys))
    if result.unexpected_keys or lacking:
        names = (result.unexpected_keys or lacking)[:3]
        what = "unknown to the model" if result.unexpected_keys else "trained but not saved"
        raise VLMTrainError(f"{ckpt} does not match the run's model config: weights {names} are "
                            f"{what}; export a checkpoint of this run")


def export(source: str | Path, out: str | Path, merge: bool = False,
           overwrite: bool = False) -> Path:
    """Write the trained model of a run (or checkpoint) as a Hugging Face folder.

    Args:
        source: run folder (uses ``checkpoints/last.ckpt``) or a ``.ckpt`` inside one.
        out: folder to write.
        merge: fold a LoRA adapter into the base weights.
        overwrite: allow writing into a non-empty ``out``.

    Returns:
        The written folder.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run, ckpt = find_run(Path(source))
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise VLMTrainError(f"--out {out} is not empty; choose a new folder or pass --overwrite")
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    vlm = instantiate(cfg.model)  # resolves only what the model node uses
    restore(vlm.model, load_policy_state(ckpt), ckpt)
    model, kind = _to_save(vlm.model, merge)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    vlm.processor.save_pretrained(out)
    log.info("exported %s of %s (%s) to %s", kind, vlm.name_or_path, ckpt, out)
    return out


def _to_save(model: Any, merge: bool) -> tuple[Any, str]:
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model, "the fully fine-tuned model"
    if merge:
        return model.merge_and_unload(), "the model with its LoRA adapter merged"
    return model, "the LoRA adapter (PEFT format)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmtrain.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="run folder (outputs/<date>/<time>) or a .ckpt in it")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--merge", action="store_true",
                        help="merge the LoRA adapter into the base model (default: adapter only)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = export(args.source, args.out, merge=args.merge, overwrite=args.overwrite)
    except VLMTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 -- Hydra wraps a VLMTrainError from load_vlm
        from vlmtrain.__main__ import user_error

        message = user_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"saved {out}: load it with AutoModelForImageTextToText.from_pretrained('{out}') and "
          f"AutoProcessor.from_pretrained('{out}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
