"""Reference log-probs computed once, stored on disk, looked up by sample id.

TRL refuses ``precompute_ref_log_probs`` for image data; here the reference (the adapter-less
policy or a frozen copy) runs once over the training and validation pairs before the first step,
and every later epoch -- and every later run on the same data, weights and tokenisation -- reads
the stored numbers instead of running a second forward pass per step.

The cache file is named by a fingerprint with three parts, so a stale cache is never reused and
the log says which part changed:

- ``data``: every pair's id, prompt, chosen and rejected text and image pixels;
- ``weights``: the reference weights (the base weights for the adapter-less policy);
- ``tokenisation``: the collator, ``max_length``, the family's prompt layout, the tokenizer's
  vocabulary and the image processor's settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlmtrain.data.records import images_of
from vlmtrain.errors import VLMTrainError
from vlmtrain.reference import LiveReference

log = logging.getLogger(__name__)

STAGES = ("train", "val")


class CachedReference:
    """Reference log-probs from an on-disk cache (see module docstring).

    Args:
        mode: which reference computes the cache: ``adapter``, ``frozen`` or ``auto``
            (:class:`~vlmtrain.reference.LiveReference`).
        cache_dir: folder of cache files; ``None`` = ``$VLMTRAIN_CACHE/reference_logps``
            (``~/.cache/vlmtrain`` when unset).
        batch_size: pairs per forward pass while building; ``None`` = the datamodule's
            ``eval_batch_size``.
    """

    def __init__(self, mode: str = "auto", cache_dir: str | None = None,
                 batch_size: int | None = None) -> None:
        self.live = LiveReference(mode)
        root = os.environ.get("VLMTRAIN_CACHE", "~/.cache/vlmtrain")
        self.cache_dir = Path(cache_dir or Path(root) / "reference_logps").expanduser()
        self.batch_size = batch_size
        self.policy: nn.Module | None = None
        self.path: Path | None = None
        self.table: dict[str, dict[str, Tensor]] = {}

    def attach(self, policy: nn.Module) -> None:
        """Bind to the policy before training (a frozen copy is taken now)."""
        self.live.attach(policy)
        self.policy = policy

    # -- building ---------------------------------------------------------------------------
    def prepare(self, module: Any, datamodule: Any) -> None:
        """Load the cache for this data/weights/tokenisation, or build it (once per process)."""
        if self.table:
            return
        if datamodule is None:
            raise VLMTrainError("reference=cached needs a datamodule to compute the cache from")
        parts = fingerprint_parts(datamodule, self.live)
        key = _digest(parts)[:24]
        self.path = self.cache_dir / f"{key}.pt"
        trainer = getattr(module, "_trainer", None)
        rank_zero = trainer is None or trainer.is_global_zero
        if not self.path.is_file() and rank_zero:
            log.info("reference log-probs: %s", self._why_new(parts))
            self._save(self._build(module, datamodule), parts, key)
        if trainer is not None and trainer.world_size > 1:
            trainer.strategy.barrier("reference_cache")
        stored = torch.load(self.path, map_location="cpu", weights_only=True)
        self.table = {stage: dict(zip(stored[stage]["ids"], stored[stage]["logps"]))
                      for stage in STAGES}
        log.info("reference log-probs: using %s (%d train, %d val pairs)", self.path,
                 len(self.table["train"]), len(self.table["val"]))
        if self.live.mode == "frozen":
            self.live.model = None  # the frozen copy is no longer needed: free its memory

    @torch.no_grad()
    def _build(self, module: Any, datamodule: Any) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        collator = copy.deepcopy(datamodule.train_collator)  # its skip counts stay the run's own
        bs = self.batch_size or datamodule.eval_batch_size
        for stage, dataset in zip(STAGES, (datamodule.train_set, datamodule.val_set)):
            ids: list[str] = []
            rows: list[Tensor] = []
            if dataset is not None:
                loader = DataLoader(dataset, batch_size=bs, shuffle=False, collate_fn=collator,
                                    num_workers=datamodule.num_workers)
                for batch in tqdm(loader, desc=f"reference log-probs ({stage})", leave=False):
                    batch = move_data_to_device(batch, module.device)
                    logps = self.live.logps(batch, stage).cpu()
                    b = len(batch["meta"]["ids"])
                    ids += batch["meta"]["ids"]
                    rows.append(torch.stack([logps[:b], logps[b:]], dim=1))
            out[stage] = {"ids": ids, "logps": torch.cat(rows) if rows else torch.zeros(0, 2)}
        return out

    def _save(self, table: dict, parts: dict[str, str], key: str) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save({**table, "parts": parts}, tmp)
        os.replace(tmp, self.path)  # atomic: a crash never leaves a half-written cache
        index = self._index()
        index[key] = {"parts": parts, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp_index = self.cache_dir / f"index.json.tmp{os.getpid()}"
        tmp_index.write_text(json.dumps(index, indent=1))
        os.replace(tmp_index, self.cache_dir / "index.json")

    def _index(self) -> dict[str, Any]:
        try:
            return json.loads((self.cache_dir / "index.json").read_text())
        except (OSError, ValueError):
            return {}

    def _why_new(self, parts: dict[str, str]) -> str:
        """Why no cache file fits: the parts that differ from the closest stored entry."""
        entries = [e for e in self._index().values() if isinstance(e, dict) and "parts" in e]
        if not entries:
            return f"no cache in {self.cache_dir} yet: computing it"
        closest = max(entries, key=lambda e: sum(e["parts"].get(k) == v for k, v in parts.items()))
        changed = [k for k, v in parts.items() if closest["parts"].get(k) != v]
        return (f"the closest cache in {self.cache_dir} (built {closest.get('created')}) is stale: "
                f"the {' and '.join(changed)} changed since; recomputing")

    # -- lookup -----------------------------------------------------------------------------
    def logps(self, batch: dict[str, Any], stage: str = "train") -> Tensor:
        """``(2B,)`` stored log-probs of the batch's pairs: chosen rows, then rejected rows."""
        table = self.table.get("train" if stage == "train" else "val")
        if table is None:
            raise RuntimeError("CachedReference.prepare() must run before the first step")
        try:
            rows = torch.stack([table[i] for i in batch["meta"]["ids"]])
        except KeyError as exc:
            raise VLMTrainError(
                f"pair {exc.args[0]} is not in the reference cache {self.path}: the data changed "
                "after the cache was built in this run; restart the run") from exc
        return torch.cat([rows[:, 0], rows[:, 1]]).to(batch["labels"].device)


def fingerprint_parts(datamodule: Any, live: LiveReference) -> dict[str, str]:
    """The three hashes that name a cache: ``data``, ``weights``, ``tokenisation``."""
    return {"data": _data_hash(datamodule), "weights": _weights_hash(live),
            "tokenisation": _tokenisation_hash(datamodule.train_collator)}


def _data_hash(datamodule: Any) -> str:
    h = hashlib.sha256()
    for stage, dataset in zip(STAGES, (datamodule.train_set, datamodule.val_set)):
        h.update(stage.encode())
        for i in range(len(dataset) if dataset is not None else 0):
            s = dataset[i]
            images = images_of(s)
            # one image hashes as before several were possible: existing caches stay valid
            shape = ([images[0].mode, images[0].size] if len(images) == 1
                     else [[im.mode, im.size] for im in images])
            h.update(json.dumps([s.id, s.prompt, s.target, s.rejected, *shape]).encode())
            for image in images:
                h.update(image.tobytes())
    return h.hexdigest()


def _weights_hash(live: LiveReference) -> str:
    """Hash of the reference weights (LoRA tensors excluded when the adapter is disabled)."""
    h = hashlib.sha256()
    for name, tensor in sorted(live.model.state_dict().items()):
        if live.mode == "adapter" and "lora_" in name:
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tokenisation_hash(collator: Any) -> str:
    sft = getattr(collator, "sft", collator)
    proc = sft.processor
    image_proc = getattr(proc, "image_processor", None)
    settings = {
        "collator": type(collator).__qualname__,
        "max_length": sft.max_length,
        "family": type(sft.family).__qualname__,
        "prompt": sft.family.prompt_text(proc, "{question}"),
        "answer": sft.family.answer_text(proc, "{answer}"),
        "image_processor": image_proc.to_json_string() if image_proc is not None else None,
    }
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    backend = getattr(proc.tokenizer, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else str(proc.tokenizer.get_vocab())).encode())
    return h.hexdigest()


def _digest(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
