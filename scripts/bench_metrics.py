"""Caption metrics: vlmtrain against pycocoevalcap 1.2, timed in the same run.

Data: Flickr8k leave-one-out (candidate = caption 0, references = captions 1-4; 8,092 images).
Two comparisons:

1. in-process, per step: PTB tokenization, BLEU-1..4, ROUGE-L, CIDEr-D and METEOR, each run by
   pycocoevalcap and by vlmtrain on the same input; values side by side with an equality check
   (BLEU / ROUGE-L / CIDEr-D within 1e-9, METEOR and tokens exactly), times and the speed-up;
2. whole process: a fresh ``python`` running pycocoevalcap's pipeline (PTBTokenizer, Bleu,
   Meteor, Rouge, Cider) against a fresh ``python -m vlmtrain.evaluate --task caption`` on the same
   COCO-format files: wall time, CPU time and peak resident memory of each process tree.

Usage::

    scripts/env.sh python scripts/bench_metrics.py            # full run (a few minutes)
    scripts/env.sh python scripts/bench_metrics.py --repeat 3 # whole process: best of 3 each
    scripts/env.sh python scripts/bench_metrics.py --limit 1000 --skip-process

The machine's load average is printed before and after: on a shared machine, other jobs slow
both sides (the JVMs most), so compare ratios from the same run. vlmtrain's one-time METEOR
paraphrase index (see ``vlmtrain/metrics/functional/_meteor_table.py``) is built before timing
starts and its build time printed. Each vlmtrain step runs from scratch (what a caller of that one
function pays), except the row "tokenize+BLEU+ROUGE-L+CIDEr-D": there the three metrics run one
after the other on the same tokens and the later ones reuse the set that BLEU encoded (as
pycocoevalcap's scorers share its tokenized dicts); "... each from scratch" sums the separate
steps, "... caption_scores" is the one-call pipeline. Exit status 1 if a value differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# shared/ sits beside the repository checkout.
DATA = Path(os.environ.get(
    "VLMTRAIN_FLICKR8K_CAPTIONS",
    Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k_captions.jsonl",
))
NGRAM_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")
NGRAM_FAMILIES = ("bleu", "rouge_l", "cider")
TOLERANCE = 1e-9
TARGETS = {"tokenize+BLEU+ROUGE-L+CIDEr-D": 10.0, "METEOR": 2.0, "whole process": 5.0}
# The vlmtrain side of the whole-process comparison; {python}, {pred}, {ref} are filled in.
VLMTRAIN_CMD = ["{python}", "-m", "vlmtrain.evaluate", "--task", "caption",
                "--predictions", "{pred}", "--references", "{ref}"]
# The pycocoevalcap side: COCOEvalCap.evaluate() without SPICE, on the same files.
COCO_SCRIPT = r"""
import json, sys
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.cider.cider import Cider
preds = json.load(open(sys.argv[1]))
anns = json.load(open(sys.argv[2]))["annotations"]
gts, res = {}, {}
for a in anns:
    gts.setdefault(a["image_id"], []).append({"caption": a["caption"]})
for p in preds:
    res[p["image_id"]] = [{"caption": p["caption"]}]
tok = PTBTokenizer()
gts, res = tok.tokenize(gts), tok.tokenize(res)
bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
out = dict(zip(["bleu_1", "bleu_2", "bleu_3", "bleu_4"], bleu))
out["meteor"] = Meteor().compute_score(gts, res)[0]
out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
out["cider"] = float(Cider().compute_score(gts, res)[0])
print(json.dumps(out))
"""


@dataclass
class Row:
    """One line of the result table."""

    name: str
    coco: Any
    ours: Any
    coco_s: float
    ours_s: float
    equal: bool | None  # None: nothing to compare (a sum row)


def load(limit: int | None) -> tuple[list[str], list[list[str]]]:
    """Leave-one-out Flickr8k: (candidates, references)."""
    rows = [json.loads(line) for line in DATA.open(encoding="utf-8")][:limit]
    return [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _close(values: list[float], others: list[float]) -> bool:
    return all(abs(a - b) <= TOLERANCE for a, b in zip(values, others, strict=True))


def coco_steps(preds: list[str], refs: list[list[str]]) -> dict[str, tuple[Any, float]]:
    """pycocoevalcap, step by step, as COCOEvalCap.evaluate() runs it."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    def tokenize() -> tuple[dict, dict]:
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(refs)})
        return gts, tok.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})

    def meteor() -> float:
        scorer = Meteor()  # starts the JVM: part of the cost
        value = scorer.compute_score(gts, res)[0]
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
        return value

    out = {"tokenize": timed(tokenize)}
    gts, res = out["tokenize"][0]
    out["bleu"] = timed(lambda: Bleu(4).compute_score(gts, res, verbose=0)[0])
    out["rouge_l"] = timed(lambda: float(Rouge().compute_score(gts, res)[0]))
    out["cider"] = timed(lambda: float(Cider().compute_score(gts, res)[0]))
    out["meteor"] = timed(meteor)
    return out


def our_steps(preds: list[str], refs: list[list[str]]) -> dict[str, tuple[Any, float]]:
    """vlmtrain, the same steps.

    Each step starts from scratch (the remembered tokenization and encoding of the previous call
    are dropped first), except "ngram_row": BLEU, ROUGE-L and CIDEr-D called one after the other
    on the same tokens, where the later calls reuse the set the first one encoded, as
    pycocoevalcap's scorers reuse its tokenized dicts.
    """
    from vlmtrain.metrics.caption import caption_scores
    from vlmtrain.metrics.functional._captions import forget_shared_sets
    from vlmtrain.metrics.functional.bleu import bleu
    from vlmtrain.metrics.functional.cider import cider_d
    from vlmtrain.metrics.functional.meteor import meteor
    from vlmtrain.metrics.functional.rouge import rouge_l
    from vlmtrain.metrics.ptb import tokenize, tokenize_groups

    def fresh(fn: Callable[[], Any]) -> tuple[Any, float]:
        forget_shared_sets()
        return timed(fn)

    out = {"tokenize": fresh(lambda: (tokenize_groups(refs), tokenize(preds)))}
    trefs, tpreds = out["tokenize"][0]
    steps = {"bleu": lambda: list(bleu(tpreds, trefs, tokenize=False).values()),
             "rouge_l": lambda: rouge_l(tpreds, trefs, tokenize=False)["rouge_l"],
             "cider": lambda: cider_d(tpreds, trefs, tokenize=False)["cider"]}
    for key, step in steps.items():
        out[key] = fresh(step)
    out["ngram_row"] = fresh(lambda: [step() for step in steps.values()])
    out["meteor"] = fresh(lambda: meteor(tpreds, trefs, tokenize=False)["meteor"])
    out["ngram_suite"] = fresh(lambda: caption_scores(preds, refs, metrics=NGRAM_FAMILIES))
    out["suite"] = fresh(lambda: caption_scores(preds, refs))
    forget_shared_sets()
    return out


def in_process_rows(preds: list[str], refs: list[list[str]]) -> list[Row]:
    """Run both sides step by step; pycocoevalcap first for every step."""
    coco = coco_steps(preds, refs)
    ours = our_steps(preds, refs)
    gts, res = coco["tokenize"][0]
    trefs, tpreds = ours["tokenize"][0]
    tokens_equal = (tpreds == [res[i][0] for i in range(len(preds))]
                    and trefs == [gts[i] for i in range(len(refs))])
    rows = [Row("tokenize (PTB)", f"{len(preds) + sum(map(len, refs))} captions", "same" if
                tokens_equal else "DIFFERENT", coco["tokenize"][1], ours["tokenize"][1],
                tokens_equal)]
    for name, key in (("BLEU-1..4", "bleu"), ("ROUGE-L", "rouge_l"), ("CIDEr-D", "cider")):
        c, o = coco[key][0], ours[key][0]
        c, o = (list(c), list(o)) if key == "bleu" else ([c], [o])
        rows.append(Row(name, c, o, coco[key][1], ours[key][1], _close(c, o)))
    keys = ("tokenize", "bleu", "rouge_l", "cider")
    coco_ngram = sum(coco[k][1] for k in keys)
    c, o = coco["meteor"][0], ours["meteor"][0]
    want = dict(zip(NGRAM_KEYS[:4], coco["bleu"][0]), meteor=c, rouge_l=coco["rouge_l"][0],
                cider=coco["cider"][0])
    row = ours["ngram_row"][0]
    row_equal = _close([*row[0], row[1], row[2]], [want[k] for k in NGRAM_KEYS])
    rows.append(Row("tokenize+BLEU+ROUGE-L+CIDEr-D", "", "same" if row_equal else "DIFFERENT",
                    coco_ngram, ours["tokenize"][1] + ours["ngram_row"][1], row_equal))
    rows.append(Row("  ... each from scratch", "", "", coco_ngram,
                    sum(ours[k][1] for k in keys), None))
    got = ours["ngram_suite"][0]
    ngram_equal = _close([got[k] for k in NGRAM_KEYS], [want[k] for k in NGRAM_KEYS])
    rows.append(Row("  ... caption_scores", "", "same" if ngram_equal else "DIFFERENT",
                    coco_ngram, ours["ngram_suite"][1], ngram_equal))
    rows.append(Row("METEOR", [c], [o], coco["meteor"][1], ours["meteor"][1], c == o))
    suite = ours["suite"][0]
    suite_equal = suite["meteor"] == c and _close([suite[k] for k in NGRAM_KEYS],
                                                  [want[k] for k in NGRAM_KEYS])
    rows.append(Row("all five (caption_scores)", "", "same" if suite_equal else "DIFFERENT",
                    sum(v[1] for v in coco.values()), ours["suite"][1], suite_equal))
    return rows


def process_rows(
    preds: list[str], refs: list[list[str]], workdir: Path, repeat: int = 1
) -> list[Row]:
    """Whole process: pycocoevalcap's pipeline vs ``python -m vlmtrain.evaluate``.

    With ``repeat`` > 1 the two commands alternate ``repeat`` times and each side keeps its
    fastest run (wall time; its CPU time and memory come from that run), so that a burst of
    other work on a shared machine hits neither side alone.
    """
    pred_file, ref_file = workdir / "predictions.json", workdir / "references.json"
    pred_file.write_text(json.dumps([{"image_id": i, "caption": p} for i, p in enumerate(preds)]))
    anns = [{"image_id": i, "caption": c} for i, r in enumerate(refs) for c in r]
    ref_file.write_text(json.dumps({"annotations": anns}))
    coco_cmd = [sys.executable, "-c", COCO_SCRIPT, str(pred_file), str(ref_file)]
    ours_cmd = [a.format(python=sys.executable, pred=pred_file, ref=ref_file)
                for a in VLMTRAIN_CMD]
    runs: dict[str, list[tuple[dict, float, float, float]]] = {"coco": [], "ours": []}
    for i in range(repeat):
        for side in ("coco", "ours") if i % 2 == 0 else ("ours", "coco"):
            runs[side].append(_measured(coco_cmd if side == "coco" else ours_cmd))
    coco, ours = (min(runs[side], key=lambda run: run[1]) for side in ("coco", "ours"))
    equal = coco[0]["meteor"] == ours[0]["meteor"] and _close(
        [coco[0][k] for k in NGRAM_KEYS], [ours[0][k] for k in NGRAM_KEYS])
    equal = equal and all(run[0] == runs["ours"][0][0] for run in runs["ours"])
    name = "whole process" if repeat == 1 else f"whole process (best of {repeat})"
    rows = [Row(name, "", "same" if equal else "DIFFERENT", coco[1], ours[1], equal),
            Row("  CPU time (user+sys) [s]", f"{coco[2]:.1f}", f"{ours[2]:.1f}", coco[2],
                ours[2], None),
            Row("  peak RSS [MB]", f"{coco[3]:.0f}", f"{ours[3]:.0f}", coco[3], ours[3], None)]
    return rows


def _measured(cmd: list[str]) -> tuple[dict, float, float, float]:
    """Run ``cmd``; (JSON output, wall s, CPU s of the tree, peak RSS MB of one process in it).

    ``os.wait4`` gives the child's own rusage, which includes its reaped children (the JVMs):
    CPU times add up, ``ru_maxrss`` is the largest single process.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err[-2000:]!r}")
    text = out.decode()
    return (json.loads(text[text.index("{"):]), wall, usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024)


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(f"{v:.5f}" for v in value)
    return str(value)


def print_table(rows: list[Row]) -> None:
    print(f"{'step':32s} {'pycocoevalcap':>36s} {'vlmtrain':>36s} {'coco s':>8s} "
          f"{'ours s':>8s} {'speed-up':>8s}  equal  target")
    for r in rows:
        ratio = r.coco_s / r.ours_s if r.ours_s > 0 else float("inf")
        target = TARGETS.get(r.name.split(" (best of")[0])
        verdict = "" if target is None else (f">={target:g}x " + ("met" if ratio >= target
                                                                  else "NOT met"))
        equal = {None: "", True: "yes", False: "NO"}[r.equal]
        if r.name.startswith("  ") and isinstance(r.coco, str) and r.coco:  # resource lines
            print(f"{r.name:32s} {_fmt(r.coco):>36s} {_fmt(r.ours):>36s}")
            continue
        print(f"{r.name:32s} {_fmt(r.coco):>36s} {_fmt(r.ours):>36s} {r.coco_s:8.2f} "
              f"{r.ours_s:8.2f} {ratio:7.2f}x  {equal:5s}  {verdict}")


def warm_caches() -> None:
    """Read the jars' data once so that neither side pays the first disk read, and make sure
    vlmtrain's one-time paraphrase-table index exists (its build time is printed, not counted)."""
    import pycocoevalcap

    from vlmtrain.metrics.functional._meteor_index import cache_dir, load_index

    root = Path(next(iter(pycocoevalcap.__path__)))
    for path in [root / "meteor" / "data" / "paraphrase-en.gz", *root.rglob("*.jar")]:
        path.read_bytes()
    value, seconds = timed(lambda: load_index(root / "meteor" / "data" / "paraphrase-en.gz"))
    state = "ready" if value is not None else "UNUSABLE (full table used)"
    print(f"METEOR paraphrase index in {cache_dir()}: {state} ({seconds:.1f} s; one-time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--skip-process", action="store_true", help="no whole-process runs")
    parser.add_argument("--repeat", type=int, default=1,
                        help="whole-process runs per side, alternating (the fastest counts)")
    args = parser.parse_args(argv)
    preds, refs = load(args.limit)
    print(f"{len(preds)} images, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    warm_caches()
    rows = in_process_rows(preds, refs)
    if not args.skip_process:
        with tempfile.TemporaryDirectory() as tmp:
            rows += process_rows(preds, refs, Path(tmp), args.repeat)
    print_table(rows)
    print(f"load average after: {os.getloadavg()}")
    return 0 if all(r.equal is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
