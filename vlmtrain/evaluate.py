"""Score a prediction file against references: ``python -m vlmtrain.evaluate``.

Examples::

    python -m vlmtrain.evaluate --task vqa --predictions preds.json \\
        --references v2_mscoco_val2014_annotations.json
    python -m vlmtrain.evaluate --task caption --predictions captions_results.json \\
        --references captions_val2014.json --metrics bleu_4 cider spice

Prints one JSON object ``{metric: value}`` (fractions in [0, 1]) on stdout; errors are one line on
stderr with exit status 2. This module and the answer metrics import neither torch nor
torchmetrics, so a VQA / DocVQA / n-gram caption evaluation starts fast; model-based metrics
(BERTScore, CLIPScore) import their stacks only when asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmtrain.errors import VLMTrainError
from vlmtrain.metrics.functional.vqa import DEFAULT_VERSION as VQA_DEFAULT_VERSION
from vlmtrain.metrics.functional.vqa import VERSIONS as VQA_VERSIONS

CAPTION_NGRAM = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
BERTSCORE = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
CLIPSCORE = ("clipscore", "refclipscore")
METRICS: dict[str, tuple[str, ...]] = {
    "caption": CAPTION_NGRAM + ("spice",) + BERTSCORE + CLIPSCORE,
    "vqa": ("vqa_accuracy", "exact_match", "f1"),
    "docvqa": ("anls", "exact_match", "f1"),
}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "caption": CAPTION_NGRAM,  # SPICE needs a slow Java run; BERTScore / CLIPScore need models
    "vqa": METRICS["vqa"],
    "docvqa": METRICS["docvqa"],
}
# (id key, text key) of a prediction record, and the key of the reference list, per task.
_PRED_KEYS = {"caption": ("image_id", "caption"), "vqa": ("question_id", "answer"),
              "docvqa": ("questionId", "answer")}
_REF_LIST_KEY = {"caption": "annotations", "vqa": "annotations", "docvqa": "data"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".JPG", ".JPEG", ".PNG")
_SHOWN_IDS = 20

_EPILOG = """\
file formats (ids are compared as strings: 42 and "42" are the same id):
  caption  predictions: COCO results  [{"image_id": 42, "caption": "a dog"}, ...]
           references:  COCO annotations {"annotations": [{"image_id": 42, "caption": ...}]}
                        or {"42": ["ref 1", "ref 2", ...]}
  vqa      predictions: [{"question_id": 1, "answer": "yes"}, ...]
           references:  VQA annotations {"annotations": [{"question_id": 1,
                        "answers": [{"answer": "yes"}, ...]}]} or {"1": ["yes", ...]}
  docvqa   predictions: [{"questionId": 7, "answer": "$1.50"}, ...]
           references:  DocVQA {"data": [{"questionId": 7, "answers": ["$1.50"]}]}
                        or {"7": ["$1.50"]}
metrics per task (default marked *):
  caption  bleu_1* bleu_2* bleu_3* bleu_4* meteor* rouge_l* cider* spice bertscore_precision
           bertscore_recall bertscore_f1 clipscore refclipscore (clipscore needs --images)
  vqa      vqa_accuracy* exact_match* f1*
  docvqa   anls* exact_match* f1*
values are the official ones as fractions (the official scripts print percentages). An empty
predicted string is scored as the official scripts score it (e.g. ANLS 1 against an empty
answer, SQuAD EM 1 / F1 0 when both normalise to ""). An empty reference list is an error, since
every official script crashes on one. A prediction id missing from the references (or the
reverse) is an error unless --allow-missing, which scores the ids present in both.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every error is one stderr line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise VLMTrainError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring and ``--help``)."""
    parser = _Parser(
        prog="python -m vlmtrain.evaluate",
        description="Score a prediction file with the official caption / VQA / DocVQA metrics "
        "and print a JSON object {metric: value}.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=sorted(METRICS))
    parser.add_argument("--predictions", required=True, type=Path, help="prediction JSON file")
    parser.add_argument("--references", required=True, type=Path, help="reference JSON file")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metric names, space or comma separated (default: see below)")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score the ids present in both files; warn on stderr with counts")
    parser.add_argument("--images", type=Path,
                        help="caption: image folder for clipscore/refclipscore; an image is "
                        "found by the references' COCO 'images' file_name, else as DIR/<id> or "
                        "DIR/<id>.<jpg|jpeg|png|webp|bmp|gif>")
    parser.add_argument("--bertscore-model", help="caption: BERTScore model name or path")
    parser.add_argument("--bertscore-num-layers", type=int,
                        help="caption: BERTScore layer (needed for models bert_score has no "
                        "default layer for, e.g. a local folder)")
    parser.add_argument("--clip-model", help="caption: CLIP model name or path for clipscore")
    parser.add_argument("--anls-threshold", type=float, default=0.5,
                        help="docvqa: per-question ANLS below this counts 0 (default 0.5)")
    parser.add_argument("--vqa-eval-version", default=VQA_DEFAULT_VERSION, choices=VQA_VERSIONS,
                        help="vqa: official vqaEval.py to follow: 2021 (default, current head "
                        "a013f00) or 2017 (the pre-fix script, to reproduce old numbers)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluator; returns the process exit status (0, or 2 on any input error)."""
    try:
        args = build_parser().parse_args(argv)
        scores = evaluate(args)
        text = json.dumps(scores, indent=2)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n", encoding="utf-8")
    except (VLMTrainError, ValueError, OSError, ImportError) as exc:
        # ImportError: a metric's optional stack (Java wrapper, BERT, CLIP) is not installed.
        message = " ".join(str(exc).split())  # one line, whatever the exception carried
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(text)
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """Load both files, align them by id and compute the requested metrics."""
    names = _metric_names(args.task, args.metrics)
    pred_obj = _load_json(args.predictions)
    ref_obj = _load_json(args.references)
    predictions = read_predictions(pred_obj, args.task, args.predictions)
    references = read_references(ref_obj, args.task, args.references)
    ids = align_ids(predictions, references, args.allow_missing)
    preds = [predictions[i] for i in ids]
    refs = [references[i] for i in ids]
    if args.task == "caption":
        scores = _caption_scores(names, ids, preds, refs, args, ref_obj)
    else:
        scores = _answer_scores(args.task, names, preds, refs, args.anls_threshold,
                                args.vqa_eval_version)
    return {name: float(scores[name]) for name in names}


def _metric_names(task: str, requested: Sequence[str] | None) -> list[str]:
    if not requested:
        return list(DEFAULT_METRICS[task])
    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS[task]]
    if unknown:
        raise VLMTrainError(
            f"unknown metric(s) for --task {task}: {', '.join(unknown)}; "
            f"valid: {', '.join(METRICS[task])}"
        )
    return list(dict.fromkeys(names))  # drop repeats, keep order


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as f:  # tolerate a BOM
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise VLMTrainError(f"{path} is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise VLMTrainError(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise VLMTrainError(f"cannot read {path}: {exc.strerror or exc}") from None


def _record_id(record: dict, key: str, where: str) -> str:
    if key not in record:
        raise VLMTrainError(f"{where} has no {key!r} key (keys: {', '.join(map(str, record))})")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise VLMTrainError(f"{where}: {key!r} must be an int or a string, got {value!r}")
    return str(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise VLMTrainError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    return value


def read_predictions(obj: Any, task: str, path: Path) -> dict[str, str]:
    """``{id: predicted text}`` from a list of ``{id_key, text_key}`` records (see --help)."""
    id_key, text_key = _PRED_KEYS[task]
    if not isinstance(obj, list):
        raise VLMTrainError(
            f"{path}: predictions must be a JSON list of {{{id_key!r}, {text_key!r}}} objects, "
            f"got a {type(obj).__name__}"
        )
    out: dict[str, str] = {}
    for i, rec in enumerate(obj):
        where = f"{path} record {i}"
        if not isinstance(rec, dict):
            raise VLMTrainError(f"{where} must be an object, got {type(rec).__name__}")
        rid = _record_id(rec, id_key, where)
        if rid in out:
            raise VLMTrainError(f"{path}: duplicate prediction for {id_key} {rid} (record {i})")
        if text_key not in rec:
            raise VLMTrainError(f"{where} ({id_key} {rid}) has no {text_key!r} key")
        out[rid] = _text(rec[text_key], f"{where} ({id_key} {rid}) {text_key!r}")
    return out


def read_references(obj: Any, task: str, path: Path) -> dict[str, list[str]]:
    """``{id: [reference texts]}`` from the task's official format or a ``{"<id>": [...]}`` map."""
    list_key = _REF_LIST_KEY[task]
    if isinstance(obj, dict) and isinstance(obj.get(list_key), list):
        return _read_official_references(obj[list_key], task, path)
    if not isinstance(obj, dict):
        raise VLMTrainError(
            f"{path}: references must be a JSON object ({{{list_key!r}: [...]}} or "
            f"{{\"<id>\": [texts]}}), got a {type(obj).__name__}"
        )
    out: dict[str, list[str]] = {}
    for rid, texts in obj.items():
        if not isinstance(texts, list):
            raise VLMTrainError(f"{path}: references of id {rid} must be a list of strings")
        out[rid] = [_text(t, f"{path}: reference {j} of id {rid}") for j, t in enumerate(texts)]
    return out


def _read_official_references(records: list, task: str, path: Path) -> dict[str, list[str]]:
    id_key = _PRED_KEYS[task][0]
    out: dict[str, list[str]] = {}
    for i, rec in enumerate(records):
        where = f"{path} {_REF_LIST_KEY[task]}[{i}]"
        if not isinstance(rec, dict):
            raise VLMTrainError(f"{where} must be an object, got {type(rec).__name__}")
        rid = _record_id(rec, id_key, where)
        if task == "caption":  # one caption per annotation, several annotations per image
            out.setdefault(rid, []).append(_text(rec.get("caption"), f"{where} 'caption'"))
            continue
        if rid in out:
            raise VLMTrainError(f"{path}: {id_key} {rid} appears twice in the references")
        answers = rec.get("answers")
        if not isinstance(answers, list):
            raise VLMTrainError(f"{where} ({id_key} {rid}) needs an 'answers' list")
        # VQA answers are {"answer": ...} objects; DocVQA answers are plain strings.
        out[rid] = [
            _text(a.get("answer") if isinstance(a, dict) else a, f"{where} answers[{j}]")
            for j, a in enumerate(answers)
        ]
    return out


def _id_list(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > _SHOWN_IDS else "")


def align_ids(
    predictions: dict[str, str], references: dict[str, list[str]], allow_missing: bool
) -> list[str]:
    """Ids to score, in prediction order; missing ids are an error unless ``allow_missing``."""
    no_ref = [i for i in predictions if i not in references]
    no_pred = [i for i in references if i not in predictions]
    if (no_ref or no_pred) and not allow_missing:
        parts = []
        if no_ref:
            parts.append(f"{len(no_ref)} prediction id(s) not in the references: "
                         f"{_id_list(no_ref)}")
        if no_pred:
            parts.append(f"{len(no_pred)} reference id(s) without a prediction: "
                         f"{_id_list(no_pred)}")
        raise VLMTrainError("; ".join(parts) + " (pass --allow-missing to score the ids in both)")
    ids = [i for i in predictions if i in references]
    if not ids:
        raise VLMTrainError("no id is present in both the predictions and the references")
    if no_ref or no_pred:
        print(
            f"warning: scoring {len(ids)} ids present in both files; ignoring {len(no_ref)} "
            f"prediction(s) without references and {len(no_pred)} reference(s) without a "
            "prediction",
            file=sys.stderr,
        )
    empty = [i for i in ids if not references[i]]
    if empty:
        raise VLMTrainError(f"empty reference list for id(s): {_id_list(empty)}")
    return ids


def _answer_scores(
    task: str, names: list[str], preds: list[str], refs: list[list[str]], threshold: float,
    vqa_version: str,
) -> dict[str, float]:
    scores: dict[str, float] = {}
    if "vqa_accuracy" in names:
        from vlmtrain.metrics.functional.vqa import vqa_accuracy

        scores.update(vqa_accuracy(preds, refs, vqa_version))
    if "anls" in names:
        from vlmtrain.metrics.functional.anls import anls

        scores.update(anls(preds, refs, threshold))
    if "exact_match" in names or "f1" in names:
        from vlmtrain.metrics.functional.squad import squad_scores

        scores.update(squad_scores(preds, refs))
    return scores


def _caption_scores(
    names: list[str],
    ids: list[str],
    preds: list[str],
    refs: list[list[str]],
    args: argparse.Namespace,
    ref_obj: Any,
) -> dict[str, float]:
    # Imported here: the caption stacks (Java tokeniser, BERT, CLIP) load only when asked for.
    scores: dict[str, float] = {}
    ngram = [n for n in names if n in CAPTION_NGRAM]
    if ngram:
        from vlmtrain.metrics.caption import caption_scores

        scores.update(caption_scores(preds, refs, metrics=tuple(ngram), tokenize=True))
    if "spice" in names:
        from vlmtrain.metrics.spice import spice_score

        scores.update(spice_score(preds, refs))
    if any(n in BERTSCORE for n in names):
        from vlmtrain.metrics.bertscore import bert_score

        options: dict[str, Any] = {}
        if args.bertscore_model:
            options["model_type"] = args.bertscore_model
        if args.bertscore_num_layers is not None:
            options["num_layers"] = args.bertscore_num_layers
        scores.update(bert_score(preds, refs, **options))
    if any(n in CLIPSCORE for n in names):
        images = find_images(ids, args.images, ref_obj)  # before the CLIP import: fail fast
        from vlmtrain.metrics.clipscore import clip_score

        options = {"model_name_or_path": args.clip_model} if args.clip_model else {}
        with_refs = refs if "refclipscore" in names else None
        scores.update(clip_score(images, preds, references=with_refs, **options))
    return scores


def find_images(ids: list[str], folder: Path | None, ref_obj: Any) -> list[str]:
    """Image path of each id (see ``--images`` in ``--help``)."""
    if folder is None:
        raise VLMTrainError("clipscore/refclipscore need the images: pass --images DIR")
    if not folder.is_dir():
        raise VLMTrainError(f"--images {folder} is not a folder")
    file_names: dict[str, str] = {}
    if isinstance(ref_obj, dict) and isinstance(ref_obj.get("images"), list):
        file_names = {str(im["id"]): str(im["file_name"]) for im in ref_obj["images"]
                      if isinstance(im, dict) and "id" in im and "file_name" in im}
    paths, missing = [], []
    for rid in ids:
        candidates = [file_names[rid]] if rid in file_names else []
        candidates += [rid] + [rid + s for s in _IMAGE_SUFFIXES]
        found = next((folder / c for c in candidates if (folder / c).is_file()), None)
        if found is None:
            missing.append(rid)
        else:
            paths.append(str(found))
    if missing:
        raise VLMTrainError(f"no image in {folder} for {len(missing)} id(s): {_id_list(missing)}")
    return paths


if __name__ == "__main__":
    sys.exit(main())
