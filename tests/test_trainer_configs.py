"""configs/trainer/{ddp,fsdp,deepspeed_zero2,deepspeed_zero3,multinode}.yaml and the submitit
launcher config compose and instantiate the Lightning objects they name."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from omegaconf import OmegaConf, open_dict

from vlmtrain.__main__ import register_recipes
from vlmtrain.distributed import WrapLayers
from vlmtrain.paths import config_dir


def _compose(*overrides: str, hydra_config: bool = False):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["+recipe=sft_vqa", *overrides],
                      return_hydra_config=hydra_config)
    if not hydra_config:
        with open_dict(cfg):
            cfg.paths.output_dir = "/tmp/vlmtrain-compose-test"
    return cfg


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _trainer(cfg):
    return instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


def test_ddp_on_two_cpu_processes():
    cfg = _compose("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    trainer = _trainer(cfg)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    assert trainer.strategy._ddp_kwargs == {"find_unused_parameters": False,
                                            "gradient_as_bucket_view": True}
    assert trainer.max_steps == cfg.schedule.max_steps  # default.yaml's settings kept
    assert trainer.gradient_clip_val == 1.0


@pytest.mark.parametrize("family,blocks", [
    ("qwen", {"Qwen2_5_VLDecoderLayer": 2, "Qwen2_5_VLVisionBlock": 2}),
    ("paligemma", {"GemmaDecoderLayer": 2, "SiglipEncoderLayer": 2}),
])
def test_fsdp_wraps_each_block_of_both_families(family, blocks, tiny_qwen, tiny_paligemma):
    cfg = _compose("trainer=fsdp")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert strategy._state_dict_type == "full"  # one file: what vlmtrain.export reads
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, WrapLayers)
    model = (tiny_qwen if family == "qwen" else tiny_paligemma).model
    wrapped = Counter(type(m).__name__ for m in model.modules()
                      if policy(module=m, recurse=False, nonwrapped_numel=0))
    assert wrapped == blocks
    assert policy(module=model, recurse=True, nonwrapped_numel=0)  # always descends


def test_fsdp_trainer_needs_cuda():
    if torch.cuda.is_available():
        assert isinstance(_trainer(_compose("trainer=fsdp")).strategy, FSDPStrategy)
    else:  # the strategy reaches Lightning's FSDP, which refuses a CPU accelerator
        with pytest.raises(Exception, match="The strategy `fsdp` requires a GPU accelerator"):
            _trainer(_compose("trainer=fsdp", "trainer.accelerator=cpu"))


@pytest.mark.parametrize("name,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_configs(name, stage):
    cfg = _compose(f"trainer={name}")
    node = cfg.trainer.strategy
    assert node._target_ == "vlmtrain.distributed.DeepSpeedStrategy"
    assert node.stage == stage and cfg.trainer.precision == "bf16-mixed"
    if not _installed("deepspeed"):
        pytest.skip("deepspeed is not installed (optional: pip install deepspeed); the strategy "
                    "cannot be instantiated without it")
    strategy = instantiate(node)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == stage and zero["overlap_comm"] is True
    assert zero["reduce_bucket_size"] == 200_000_000


SLURM = {"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NTASKS": "8",
         "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "vlmtrain", "SLURM_PROCID": "5",
         "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NODELIST": "gpu[01-02]"}


def test_multinode_reads_slurm_and_requeues(monkeypatch):
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    cfg = _compose("trainer=multinode", "trainer.accelerator=cpu")
    OmegaConf.resolve(cfg)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (2, 4)
    assert cfg.trainer.default_root_dir == "outputs/slurm-4242"  # the same after a requeue
    trainer = _trainer(cfg)
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 4, 8)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (5, 1, 1)


def test_multinode_outside_slurm_is_one_process(monkeypatch):
    for key in SLURM:
        monkeypatch.delenv(key, raising=False)
    cfg = _compose("trainer=multinode")
    OmegaConf.resolve(cfg)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (1, 1)
    assert cfg.trainer.default_root_dir == "outputs/slurm-local"


def test_submitit_launcher_config():
    if not _installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("hydra-submitit-launcher is not installed (optional: pip install "
                    "hydra-submitit-launcher); its launcher config cannot compose without it")
    cfg = _compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 240, 1)
    assert launcher.max_num_timeout == 0 and launcher.signal_delay_s == 120
