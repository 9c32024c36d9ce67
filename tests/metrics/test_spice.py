"""SPICE: install checks, the java command, and the parsing of a SPICE 1.0 output file.

``data/spice_output.json`` was written the way ``spice-1.0.jar -subset`` writes it: values from
the jar's own ``Evaluation.calcFScore`` (``allowNan`` false for "All", true for the categories),
serialised by its json-simple (NaN -> null, HashMap key order) and pretty-printed as its
``JSON.stringify(..., null, 2)`` does (0.0 -> 0). The CoreNLP jars SPICE needs are not installed
here, so the jar itself is replaced by a fake ``java`` that checks the input file and copies the
fixture to ``-out``; the real jar runs in the last test when CoreNLP is installed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmtrain.metrics.functional import spice as spice_fn
from vlmtrain.metrics.functional.spice import (
    SpiceNotInstalledError,
    build_spice_command,
    locate_spice,
    parse_spice_output,
    spice_mean,
    spice_records,
    spice_score,
)
from vlmtrain.metrics.spice import Spice

DATA = Path(__file__).parent / "data"
OUTPUT = DATA / "spice_output.json"
# (tp, fp, fn) of "All" for the 4 images of the fixture
ALL_COUNTS = [(5, 6, 27), (0, 7, 25), (7, 2, 19), (3, 5, 40)]
PREDICTIONS = ["a dog runs on the grass", "a cat", "two men ride bikes", "a red car"]
REFERENCES = [["a brown dog running", "a dog on grass"], ["a kitten sleeps"],
              ["two people cycling", "men on bicycles", "two cyclists"], ["a car parked"]]

FAKE_JAVA = """#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
if "-version" in args:
    sys.stderr.write("Property settings:\\n    java.specification.version = {version}\\n")
    sys.exit(0)
in_file = args[args.index("edu.anu.spice.SpiceScorer") + 1]
log = os.path.join(os.environ["FAKE_SPICE_LOG"], "call%d.json" % os.getpid())
with open(log, "w") as f:
    json.dump({{"argv": args, "input": json.load(open(in_file))}}, f)
if os.environ.get("FAKE_SPICE_FAIL"):
    sys.stderr.write("Error: Could not score batched file input:\\njava.lang.NullPointerException")
    sys.exit(1)
shutil.copy(os.environ["FAKE_SPICE_OUTPUT"], args[args.index("-out") + 1])
"""


def _fake_java(folder: Path, version: str = "17") -> str:
    path = folder / f"java{version}"
    path.write_text(FAKE_JAVA.format(python=sys.executable, version=version))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def lib_dir(tmp_path) -> Path:
    """A lib folder with (empty) CoreNLP and Nashorn jars: enough for the install checks."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar",
                 "nashorn-core-15.4.jar", "asm-7.3.1.jar"):
        (lib / name).write_bytes(b"")
    return lib


@pytest.fixture
def fake_spice(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "calls"
    log.mkdir()
    monkeypatch.setenv("FAKE_SPICE_LOG", str(log))
    monkeypatch.setenv("FAKE_SPICE_OUTPUT", str(OUTPUT))
    return log


def _calls(log: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(log.glob("call*.json"))]


def _java_f(tp: int, fp: int, fn: int) -> float:
    """Evaluation.calcFScore of SPICE 1.0 (beta = 1), in the jar's operation order."""
    pr = tp / (tp + fp) if tp + fp > 0 else 0.0
    re = tp / (tp + fn)
    return (1.0 + 1.0) * (pr * re) / (1.0 * pr + re) if pr > 0 and re > 0 else 0.0


def test_parse_stored_output_by_hand():
    per_image = parse_spice_output(json.loads(OUTPUT.read_text()), [0, 1, 2, 3])
    assert per_image == [_java_f(*c) for c in ALL_COUNTS]
    for (tp, fp, fn), f in zip(ALL_COUNTS, per_image):  # F1 = 2tp / (2tp + fp + fn)
        assert abs(f - 2 * tp / (2 * tp + fp + fn)) < 1e-12
    # (10/43 + 0 + 14/35 + 6/51) / 4
    assert abs(spice_mean(per_image) - 0.18755129958960328) < 1e-12


def test_parse_equals_pycocoevalcap(monkeypatch):
    """pycocoevalcap's Spice.compute_score on the same jar output (the jar call replaced)."""
    from pycocoevalcap.spice import spice as coco_spice

    def fake_check_call(cmd, cwd=None):
        shutil.copy(OUTPUT, cmd[cmd.index("-out") + 1])

    monkeypatch.setattr(coco_spice, "get_stanford_models", lambda: None)
    monkeypatch.setattr(coco_spice.subprocess, "check_call", fake_check_call)
    gts = {i: refs for i, refs in enumerate(REFERENCES)}
    res = {i: [pred] for i, pred in enumerate(PREDICTIONS)}
    official, _ = coco_spice.Spice().compute_score(gts, res)
    ours = spice_mean(parse_spice_output(json.loads(OUTPUT.read_text()), [0, 1, 2, 3]))
    assert ours == official


def test_parse_rejects_broken_output():
    results = json.loads(OUTPUT.read_text())
    with pytest.raises(ValueError, match="no entry for image_id 7"):
        parse_spice_output(results, [0, 7])
    results[1]["scores"]["All"]["f"] = None  # pycocoevalcap would return NaN
    with pytest.raises(ValueError, match="image_id 1: 'All' f-score is None"):
        parse_spice_output(results, [0, 1])


def test_missing_corenlp_names_files_place_and_source(tmp_path):
    with pytest.raises(SpiceNotInstalledError) as err:
        spice_score(PREDICTIONS, REFERENCES, lib_dir=tmp_path)
    message = str(err.value)
    for text in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar", str(tmp_path),
                 "VLMTRAIN_SPICE_LIB", "stanford-corenlp-full-2015-12-09.zip", "docs/spice.md"):
        assert text in message
    (tmp_path / "stanford-corenlp-3.6.0.jar").write_bytes(b"")
    with pytest.raises(SpiceNotInstalledError, match="missing in .*: stanford-corenlp-3.6.0-mod"):
        locate_spice(tmp_path)


def test_java_checks(lib_dir, tmp_path):
    with pytest.raises(SpiceNotInstalledError, match="cannot run '/nonexistent/java'"):
        locate_spice(lib_dir, "/nonexistent/java")
    (lib_dir / "nashorn-core-15.4.jar").unlink()
    with pytest.raises(SpiceNotInstalledError, match="(?s)Nashorn.*Java 17.*Java 8-14.*nashorn"):
        locate_spice(lib_dir, _fake_java(tmp_path, "17"))
    assert locate_spice(lib_dir, _fake_java(tmp_path, "1.8")).java_version == 8


def test_command_is_pycocoevalcaps_plus_java9_flags(lib_dir, tmp_path):
    install = locate_spice(lib_dir, _fake_java(tmp_path, "17"))
    cmd = build_spice_command(install, Path("in.json"), Path("out.json"), Path("cache"))
    assert cmd[:2] == [install.java, "-Xmx8G"]
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in cmd
    assert cmd[cmd.index("edu.anu.spice.SpiceScorer"):] == [
        "edu.anu.spice.SpiceScorer", "in.json", "-cache", "cache", "-out", "out.json", "-subset",
        "-silent"]
    classpath = cmd[cmd.index("-cp") + 1].split(":")
    assert classpath[0].endswith("pycocoevalcap/spice/spice-1.0.jar")
    assert str(lib_dir / "stanford-corenlp-3.6.0-models.jar") in classpath
    java8 = locate_spice(lib_dir, _fake_java(tmp_path, "1.8"))
    cmd8 = build_spice_command(java8, Path("in.json"), Path("out.json"), None)
    assert not any(a.startswith("--add-opens") for a in cmd8) and "-cache" not in cmd8


def test_spice_score_runs_the_jar_command(lib_dir, tmp_path, fake_spice):
    java = _fake_java(tmp_path)
    got = spice_score(PREDICTIONS, REFERENCES, tokenize=False, lib_dir=lib_dir, java=java,
                      cache_dir=tmp_path / "cache")
    expected = float(np.mean([_java_f(*c) for c in ALL_COUNTS]))
    assert got == {"spice": expected}
    (call,) = _calls(fake_spice)
    assert call["input"] == [{"image_id": i, "test": p, "refs": r}
                             for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES))]
    assert call["argv"][call["argv"].index("-cache") + 1] == str(tmp_path / "cache")


def test_jar_failure_is_an_error(lib_dir, tmp_path, fake_spice, monkeypatch):
    monkeypatch.setenv("FAKE_SPICE_FAIL", "1")
    with pytest.raises(RuntimeError, match="(?s)exit code 1.*NullPointerException"):
        spice_score(PREDICTIONS, REFERENCES, tokenize=False, lib_dir=lib_dir,
                    java=_fake_java(tmp_path), use_cache=False)


def test_metric_in_batches_equals_functional(lib_dir, tmp_path, fake_spice):
    metric = Spice(tokenize=False, lib_dir=lib_dir, java=_fake_java(tmp_path), use_cache=False)
    metric.update(PREDICTIONS[:3], REFERENCES[:3])
    metric.update(PREDICTIONS[3:], REFERENCES[3:])
    got = metric.compute()
    assert float(got["spice"]) == float(np.mean([_java_f(*c) for c in ALL_COUNTS]))
    (call,) = _calls(fake_spice)
    assert [r["test"] for r in call["input"]] == PREDICTIONS
    assert [r["refs"] for r in call["input"]] == REFERENCES
    assert "-cache" not in call["argv"]


def _ddp_worker(rank: int, world: int, init_file: str, lib: str, java: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    metric = Spice(tokenize=False, lib_dir=lib, java=java, use_cache=False)
    shard = [1, 3] if rank else [0, 2]
    metric.update([PREDICTIONS[i] for i in shard], [REFERENCES[i] for i in shard])
    Path(out, f"rank{rank}.txt").write_text(repr(float(metric.compute()["spice"])))
    dist.destroy_process_group()


def test_ddp_two_ranks_score_the_gathered_set(lib_dir, tmp_path, fake_spice):
    args = (2, str(tmp_path / "init"), str(lib_dir), _fake_java(tmp_path), str(tmp_path))
    torch.multiprocessing.start_processes(_ddp_worker, args=args, nprocs=2, start_method="fork")
    expected = float(np.mean([_java_f(*c) for c in ALL_COUNTS]))
    for rank in range(2):
        assert float((tmp_path / f"rank{rank}.txt").read_text()) == expected
    for call in _calls(fake_spice):  # each rank ran the jar on all 4 samples, rank 0's first
        assert [r["test"] for r in call["input"]] == [PREDICTIONS[i] for i in (0, 2, 1, 3)]


@pytest.mark.java
def test_tokenize_is_cocoevalcaps_ptb():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    records = spice_records(PREDICTIONS + ["A Dog, running!"], REFERENCES + [["The dog's ball."]])
    tok = PTBTokenizer()
    res = tok.tokenize({i: [{"caption": r["test"]}] for i, r in enumerate(
        spice_records(PREDICTIONS + ["A Dog, running!"], REFERENCES + [["x"]], tokenize=False))})
    gts = tok.tokenize({i: [{"caption": c} for c in refs]
                        for i, refs in enumerate(REFERENCES + [["The dog's ball."]])})
    assert [r["test"] for r in records] == [res[i][0] for i in range(5)]
    assert [r["refs"] for r in records] == [gts[i] for i in range(5)]
    assert records[-1] == {"image_id": 4, "test": "a dog running", "refs": ["the dog 's ball"]}


def _installed() -> str:
    try:
        locate_spice()
    except SpiceNotInstalledError as err:
        return str(err).splitlines()[0]
    return ""


@pytest.mark.java
@pytest.mark.skipif(bool(_installed()), reason=f"SPICE not installed: {_installed()}")
def test_real_jar_on_flickr8k(tmp_path):
    rows = [json.loads(line) for line in (DATA / "clip_flickr8k_captions.jsonl").open()][:5]
    preds, refs = [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]
    got = spice_score(preds, refs, cache_dir=tmp_path / "cache")["spice"]
    assert 0.0 < got < 1.0
    records = spice_records(preds, refs)
    install = locate_spice()
    per_image = parse_spice_output(spice_fn.run_spice(records, install, None), range(5))
    assert spice_mean(per_image) == got  # the cache never changes a score
