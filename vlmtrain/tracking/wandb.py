"""W&B logger that works with no account: online only when credentials exist."""

from __future__ import annotations

import logging
import netrc
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A key is secret when one of its words (split at ``_``, ``-``, ``.`` and camelCase humps) names a
# credential. Whole words, not substrings: ``max_new_tokens`` or ``token_accuracy`` must stay
# visible (a sweep over them would otherwise be invisible in W&B), while ``hf_token``,
# ``wandb_api_key`` and ``client_secret`` are masked. ``token`` counts only as the key's last
# word, and not after the name of a special token (``pad_token: <pad>`` is vocabulary).
_SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "secret", "secrets", "credential",
                           "credentials", "apikey", "private_key", "api_key", "access_key",
                           "secret_key", "auth_key", "token_secret"})
_SPECIAL_TOKENS = frozenset({"pad", "bos", "eos", "unk", "sep", "cls", "mask", "image", "video",
                             "vision", "start", "end", "boi", "eoi"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


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


def make_wandb_logger(mode: str = "auto", init_timeout: float = 30.0, **kwargs: Any) -> Any:
    """A Lightning ``WandbLogger`` in the resolved mode (see :func:`wandb_mode`).

    Online, the W&B run starts here, within ``init_timeout`` seconds. When W&B cannot be
    reached (network down, server unreachable, key refused) the run is logged offline instead,
    with one warning naming the ``wandb sync`` command, so a job does not fail for want of a
    network (wandb's service start and retries add up to ~30 s to the timeout). Once a run has
    started, the W&B service writes what is logged to disk first and retries the network itself
    (its behaviour, not tested here): a connection lost mid-run costs the live view.

    Args:
        mode: ``auto`` | ``online`` | ``offline`` | ``disabled``.
        init_timeout: seconds W&B may take to start an online run (wandb waits 90 s by default,
            then fails the whole job).
        **kwargs: forwarded to ``WandbLogger`` (project, name, save_dir, tags, id, ...).
    """
    from lightning.pytorch.loggers import WandbLogger

    resolved = wandb_mode(mode)
    label, group = sweep_label()
    if label:  # a multirun job: say what differs from its siblings, group them by sweep
        kwargs["name"] = f"{kwargs.get('name') or ''} {label}".strip()
        kwargs["group"] = kwargs.get("group") or group
    sync = f"`wandb sync {kwargs.get('save_dir') or '.'}/wandb/offline-run-*`"
    if resolved == "online":
        logger = _start_online(WandbLogger, init_timeout, kwargs, sync)
        if logger is not None:
            return logger
        resolved = "offline"
    elif resolved == "offline":
        # wandb writes the run under <save_dir>/wandb/offline-run-<time>-<id>: that is what
        # `wandb sync` takes (the end-of-run summary prints the exact folder).
        log.info("W&B offline (no credentials found): sync later with %s", sync)
    return WandbLogger(mode=resolved, offline=resolved == "offline", **kwargs)


def _start_online(logger_cls: Any, init_timeout: float, kwargs: dict[str, Any],
                  sync: str) -> Any:
    """The online logger with its run started, or ``None`` (warned) when W&B is unreachable.

    Lightning starts the run lazily, inside ``fit``, where a failure ends training; starting it
    here lets the run fall back to offline first. Ranks other than 0 get Lightning's dummy run.
    """
    import wandb

    settings = wandb.Settings(init_timeout=float(init_timeout))
    logger = logger_cls(mode="online", offline=False, settings=settings, **kwargs)
    try:
        logger.experiment  # noqa: B018 -- starts the W&B run (rank 0 only)
        return logger
    except wandb.errors.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("W&B unreachable (%s): logging offline instead; sync later with %s",
                    reason, sync)
        return None


def is_secret_key(key: str) -> bool:
    """Whether a config key (``hf_token``, ``logger.wandb.api_key``, ``+x.secret``) is a secret.

    Only the last dotted component counts: ``secret.lr`` names a learning rate.
    """
    words = [w.lower() for w in _WORD.findall(str(key).rsplit(".", 1)[-1])]
    if not words:
        return False
    pairs = {f"{a}_{b}" for a, b in zip(words, words[1:])}
    if _SECRET_WORDS & (set(words) | pairs):
        return True
    return words[-1] == "token" and (len(words) == 1 or words[-2] not in _SPECIAL_TOKENS)


def redact(config: Any) -> Any:
    """Copy of a (nested) config with values of secret-looking keys (see :func:`is_secret_key`)
    replaced by ``***``."""
    if isinstance(config, Mapping):
        return {k: "***" if is_secret_key(k) else redact(v) for k, v in config.items()}
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
        out.append(f"{key}=***" if sep and is_secret_key(key.lstrip("+~")) else arg)
    return out


def sweep_label() -> tuple[str | None, str | None]:
    """``("seed=1 loss.beta=0.1", "<sweep dir>")`` inside a Hydra multirun job, else ``None``s.

    The label lists this job's values of the swept keys: those given as sweeps on the command
    line (``seed=0,1``, ``range(...)``, ``choice(...)``) and those of ``hydra.sweeper.params``
    (a sweep in config, e.g. Optuna's search space). The group is the sweep folder's last two
    parts (``2026-12-02/08-30-00`` by default), shared by every job of the sweep.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, None
    hc = HydraConfig.get()
    parser = OverridesParser.create()
    swept = {o.get_key_element() for o in parser.parse_overrides(
        [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]) if o.is_sweep_override()}
    swept |= {str(k) for k in (hc.sweeper.get("params") or {})}
    job = parser.parse_overrides(list(hc.overrides.task))
    label = " ".join(_short_override(o) for o in job if o.get_key_element() in swept) or \
        f"job {hc.job.num}"
    return label, "/".join(Path(hc.sweep.dir).parts[-2:])


def _short_override(override: Any) -> str:
    """``optim.optimizer.lr=0.000646642...`` -> ``optim.optimizer.lr=0.0006466`` (run names)."""
    value = override.value()
    if isinstance(value, float):
        return f"{override.get_key_element()}={value:.4g}"
    return override.input_line


def finish_wandb(exit_code: int = 0, preempted: bool = False) -> None:
    """End the process's W&B run, if one is open.

    A Hydra multirun runs its jobs in one process: without this, the next job's logger finds the
    run still open and logs into it (Lightning: "a wandb run already in progress").
    """
    wandb = sys.modules.get("wandb")  # never import wandb just to learn nothing is open
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return
    if preempted:
        run.mark_preempting()
    wandb.finish(exit_code=exit_code)

