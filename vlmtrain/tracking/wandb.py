"""W&B logger that works with no account: online only when credentials exist."""

from __future__ import annotations

import logging
import netrc
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SECRET = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)


def wandb_mode(mode: str = "auto") -> str:
    """Resolve ``auto`` to ``online`` when W&B credentials exist, else ``offline``.

    ``WANDB_MODE`` in the environment wins, as in wandb itself.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc(os.environ.get("NETRC", Path.home() / ".netrc"))
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        if rc.authenticators(host.split("/")[0]):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def make_wandb_logger(mode: str = "auto", **kwargs: Any) -> Any:
    """A Lightning ``WandbLogger`` in the resolved mode (see :func:`wandb_mode`).

    Args:
        mode: ``auto`` | ``online`` | ``offline`` | ``disabled``.
        **kwargs: forwarded to ``WandbLogger`` (project, name, save_dir, tags, id, ...).
    """
    from lightning.pytorch.loggers import WandbLogger

    resolved = wandb_mode(mode)
    if resolved == "offline":
        log.info("W&B offline (no credentials found): sync later with `wandb sync %s`",
                 kwargs.get("save_dir", "."))
    return WandbLogger(mode=resolved, offline=resolved == "offline", **kwargs)


def redact(config: Any) -> Any:
    """Copy of a (nested) config with values of secret-looking keys replaced by ``***``."""
    if isinstance(config, Mapping):
        return {k: "***" if _SECRET.search(str(k)) else redact(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    return config


def redact_argv(argv: list[str]) -> list[str]:
    """Command-line overrides with secret-looking values masked (``+wandb_api_key=***``).

    W&B records ``sys.argv`` in each run's metadata; Hydra has parsed it by the time a run
    starts, so the process's argv can be masked before any logger sees it.
    """
    out = []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        out.append(f"{key}=***" if sep and _SECRET.search(key) else arg)
    return out
