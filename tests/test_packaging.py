"""The package works when installed non-editable and run from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.relative_to(REPO).parent.parts)
        for p in (REPO / "vlmtrain").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = on_disk - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


def test_every_config_and_asset_folder_is_listed_in_pyproject():
    # data-only folders inside the package are listed too: setuptools warns about each one it
    # finds unlisted (and a fresh install should be quiet)
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"vlmtrain.configs." + ".".join(p.relative_to(REPO / "configs").parts)
               for p in (REPO / "configs").rglob("*") if p.is_dir()}
    folders |= {".".join(p.relative_to(REPO).parts) for p in (REPO / "vlmtrain" / "assets").rglob("*")
                if p.is_dir()} | {"vlmtrain.assets"}
    missing = folders - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.slow
def test_installed_wheel_runs_from_another_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(target), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    assert (target / "vlmtrain" / "configs" / "train.yaml").exists()
    assert (target / "vlmtrain" / "recipes" / "sft_vqa.yaml").exists()
    assert (target / "vlmtrain" / "configs" / "reference" / "cached.yaml").exists()
    assert (target / "vlmtrain" / "assets" / "shapes_clip" / "model.safetensors").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Only the installed copy may be importable: drop the repo from the path.
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import vlmtrain, sys; print(vlmtrain.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip().startswith(str(target)), probe.stdout
    result = subprocess.run(
        [sys.executable, "-m", "vlmtrain", "+recipe=sft_vqa", "trainer=fast_dev_run", "logger=csv",
         "data.train.datasets.0.size=8", "data.train.datasets.1.size=8",
         "data.train.datasets.2.size=24", "data.val.size=8", "data.batch_size=8",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run finished" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "vlmtrain", "+recipe=nope", "--cfg", "job"],
                         cwd=elsewhere, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "sft_vqa" in bad.stderr
