"""METEOR 1.5 of a caption set, equal to pycocoevalcap 1.2 ``Meteor`` (the same jar, same answer).

Reference: pycocoevalcap ``meteor/meteor.py`` runs
``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`` (in the jar's folder, next to
``data/paraphrase-en.gz``) and, for each image in turn, writes
``SCORE ||| ref_1 ||| ... ||| ref_k ||| hyp`` and waits for the line of sufficient statistics
(23 numbers) before sending the next image; it ends with one ``EVAL ||| stats_1 ||| ... |||
stats_N`` line, reads N per-image scores and then the corpus score. The only text cleaning is on
the hypothesis: ``hyp.replace("|||", "").replace("  ", " ")`` (no lower-casing in Python; ``-norm``
makes the jar lower-case and normalise punctuation). In the COCO evaluation the text has been
PTB-tokenized first.

What differs here (same numbers, less work and waiting):

* the text is normalised in Python by an exact port of the jar's ``-norm`` normaliser
  (``_meteor_norm``) and the jar runs with ``-lower`` (lower-case only): it aligns the very same
  strings, and skips the normaliser's regular expressions, ~40% of its scoring time;
* a one-shot scorer loads a copy of the paraphrase table restricted to the entries that can
  match in the evaluated set (one phrase in an image's hypothesis, the other in one of its
  references: ~3,700 of 5.3 million on Flickr8k): the JVM starts in under a second instead of
  ~15 s and its paraphrase stage checks far fewer candidates; why this cannot change a match is
  explained in ``_meteor_table``. The JVMs start first and read that table from a named pipe,
  so they boot while Python normalises the captions and cuts the table;
* the JVM runs with the serial collector and the C1 compiler only (see ``_meteor_jvm``): less
  memory, ~40% less CPU; Java arithmetic does not depend on either;
* SCORE lines go out in batches of up to 128 (one pipe round trip per batch, not per image), from
  a background thread, so the caller can compute other metrics while the JVM loads and scores;
* several JVMs (one per core on large sets, :func:`default_jvms`) take batches from a shared
  queue; the statistics are put back in image order before summing, so the result does not
  depend on the split;
* the corpus aggregate is summed in Python and sent as ONE ``EVAL`` line, instead of the jar
  re-parsing every image's statistics with ``java.util.Scanner`` (seconds for thousands of
  images). The sum follows the jar's ``MeteorStats.addStats`` exactly: every field is added in
  image order, except that ``chunks`` is skipped for an image whose hypothesis and references
  matched completely in one chunk. The jar then computes the score from the summed statistics.
* A full-table :class:`MeteorScorer` can stay open across evaluations (e.g. every validation
  epoch, :func:`shared_scorer`), which saves the JVM start and the table load after the first.

Tests compare with pycocoevalcap on 300 Flickr8k images and edge cases (exact equality), and
``scripts/bench_metrics.py`` on all 8,092.

Line breaks (``\\n``, ``\\r``) inside a caption would desynchronise the jar's line protocol
(pycocoevalcap hangs or misreads); they are replaced by spaces (PTB-tokenized text has none).
This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from vlmtrain.metrics.functional._captions import prepare_captions
from vlmtrain.metrics.functional._meteor_index import index_ready
from vlmtrain.metrics.functional._meteor_jvm import (
    METEOR_JAR,
    PARAPHRASES,
    MeteorInstall,
    MeteorJvm,
    MeteorJvmError,
    MeteorNotInstalledError,
    locate_meteor,
)
from vlmtrain.metrics.functional._meteor_norm import (
    nonbreaking_prefixes,
    normalize_score_lines,
    score_lines,
)
from vlmtrain.metrics.functional._meteor_table import Restriction, restrict

__all__ = ["MeteorJvmError", "MeteorNotInstalledError", "MeteorScorer", "aggregate_stats",
           "default_jvms", "meteor", "score_lines", "shared_scorer", "use_restricted_table"]

STATS_LENGTH = 23  # MeteorStats.toString(): 4 lengths, 4 stages x 4 match counts, 3 chunk fields
_CHUNKS = 20
# Images per JVM: with the restricted table a JVM starts in ~0.4 s of CPU, which another JVM
# repays from about a thousand images on (each scores ~2,000 images per second of CPU).
_IMAGES_PER_JVM = 1000
_MAX_JVMS = 8
# Sets from this size on build the one-time paraphrase index if missing (smaller ones use it only
# when it exists): the build (10-20 s) is repaid after a few such runs, not by one small set.
_INDEX_MIN_IMAGES = 2000
# SCORE lines per batch: their answers (~100 bytes each) must fit in a 64 KiB pipe buffer.
_BATCH = 128


def aggregate_stats(stats: Sequence[str]) -> str:
    """Corpus statistics: the sum the jar's ``EVAL`` forms with ``MeteorStats.addStats``.

    Args:
        stats: N lines of 23 numbers from ``SCORE`` (image order).

    Returns:
        One line of 23 numbers for ``EVAL ||| <line>`` (Python ``repr`` floats, which Java
        parses back to the same doubles).

    Raises:
        MeteorJvmError: a line is not 23 numbers.
    """
    total = [0.0] * STATS_LENGTH
    for i, line in enumerate(stats):
        try:
            v = [float(x) for x in line.split()]
        except ValueError:
            v = []
        if len(v) != STATS_LENGTH:
            raise MeteorJvmError(f"METEOR jar answered image {i} with {line!r}, not 23 numbers")
        # MeteorStats(String) sums the stage matches in this order (test: content, function per
        # stage; reference likewise) and addStats skips the chunks of a one-chunk perfect match.
        test_total = ref_total = 0.0
        for stage in range(4):
            test_total += v[4 + 4 * stage]
            ref_total += v[5 + 4 * stage]
            test_total += v[6 + 4 * stage]
            ref_total += v[7 + 4 * stage]
        perfect = test_total == v[0] and ref_total == v[1] and v[_CHUNKS] == 1.0
        for k in range(STATS_LENGTH):
            if not (k == _CHUNKS and perfect):
                total[k] += v[k]
    return " ".join(repr(x) for x in total)


class MeteorJob:
    """METEOR of one set, being scored in the background (see :meth:`MeteorScorer.submit`).

    The SCORE lines are cut into batches that the JVMs take from a shared queue, one thread per
    JVM: a JVM that finished loading first (or runs on a less busy core) takes more batches.
    """

    def __init__(self, scorer: MeteorScorer, lines: list[str]) -> None:
        self._scorer = scorer
        lines = [(line + "\n").encode("utf-8") for line in lines]
        size = max(1, min(_BATCH, -(-len(lines) // (4 * len(scorer.jvms)))))
        self._batches = [lines[i : i + size] for i in range(0, len(lines), size)]
        self._results: list[list[str] | None] = [None] * len(self._batches)
        self._next = iter(range(len(self._batches)))
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._work, args=(jvm,), daemon=True)
                         for jvm in scorer.jvms]
        for thread in self._threads:
            thread.start()

    def _work(self, jvm: MeteorJvm) -> None:
        try:
            while not self._errors:
                with self._lock:
                    index = next(self._next, None)
                if index is None:
                    return
                self._results[index] = jvm.score(self._batches[index])
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._errors.append(exc)

    def result(self) -> float:
        """Wait for the statistics, then the corpus METEOR from one ``EVAL``."""
        for thread in self._threads:
            thread.join()
        self._scorer.busy = False
        if self._errors:
            raise self._errors[0]
        stats = [s for batch in self._results for s in batch or ()]
        return self._scorer.jvms[0].evaluate(aggregate_stats(stats))


class MeteorScorer:
    """One or more long-lived METEOR 1.5 JVMs (``-stdio -l en -lower`` fed normalised text).

    The JVMs start in the constructor and load their paraphrase table in the background, so
    creating the scorer early overlaps that load with other work. Close it (``with`` block,
    :meth:`close`); a scorer that is garbage-collected or still open at interpreter exit closes
    its JVMs too.

    Args:
        jvms: number of JVMs taking batches in parallel (each holds ~0.3-0.6 GB).
        java: Java executable. Default: ``$VLMTRAIN_JAVA``, else ``java`` on the PATH.
        restrict_to: the captions this scorer will score (``(predictions, references)``, as
            given to :meth:`submit`). The JVMs then load only the paraphrase-table entries that
            can match in these captions (same statistics, start in under a second instead of
            ~15 s, see ``_meteor_table``), and :meth:`submit` refuses captions that need other
            entries. None: the full table, any captions.

    Raises:
        MeteorNotInstalledError: Java or the METEOR jar (pycocoevalcap) is missing.

    Example:
        >>> with MeteorScorer() as scorer:  # doctest: +SKIP
        ...     scorer.score(["a dog runs"], [["a dog is running"]])
    """

    def __init__(
        self,
        jvms: int = 1,
        java: str | None = None,
        restrict_to: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
    ) -> None:
        if jvms < 1:
            raise ValueError(f"meteor: jvms must be >= 1, got {jvms}")
        install = locate_meteor(java)
        self.busy = False
        self.jvms: list[MeteorJvm] = []
        self._folder = tempfile.mkdtemp(prefix="vlmtrain-meteor-") if restrict_to else None
        self._finalizer = weakref.finalize(self, _close_all, self.jvms, self._folder)
        self._prefixes = nonbreaking_prefixes(install.jar_dir / METEOR_JAR)
        self._restriction: Restriction | None = None  # None: the full table
        self._prepared: tuple[list[str], list[str]] = ([], [])  # (raw, normalised) SCORE lines
        try:
            if restrict_to is None:
                self.jvms.extend(MeteorJvm(install) for _ in range(jvms))
            else:
                self._start_restricted(install, jvms, restrict_to)
        except BaseException:
            self.close()
            raise

    def _start_restricted(
        self,
        install: MeteorInstall,
        jvms: int,
        restrict_to: tuple[Sequence[str], Sequence[Sequence[str]]],
    ) -> None:
        """Start JVMs that load the table restricted to ``restrict_to``.

        Where named pipes exist the JVMs start first, reading their table from a pipe: they boot
        (~0.4 s) while Python normalises the captions and cuts the table, then a background
        thread per JVM writes it. Elsewhere the table goes to a file before they start.
        """
        folder, full = Path(self._folder or "."), install.jar_dir / PARAPHRASES
        pipes = _named_pipes(folder, jvms)
        if pipes:
            self.jvms.extend(MeteorJvm(install, pipe) for pipe in pipes)
        raw = score_lines(*restrict_to)
        lines, groups = normalize_score_lines(raw, self._prefixes)
        self._prepared = (raw, lines)
        self._restriction = restrict(full, groups)
        data = self._restriction.data if self._restriction else None
        if pipes:
            payload = data if data is not None else full.read_bytes()
            for jvm, pipe in zip(self.jvms, pipes):
                threading.Thread(target=jvm.feed_table, args=(pipe, payload), daemon=True).start()
            return
        path = None
        if data is not None:
            path = folder / "paraphrase-restricted.gz"
            path.write_bytes(data)
        self.jvms.extend(MeteorJvm(install, path) for _ in range(jvms))

    @property
    def usable(self) -> bool:
        """True while every JVM runs and belongs to this process."""
        return bool(self.jvms) and all(jvm.usable for jvm in self.jvms)

    def submit(
        self, predictions: Sequence[str], references: Sequence[Sequence[str]]
    ) -> MeteorJob:
        """Start scoring already prepared captions; returns at once (``.result()`` waits)."""
        if not self.jvms:
            raise RuntimeError("meteor: this MeteorScorer is closed")
        if self.busy:
            raise RuntimeError("meteor: call .result() on the previous job before submitting")
        raw = score_lines(predictions, references)
        if raw == self._prepared[0]:
            lines = self._prepared[1]
        else:
            lines, groups = normalize_score_lines(raw, self._prefixes)
            if self._restriction is not None and not self._restriction.covers(groups):
                raise ValueError(
                    "meteor: this MeteorScorer's paraphrase table was restricted to other "
                    "captions (restrict_to) and lacks paraphrases these need; create one for "
                    "these captions, or one with restrict_to=None")
        self.busy = True
        return MeteorJob(self, lines)

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR of already prepared (e.g. PTB-tokenized) captions."""
        return self.submit(predictions, references).result()

    def close(self) -> None:
        """Stop the JVMs and delete the restricted table (idempotent)."""
        self._finalizer()

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def use_restricted_table(n_images: int) -> bool:
    """Whether a one-shot scorer for ``n_images`` should load a restricted table: always when the
    one-time index exists, else only for sets large enough to be worth building it."""
    if n_images >= _INDEX_MIN_IMAGES:
        return True
    try:
        return index_ready(locate_meteor_table())
    except OSError:
        return False


def locate_meteor_table() -> Path:
    """The jar's full paraphrase table (``data/paraphrase-en.gz`` next to it)."""
    return locate_meteor().jar_dir / PARAPHRASES


def _named_pipes(folder: Path, n: int) -> list[Path] | None:
    """``n`` named pipes in ``folder``; None where the platform or file system has none."""
    if not hasattr(os, "mkfifo"):
        return None
    pipes = [folder / f"paraphrase-{k}.gz" for k in range(n)]
    try:
        for pipe in pipes:
            os.mkfifo(pipe)
    except OSError:
        return None
    return pipes


def _close_all(jvms: list[MeteorJvm], folder: str | None = None) -> None:
    for jvm in jvms:
        jvm.close()
    jvms.clear()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


_SHARED: dict[tuple[int, str | None], MeteorScorer] = {}


def shared_scorer(jvms: int = 1, java: str | None = None) -> MeteorScorer:
    """A process-wide :class:`MeteorScorer` that stays open between calls (closed at exit).

    For repeated evaluations (every validation epoch): the JVM start and paraphrase-table load
    are paid once. A scorer inherited through ``fork`` or whose JVM died is replaced.
    """
    key = (jvms, java)
    scorer = _SHARED.get(key)
    if scorer is None or not scorer.usable:
        scorer = _SHARED[key] = MeteorScorer(jvms, java)
    return scorer


def default_jvms(n_images: int) -> int:
    """JVMs worth starting: one per 1,000 images, at most one per usable core (and 8).

    With a restricted table each JVM starts in ~0.4 s of CPU, then the JVMs share the scoring:
    on 2 idle cores two JVMs score Flickr8k (8,092 images) in about half the time of one.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, _MAX_JVMS, n_images // _IMAGES_PER_JVM))


def meteor(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
    jvms: int | None = None,
    java: str | None = None,
    scorer: MeteorScorer | None = None,
    restrict_paraphrases: bool = True,
) -> dict[str, float]:
    """Corpus METEOR 1.5 (pycocoevalcap ``Meteor``: the same jar and command).

    Args:
        predictions: N candidate captions, one per image.
        references: N non-empty lists of reference captions.
        tokenize: PTB-tokenize first, as the COCO caption evaluation does.
        jvms: JVMs to spread the work over (default: :func:`default_jvms`). Ignored with
            ``scorer``.
        java: Java executable (default ``$VLMTRAIN_JAVA`` or ``java``). Ignored with ``scorer``.
        scorer: an open :class:`MeteorScorer` to reuse (it stays open); default: a new one,
            closed before returning.
        restrict_paraphrases: let a new scorer load only the paraphrase-table entries that can
            match these captions (same value, faster; see :class:`MeteorScorer`), when the
            one-time table index exists or the set is large enough to build it (see
            :func:`use_restricted_table`).

    Returns:
        ``{"meteor": float}`` in [0, 1].

    Raises:
        MeteorNotInstalledError: no Java runtime or no METEOR jar.
        MeteorJvmError: the JVM died or answered something unexpected (its stderr is included).
    """
    preds, refs = prepare_captions(predictions, references, tokenize, "meteor")
    if scorer is not None:
        return {"meteor": scorer.score(preds, refs)}
    restrict = restrict_paraphrases and use_restricted_table(len(preds))
    restrict_to = (preds, refs) if restrict else None
    with MeteorScorer(jvms or default_jvms(len(preds)), java, restrict_to) as own:
        return {"meteor": own.score(preds, refs)}
