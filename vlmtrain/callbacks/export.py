"""Save the trained model in Hugging Face format (weights or LoRA adapter + processor)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class SaveHFModel(L.Callback):
    """At the end of training write ``<dirpath>`` loadable with ``from_pretrained``.

    With LoRA this saves the adapter only (load it with PEFT on top of the base model).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.saved: str | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        out = Path(self.dirpath)
        out.mkdir(parents=True, exist_ok=True)
        pl_module.vlm.model.save_pretrained(out)
        pl_module.vlm.processor.save_pretrained(out)
        self.saved = str(out)
        log.info("saved Hugging Face model to %s", out)
