"""Fail fast when the Hugging Face Hub is out of reach.

``from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")`` with no network retries for minutes before it
gives up (measured: 2 min 35 s; CLIPScore / BERTScore models ~1 min). One HEAD request to the
hub with a short timeout (proxies honoured: it goes through huggingface_hub's own HTTP client)
tells whether it answers. If it does not, or ``HF_HUB_OFFLINE=1`` is set, models are loaded from
the local cache only (``local_files_only=True``): a cached model loads, and a missing one fails
at once with :func:`offline_error`, which says how to point the config at a local copy.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)

#: Seconds the hub has to answer the probe (``VLMTRAIN_HUB_PROBE_TIMEOUT`` overrides it).
PROBE_TIMEOUT_S = 3.0


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hub answers (any HTTP status counts); probed once per process."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.is_offline_mode():
        return False
    timeout = float(os.environ.get("VLMTRAIN_HUB_PROBE_TIMEOUT", PROBE_TIMEOUT_S))
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 -- DNS, connect, TLS, proxy, timeout: all "no hub"
        log.warning("the Hugging Face Hub (%s) cannot be reached (%s, probe timeout %.0f s): "
                    "loading models from the local cache only", constants.ENDPOINT,
                    type(exc).__name__, timeout)
        return False
    return True


def cache_only(name_or_path: str, setting: str) -> bool:
    """True when ``name_or_path`` is a hub id and the hub is out of reach (or set offline).

    Raises:
        VLMTrainError: ``name_or_path`` is written as a path (``/``, ``./``, ``~``, or more
            than one ``/``) but no such folder exists.
    """
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return False
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise VLMTrainError(f"{setting}={name!r}: no such folder; fix the path (a hub id looks "
                            "like 'org/name')")
    return not hub_reachable()


@contextmanager
def offline_unless_reachable(name_or_path: str, setting: str) -> Iterator[None]:
    """Load ``name_or_path`` inside this block from the local cache when the hub is out of reach.

    For libraries whose loaders take no ``local_files_only`` (``bert_score``): huggingface_hub's
    offline switch is turned on for the block, and a model missing from the cache fails before
    the library is called.
    """
    if not cache_only(name_or_path, setting):
        yield
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(str(name_or_path), "config.json"), str):
        raise offline_error(name_or_path, setting)
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read at call time by transformers' is_offline_mode()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def offline_error(name_or_path: str, setting: str) -> VLMTrainError:
    """The one-line error for a hub model that is neither reachable nor cached.

    Args:
        name_or_path: the hub id.
        setting: the config key or option that names the model, e.g. ``model.name_or_path``.
    """
    return VLMTrainError(
        f"cannot load '{name_or_path}': the Hugging Face Hub is out of reach (no network, or "
        f"HF_HUB_OFFLINE=1) and the model is not in the local cache; download it where there "
        f"is network (`hf download {name_or_path} --local-dir DIR`), copy DIR here and pass "
        f"{setting}=DIR"
    )
