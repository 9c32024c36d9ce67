"""SPICE, computed by the official SPICE 1.0 jar exactly as pycocoevalcap 1.2 runs it.

Reference: Anderson et al., "SPICE: Semantic Propositional Image Caption Evaluation" (ECCV 2016)
and ``pycocoevalcap/spice/spice.py``. SPICE parses captions into scene graphs with Stanford
CoreNLP 3.6.0 and scores each image by the F-score of matched semantic tuples. Re-implementing
the parser is out of the question, so this module runs the real jar:

* input: a JSON list ``[{"image_id", "test", "refs"}]``, one entry per image;
* command: ``java -Xmx8G <spice-1.0.jar> in.json -cache <dir> -out out.json -subset -silent``;
* value: the mean over images of ``scores["All"]["f"]`` (``np.mean``, as pycocoevalcap).

The jar ships with pycocoevalcap but CoreNLP does not (pycocoevalcap downloads it on first use):
:func:`locate_spice` raises :class:`SpiceNotInstalledError` naming the missing files, where to put
them and how to fetch them (see ``docs/spice.md``). Java >= 15 needs two extra steps that
pycocoevalcap lacks (it fails there): ``--add-opens`` flags for the reference-parse cache (FST
serialisation) and a JavaScript engine (SPICE pretty-prints its output with Nashorn, removed from
Java 15). Both are handled by :func:`build_spice_command`.

This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmtrain.metrics.functional._inputs import check_answer_inputs

SPICE_JAR = "spice-1.0.jar"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
CORENLP_ZIP_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
MAVEN = "https://repo1.maven.org/maven2"
# Score categories of SPICE 1.0 output with -subset ("All" plus the tuple subsets of its
# SpiceScorer); only "All" makes the SPICE value.
SPICE_CATEGORIES = ("All", "Object", "Attribute", "Relation", "Cardinality", "Color", "Size")
# java.base packages the FST serialiser of SPICE's LMDB cache reflects into. Measured on Java 17
# and 25 with SPICE's own LmdbTupleDB: each one is needed, nothing else is.
_ADD_OPENS = ("java.lang", "java.util", "java.math", "java.net", "java.text",
              "java.util.concurrent")
_ENV_LIB = "VLMTRAIN_SPICE_LIB"
_ENV_JAVA = "VLMTRAIN_SPICE_JAVA"
_ENV_CACHE = "VLMTRAIN_SPICE_CACHE"


class SpiceNotInstalledError(FileNotFoundError):
    """The SPICE jar, its CoreNLP jars, Java or a JavaScript engine for Java >= 15 is missing."""


@dataclass(frozen=True)
class SpiceInstall:
    """Where SPICE lives: the jar and the folder holding CoreNLP (and optional Nashorn) jars."""

    jar: Path
    lib_dir: Path
    java: str
    java_version: int

    @property
    def classpath(self) -> list[Path]:
        # spice-1.0.jar's manifest lists lib/*.jar relative to itself; the lib folder's jars are
        # added explicitly so that CoreNLP may live in a separate (writable) folder and Nashorn
        # jars, which the manifest does not list, are found.
        return [self.jar, *sorted(self.lib_dir.glob("*.jar"))]


def pycocoevalcap_spice_dir() -> Path:
    """The ``pycocoevalcap/spice`` folder (holds ``spice-1.0.jar`` and ``lib/``), not imported."""
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise SpiceNotInstalledError("SPICE needs the pycocoevalcap package (pycocoevalcap==1.2)")
    return Path(list(spec.submodule_search_locations)[0]) / "spice"


def _missing_corenlp_message(lib_dir: Path, missing: list[str]) -> str:
    return (
        f"SPICE needs Stanford CoreNLP 3.6.0; missing in {lib_dir}: {', '.join(missing)}.\n"
        f"Put both jars in that folder, or in another folder named by ${_ENV_LIB} (or the "
        "lib_dir argument). On a machine with internet, either\n"
        f"  * download {CORENLP_ZIP_URL} (what pycocoevalcap's get_stanford_models() fetches) "
        "and copy stanford-corenlp-full-2015-12-09/stanford-corenlp-3.6.0{,-models}.jar, or\n"
        f"  * download {MAVEN}/edu/stanford/nlp/stanford-corenlp/3.6.0/stanford-corenlp-3.6.0.jar "
        "and .../stanford-corenlp-3.6.0-models.jar.\n"
        "See docs/spice.md."
    )


def _nashorn_message(java: str, version: int, lib_dir: Path) -> str:
    asm = ", ".join(f"{MAVEN}/org/ow2/asm/{a}/7.3.1/{a}-7.3.1.jar"
                    for a in ("asm", "asm-commons", "asm-tree", "asm-util", "asm-analysis"))
    return (
        f"SPICE 1.0 writes its output through the Nashorn JavaScript engine, which Java {version} "
        f"({java}) no longer ships (removed in Java 15): the jar would parse every caption and "
        "then fail with a NullPointerException. Either\n"
        f"  * point ${_ENV_JAVA} (or the java argument) at a Java 8-14 executable, or\n"
        f"  * put nashorn-core-15.4.jar ({MAVEN}/org/openjdk/nashorn/nashorn-core/15.4/"
        f"nashorn-core-15.4.jar) and its ASM jars ({asm}) in {lib_dir}.\n"
        "See docs/spice.md."
    )


def java_major_version(java: str) -> int:
    """Major version of a Java executable (8 for ``1.8``, 17 for ``17.0.2``).

    Raises:
        SpiceNotInstalledError: ``java`` cannot be run.
    """
    try:
        out = subprocess.run([java, "-XshowSettings:properties", "-version"],
                             capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        raise SpiceNotInstalledError(
            f"SPICE needs Java (8 or newer); cannot run {java!r}: {err}. Install a JRE or set "
            f"${_ENV_JAVA} to a java executable."
        ) from err
    match = re.search(r"java\.specification\.version = (\S+)", out.stderr + out.stdout)
    if match is None:
        raise SpiceNotInstalledError(
            f"cannot read the Java version of {java!r}: {out.stderr[-500:]}"
        )
    parts = match.group(1).split(".")
    return int(parts[1]) if parts[0] == "1" else int(parts[0])


def locate_spice(lib_dir: str | os.PathLike | None = None, java: str | None = None) -> SpiceInstall:
    """Find the SPICE jar, the CoreNLP jars and Java; check that they can run.

    Args:
        lib_dir: folder with ``stanford-corenlp-3.6.0.jar`` and
            ``stanford-corenlp-3.6.0-models.jar`` (and, for Java >= 15, the Nashorn/ASM jars).
            Default: ``$VLMTRAIN_SPICE_LIB``, else pycocoevalcap's ``spice/lib``.
        java: Java executable. Default: ``$VLMTRAIN_SPICE_JAVA``, else ``java``.

    Raises:
        SpiceNotInstalledError: with what is missing, where it goes and how to fetch it.
    """
    spice_dir = pycocoevalcap_spice_dir()
    jar = spice_dir / SPICE_JAR
    if not jar.is_file():
        raise SpiceNotInstalledError(
            f"{SPICE_JAR} not found at {jar}; reinstall pycocoevalcap==1.2"
        )
    lib = Path(lib_dir or os.environ.get(_ENV_LIB) or spice_dir / "lib").expanduser()
    missing = [name for name in CORENLP_JARS if not (lib / name).is_file()]
    if missing:
        raise SpiceNotInstalledError(_missing_corenlp_message(lib, missing))
    java = java or os.environ.get(_ENV_JAVA) or "java"
    version = java_major_version(java)
    if version >= 15 and not any(lib.glob("nashorn-core*.jar")):
        raise SpiceNotInstalledError(_nashorn_message(java, version, lib))
    return SpiceInstall(jar=jar, lib_dir=lib, java=java, java_version=version)


def build_spice_command(
    install: SpiceInstall, in_file: Path, out_file: Path, cache_dir: Path | None,
    memory: str = "8G",
) -> list[str]:
    """The java command line: pycocoevalcap's arguments, plus what Java >= 9 needs.

    ``-cp <jars> edu.anu.spice.SpiceScorer`` is ``-jar spice-1.0.jar`` (the manifest's main class
    and class path) with the lib folder's jars added; see :attr:`SpiceInstall.classpath`.
    """
    cmd = [install.java, f"-Xmx{memory}"]
    if install.java_version >= 9:  # the flag does not exist before Java 9
        cmd += [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in _ADD_OPENS]
    cmd += ["-cp", os.pathsep.join(str(p) for p in install.classpath), "edu.anu.spice.SpiceScorer",
            str(in_file)]
    if cache_dir is not None:
        cmd += ["-cache", str(cache_dir)]
    return cmd + ["-out", str(out_file), "-subset", "-silent"]


def default_cache_dir() -> Path:
    """``$VLMTRAIN_SPICE_CACHE``, else ``~/.cache/vlmtrain/spice``.

    pycocoevalcap caches inside its package folder, which may be read-only; the cache only
    stores parses of reference captions and never changes a score.
    """
    env = os.environ.get(_ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vlmtrain" / "spice"


def run_spice(
    records: list[dict], install: SpiceInstall, cache_dir: Path | None, memory: str = "8G",
    timeout: float | None = None,
) -> list[dict]:
    """Run the jar on ``[{"image_id", "test", "refs"}]`` and return its parsed output list."""
    with tempfile.TemporaryDirectory(prefix="vlmtrain_spice_") as tmp:
        in_file, out_file = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_file.write_text(json.dumps(records, indent=2), encoding="utf-8")
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = build_spice_command(install, in_file, out_file, cache_dir, memory)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        text = out_file.read_text(encoding="utf-8") if out_file.is_file() else ""
        if proc.returncode != 0 or not text.strip():
            raise RuntimeError(
                f"SPICE failed (exit code {proc.returncode}, output file "
                f"{'empty' if not text.strip() else 'written'}).\ncommand: {' '.join(cmd)}\n"
                f"stderr (end): {proc.stderr[-3000:]}"
            )
        return json.loads(text)


def parse_spice_output(results: list[dict], image_ids: Sequence) -> list[float]:
    """Per-image SPICE ("All" F-score) in the order of ``image_ids``.

    pycocoevalcap converts each ``f`` with ``float()`` (``null`` -> NaN) and averages with
    ``np.mean``, so one NaN makes the corpus value NaN. SPICE never writes NaN for "All" (the jar
    computes it with ``allowNan=false``: 0 when there are no tuples); only the sub-categories
    (Color, Size, ...) get ``null`` when the references have no tuple of that kind. A missing or
    ``null`` "All" score therefore means a broken output file and is an error here.

    Raises:
        ValueError: an image is missing from the output or its "All" F-score is not a number.
    """
    by_id = {item["image_id"]: item for item in results}
    scores = []
    for image_id in image_ids:
        item = by_id.get(image_id)
        if item is None:
            raise ValueError(f"SPICE output has no entry for image_id {image_id!r}")
        value = item.get("scores", {}).get("All", {}).get("f")
        if not isinstance(value, (int, float)) or value != value:
            raise ValueError(f"SPICE output for image_id {image_id!r}: 'All' f-score is {value!r}")
        scores.append(float(value))
    return scores


def spice_mean(per_image: Sequence[float]) -> float:
    """Corpus SPICE: ``np.mean`` over images, the reduction pycocoevalcap uses."""
    return float(np.mean(np.array(per_image)))


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """The PTB tokenisation COCOEvalCap applies before every scorer (pycocoevalcap's
    ``PTBTokenizer``: Stanford PTBTokenizer 3.4.1, lower-cased, punctuation dropped)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    if len(tokenized) != len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(tokenized)} lines for {len(texts)} texts")
    return [tokenized[i][0] for i in range(len(texts))]


def spice_records(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenize: bool = True
) -> list[dict]:
    """SPICE input entries ``{"image_id": i, "test": prediction, "refs": [references]}``."""
    if tokenize:
        flat = ptb_tokenize([*predictions, *(r for refs in references for r in refs)])
        predictions, pos, grouped = flat[: len(predictions)], len(predictions), []
        for refs in references:
            grouped.append(flat[pos : pos + len(refs)])
            pos += len(refs)
        references = grouped
    return [{"image_id": i, "test": p, "refs": list(r)}
            for i, (p, r) in enumerate(zip(predictions, references))]


def spice_score(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: bool = True,
    lib_dir: str | os.PathLike | None = None,
    java: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    memory: str = "8G",
    timeout: float | None = None,
) -> dict[str, float]:
    """Corpus SPICE of N predictions, each against its references.

    Args:
        predictions: N captions.
        references: N non-empty lists of reference captions.
        tokenize: PTB-tokenise first, as COCOEvalCap does before calling SPICE (the published
            COCO numbers); ``False`` passes the raw strings, as ``Spice.compute_score`` alone does.
        lib_dir: folder with the CoreNLP 3.6.0 jars (see :func:`locate_spice`).
        java: Java executable (default ``$VLMTRAIN_SPICE_JAVA`` or ``java``).
        cache_dir: reference-parse cache (default :func:`default_cache_dir`).
        use_cache: pass ``-cache`` as pycocoevalcap does; the cache never changes a score.
        memory: JVM heap (pycocoevalcap: 8G).
        timeout: seconds before the java process is killed (None: no limit).

    Returns:
        ``{"spice": mean over images of the "All" F-score}`` in [0, 1].

    Raises:
        SpiceNotInstalledError: jars, Java or (Java >= 15) Nashorn missing; checked first.
        ValueError: malformed inputs (names the record) or a broken SPICE output.
    """
    check_answer_inputs(predictions, references, "spice")
    install = locate_spice(lib_dir, java)  # before tokenising: fail fast on a missing install
    records = spice_records(predictions, references, tokenize)
    cache = None
    if use_cache:
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    results = run_spice(records, install, cache, memory, timeout)
    per_image = parse_spice_output(results, [r["image_id"] for r in records])
    return {"spice": spice_mean(per_image)}
