"""Without a reachable hub, hub models fail at once with a line that says what to do; a cached
model still loads; code shipped with a checkpoint does not run unless the config allows it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from huggingface_hub import constants

from vlmtrain.errors import VLMTrainError
from vlmtrain.models import hub
from vlmtrain.models.families import Qwen2_5_VL
from vlmtrain.models.hf import load_vlm
from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

MESSAGE = ("cannot load 'Qwen/Qwen2.5-VL-3B-Instruct': the Hugging Face Hub is out of reach (no "
           "network, or HF_HUB_OFFLINE=1) and the model is not in the local cache; download it "
           "where there is network (`hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR`), "
           "copy DIR here and pass model.name_or_path=DIR")


@pytest.fixture
def silent_hub(monkeypatch):
    """A 'hub' that accepts connections and never answers (a black-holed network)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("VLMTRAIN_HUB_PROBE_TIMEOUT", "0.5")
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()
    server.close()


def test_unanswering_hub_fails_fast_with_one_line(silent_hub):
    start = time.perf_counter()
    with pytest.raises(VLMTrainError) as err:
        load_vlm("Qwen/Qwen2.5-VL-3B-Instruct", Qwen2_5_VL())
    elapsed = time.perf_counter() - start
    assert str(err.value) == MESSAGE
    assert elapsed < 30, elapsed  # one 0.5 s probe, no retries (2 min 40 s before)
    assert not hub.hub_reachable()


def test_hf_hub_offline_fails_fast(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.hub_reachable.cache_clear()
    with pytest.raises(VLMTrainError, match="^cannot load 'Qwen/Qwen2.5-VL-3B-Instruct': the "):
        load_vlm("Qwen/Qwen2.5-VL-3B-Instruct", Qwen2_5_VL())


def test_a_missing_folder_is_not_taken_for_a_hub_id():
    with pytest.raises(VLMTrainError, match=r"model.name_or_path='/data/qwen': no such folder"):
        load_vlm("/data/qwen", Qwen2_5_VL())


def test_metric_models_fail_fast_too(monkeypatch):
    from vlmtrain.metrics.functional.bertscore import load_bert_scorer
    from vlmtrain.metrics.functional.clipscore import load_clip

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(VLMTrainError, match=r"^cannot load 'openai/clip-vit-base-patch32': .* "
                                            r"pass --clip-model \(or model_name_or_path\)=DIR$"):
        load_clip("openai/clip-vit-base-patch32", device="cpu")
    with pytest.raises(VLMTrainError, match=r"^cannot load 'roberta-large': .* pass "
                                            r"--bertscore-model \(or model_type\)=DIR$"):
        load_bert_scorer("roberta-large", device="cpu")


def test_a_cached_hub_model_loads_offline(tmp_path):
    """A hub id found in the local cache loads under HF_HUB_OFFLINE=1 (subprocess: the cache
    location is read when huggingface_hub is imported)."""
    snapshot = tmp_path / "hub" / "models--org--tiny-qwen" / "snapshots" / ("0" * 40)
    shutil.copytree(build_tiny_qwen2_5_vl(image_size=48), snapshot)
    (tmp_path / "hub" / "models--org--tiny-qwen" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny-qwen" / "refs" / "main").write_text("0" * 40)
    code = ("from vlmtrain.models.hf import load_vlm; from vlmtrain.models.families import "
            "Qwen2_5_VL; print(type(load_vlm('org/tiny-qwen', Qwen2_5_VL()).model).__name__)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Qwen2_5_VLForConditionalGeneration")


def test_code_shipped_with_a_checkpoint_does_not_run_by_default(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(build_tiny_qwen2_5_vl(image_size=48), folder)
    marker = tmp_path / "code-ran"
    (folder / "modeling_custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import Qwen2_5_VLForConditionalGeneration as CustomModel\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    vlm = load_vlm(str(folder), Qwen2_5_VL())
    assert type(vlm.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert not marker.exists()
