"""Where the packaged configs and recipes live (source checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _find(name: str, marker: str) -> Path:
    # Installed wheel: vlmtrain/configs (mapped by pyproject's package-dir); source or editable
    # checkout: configs/ next to the package, where users edit them.
    for candidate in (_HERE / name, _HERE.parent / name):
        if (candidate / marker).exists() if marker else candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"vlmtrain's {name}/ folder is missing from {_HERE} (broken install?)")


def config_dir() -> Path:
    """Folder holding ``train.yaml`` and the config groups."""
    return _find("configs", "train.yaml")


def recipe_dir() -> Path:
    """Folder holding the recipes (``<name>.yaml``)."""
    return _find("recipes", "")
