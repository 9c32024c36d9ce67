"""One ``meteor-1.5.jar -stdio`` process: locate, start, score a batch, evaluate, close.

Kept apart from :mod:`vlmtrain.metrics.functional.meteor` (what is sent, how the work is spread
over JVMs and how statistics are summed): this file knows processes, pipes and failures.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

METEOR_JAR = "meteor-1.5.jar"
PARAPHRASES = Path("data", "paraphrase-en.gz")
# pycocoevalcap's arguments, except "-lower" for "-norm": the SCORE lines arrive normalised by
# the exact Python port of the jar's normaliser (``_meteor_norm``); "-norm" is "normalise, then
# lower-case", "-lower" is "lower-case" (MeteorScorer.setNormalize(2) and (1)).
METEOR_ARGS = ("-jar", "-Xmx2G", METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-lower")
# JVM tuning for a short run; neither option changes any computed number (Java arithmetic is
# fully specified), and the tests compare against pycocoevalcap's default JVM:
# * the serial collector halves the resident memory (~0.6 GB instead of ~1.2 GB), same speed;
# * stopping at the C1 compiler (no C2) cuts the CPU time of scoring thousands of captions by
#   about 40% (Flickr8k, one JVM: 5.3 s instead of 12.6 s of CPU): C2's compile threads cost
#   more than its faster code saves in a run this short.
# (A class-data-sharing archive does not help: the jar's classes are Java 5 bytecode, which
# CDS does not archive.)
JAVA_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
ENV_JAVA = "VLMTRAIN_JAVA"


class MeteorNotInstalledError(FileNotFoundError):
    """Java or the METEOR jar is missing; the message says what to install."""


class MeteorJvmError(RuntimeError):
    """The METEOR JVM died or answered something unexpected; the message carries its stderr."""


@dataclass(frozen=True)
class MeteorInstall:
    """Where the jar and Java are.

    Attributes:
        java: path of the Java executable.
        jar_dir: folder holding ``meteor-1.5.jar`` and ``data/paraphrase-en.gz``.
    """

    java: str
    jar_dir: Path


def locate_meteor(java: str | None = None) -> MeteorInstall:
    """Find pycocoevalcap's METEOR jar and a Java runtime.

    Args:
        java: Java executable (name or path). Default: ``$VLMTRAIN_JAVA``, else ``java``.

    Raises:
        MeteorNotInstalledError: naming what is missing and how to install it.
    """
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise MeteorNotInstalledError(
            "METEOR needs the pycocoevalcap package, which ships meteor-1.5.jar: "
            "pip install pycocoevalcap==1.2"
        )
    jar_dir = Path(next(iter(spec.submodule_search_locations))) / "meteor"
    for needed in (jar_dir / METEOR_JAR, jar_dir / PARAPHRASES):
        if not needed.is_file():
            raise MeteorNotInstalledError(
                f"METEOR file {needed} is missing; reinstall pycocoevalcap==1.2 "
                "(pip install --force-reinstall pycocoevalcap==1.2)"
            )
    name = java or os.environ.get(ENV_JAVA) or "java"
    path = shutil.which(name)
    if path is None:
        raise MeteorNotInstalledError(
            f"METEOR needs a Java runtime (8 or newer), but {name!r} was not found; install one "
            "(e.g. apt-get install default-jre-headless, or conda install openjdk) or set "
            f"${ENV_JAVA} to a java executable"
        )
    return MeteorInstall(path, jar_dir)


class MeteorJvm:
    """``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -lower`` in the jar's folder.

    Args:
        install: from :func:`locate_meteor`.
        paraphrases: paraphrase table to load instead of the jar's ``data/paraphrase-en.gz``
            (``-a``; a restricted copy, see ``_meteor_table``), a file or a named pipe that
            :meth:`feed_table` fills.
    """

    def __init__(self, install: MeteorInstall, paraphrases: Path | None = None) -> None:
        self._stderr = tempfile.TemporaryFile()
        self._pid = os.getpid()  # a forked child inherits this object but must not drive the JVM
        try:
            self._proc = subprocess.Popen(
                [install.java, *JAVA_OPTIONS, *METEOR_ARGS,
                 *(("-a", str(paraphrases)) if paraphrases else ())], cwd=install.jar_dir,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            )
        except OSError as err:
            self._stderr.close()
            raise MeteorNotInstalledError(
                f"cannot run Java {install.java!r} for METEOR: {err}") from err
        self.stdin, self.stdout = self._proc.stdin, self._proc.stdout

    def feed_table(self, fifo: Path, data: bytes) -> None:
        """Write the paraphrase table into ``fifo``, the named pipe this JVM was started to read
        it from (``paraphrases``). Meant for a background thread: the JVM boots meanwhile.

        The pipe is opened without blocking, retried until the JVM opens its end, so a JVM that
        dies or is closed first cannot hang this thread; a write cut short that way is dropped
        (scoring then reports the JVM's own error).
        """
        fd = None
        while fd is None:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO or self._proc.poll() is not None:
                    return  # no reader will come (JVM gone, pipe removed)
                time.sleep(0.002)
        os.set_blocking(fd, True)
        try:
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(data)
        except OSError:  # BrokenPipeError: the JVM died or was closed while reading
            pass

    @property
    def usable(self) -> bool:
        """True while the JVM runs and belongs to this process."""
        return os.getpid() == self._pid and self._proc.poll() is None

    def score(self, lines: list[bytes]) -> list[str]:
        """Statistics of ``SCORE`` lines: write them all, then read one answer per line.

        Callers keep a batch small enough (a few hundred lines) that the answers fit in the
        pipe buffer (64 KiB), so the JVM never blocks on its output while this thread writes.
        """
        try:
            self.stdin.write(b"".join(lines))
            self.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as err:
            raise self.failure(f"cannot be written to ({err})") from err
        stats = []
        for _ in lines:
            line = self.stdout.readline()
            if not line:
                raise self.failure("exited while scoring")
            stats.append(line.decode("utf-8", "replace").strip())
        return stats

    def evaluate(self, stats: str) -> float:
        """METEOR of one statistics line (``EVAL ||| stats``)."""
        try:
            self.stdin.write(f"EVAL ||| {stats}\n".encode())
            self.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise self.failure(f"cannot be written to ({err})") from err
        answers = [self.stdout.readline() for _ in range(2)]  # the line's score, then the total
        if not answers[1]:
            raise self.failure("exited during EVAL")
        try:
            return float(answers[1])
        except ValueError:
            raise MeteorJvmError(f"METEOR jar answered EVAL with {answers!r}") from None

    def failure(self, what: str) -> MeteorJvmError:
        """An error naming the exit status and the end of the JVM's stderr."""
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return MeteorJvmError(
            f"METEOR JVM ({' '.join(self._proc.args)}) {what}; exit status {code}; "
            f"stderr: {tail or '(empty)'}"
        )

    def close(self) -> None:
        """End the JVM: close its input (it exits at end-of-file), kill it if it lingers."""
        if os.getpid() != self._pid:
            return  # inherited through fork: the JVM belongs to the parent process
        if self._proc.poll() is None:
            try:
                self.stdin.close()
            except OSError:
                pass
            try:  # an idle JVM exits at once; one still loading its tables is killed
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self.stdin, self.stdout, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
