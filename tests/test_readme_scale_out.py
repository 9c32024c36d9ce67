"""Every command of the README's "Scale out" section composes, and what the launcher is told
(torchrun's processes and nodes, SLURM's tasks) agrees with what Lightning is configured with."""

from __future__ import annotations

import os
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from tests.conftest import REPO
from tests.test_trainer_configs import _installed
from vlmtrain.__main__ import register_recipes
from vlmtrain.distributed import DDPStrategy
from vlmtrain.paths import config_dir

SECTION = REPO.joinpath("README.md").read_text().split("## Scale out")[1].split("\n## ")[0]
BLOCKS = re.findall(r"```bash\n(.*?)```", SECTION, re.S)
SLURM_ENV = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4"}


def _commands() -> list[str]:
    lines = "\n".join(BLOCKS).replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+#.*$", "", line).strip() for line in lines if "-m vlmtrain " in line]


def _split(command: str) -> tuple[list[str], list[str]]:
    """``(launcher words, overrides)``: a sweep's comma lists keep their first value."""
    words = shlex.split(os.path.expandvars(command))
    at = words.index("vlmtrain")
    overrides = [w for w in words[at + 1:] if w != "-m"]
    overrides = [w if w.startswith("hydra.") or "," not in w else w.split(",")[0]
                 for w in overrides]
    return words[:at - 1], overrides


def _compose(overrides: list[str]):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):  # what Hydra sets when it runs the job
        cfg.paths.output_dir = cfg.hydra.run.dir
    return cfg


def _flag(words: list[str], name: str) -> str | None:
    return next((w.split("=", 1)[1] for w in words if w.startswith(f"--{name}=")), None)


def test_the_section_shows_every_launcher():
    launchers = {_split(c)[0][0] if _split(c)[0] else "python" for c in _commands()}
    assert launchers == {"python", "torchrun", "srun"}
    assert any("trainer=multinode" in c for c in _commands())
    assert any("hydra/launcher=slurm" in c for c in _commands())


@pytest.mark.parametrize("command", _commands())
def test_command_composes_and_agrees_with_its_launcher(command, monkeypatch):
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    launcher, overrides = _split(command)
    if any(o.startswith("hydra/launcher=") for o in overrides) and \
            not _installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("hydra-submitit-launcher is not installed (optional): the launcher config "
                    "cannot compose without it; tests/test_trainer_configs.py checks it when it is")
    cfg = _compose(overrides)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    if launcher and launcher[0] == "torchrun":
        assert str(trainer["devices"]) == _flag(launcher, "nproc_per_node")
        assert str(trainer.get("num_nodes", 1)) == (_flag(launcher, "nnodes") or "1")
        assert cfg.hydra.run.dir.startswith("outputs/")  # a fixed folder, the same on every rank
    if launcher and launcher[0] == "srun":  # the #SBATCH lines of the script above it
        script = next(b for b in BLOCKS if "srun" in b)
        sbatch = dict(re.findall(r"#SBATCH --([\w-]+)=?(\S*)", script))
        assert (trainer["num_nodes"], trainer["devices"]) == (int(sbatch["nodes"]),
                                                            int(sbatch["ntasks-per-node"]))
        assert sbatch["signal"].startswith("SIGUSR1@") and "requeue" in sbatch
        assert trainer["plugins"][-1]["auto_requeue"] is True
        assert trainer["default_root_dir"] == "outputs/slurm-77"  # the same after a requeue
    if "DDPStrategy" in str(trainer.get("strategy", {}).get("_target_", "")):
        assert isinstance(instantiate(cfg.trainer.strategy), DDPStrategy)
