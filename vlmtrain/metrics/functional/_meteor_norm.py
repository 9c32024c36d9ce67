"""METEOR 1.5's ``-norm`` text normaliser for English, ported exactly to Python.

Why a port: with ``-norm`` the jar runs ``Normalizer.normalizeLine`` (about fifteen regular
expressions) on the hypothesis and on every reference of every ``SCORE`` line, about 40% of its
scoring time on caption sets. Sending text that is already normalised and starting the jar with
``-lower`` instead (lower-case only, ``MeteorScorer.setNormalize(1)``) gives the jar the very same
strings to align, because ``-norm`` means "normalise, then ``String.toLowerCase()``" and
``-lower`` means "``String.toLowerCase()``" (lower-casing stays in Java: its rules depend on the
JVM's locale). The normalised tokens also tell which paraphrase-table entries can match
(``_meteor_table``).

Source: ``edu.cmu.meteor.util.Normalizer`` in ``meteor-1.5.jar`` as shipped with pycocoevalcap
1.2 (read from its bytecode: pattern strings, order of steps, the English branch, the
non-breaking-prefix list ``nonbreaking/english.prefixes`` inside the jar, ``keepPunctuation =
true``). Java regular-expression details spelled out for Python: ``\\s`` inside a class is
``[ \\t\\n\\x0b\\f\\r]``, ``\\p{Digit}`` is ``[0-9]``, ``\\p{Lower}`` is ``[a-z]`` (ASCII, as
Java's default), ``String.trim()`` strips characters up to U+0020, ``StringTokenizer`` splits on
``" \\t\\n\\r\\f"`` only. Tests compare with the jar's own ``Normalizer`` on Flickr8k captions (raw
and PTB-tokenized), hard cases and random strings over the characters the rules treat specially
(also checked once on all 40,460 Flickr8k captions and 300,000 random strings).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

# Letters (and, with digits, alphanumerics) as the jar lists them; Java ranges of code points.
_ALPHA = ("A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e"
          "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f")
_ALNUM = "0-9" + _ALPHA
_JAVA_CLASS_SPACE = " \t\n\x0b\x0c\r"  # Java's \s (no UNICODE_CHARACTER_CLASS)

_SEP_OTHER = re.compile(f"([^{_ALNUM}{_JAVA_CLASS_SPACE}.'`,\\-\u2018\u2019])")
_MULTI_DOT = re.compile(r"\.(\.+)")
_MULTI_DOT2 = re.compile(r"DOTMULTI\.([^.])")
_COMMA = re.compile(r"([^0-9]),([^0-9])")
_COMMA2 = re.compile(r"([0-9]),([^0-9])")
_COMMA3 = re.compile(r"([^0-9]),([0-9])")
_QUOTE = re.compile("[`\u2018\u2019]")
_QUOTE2 = re.compile("[\u201c\u201d]|''")
_RM_DASH = re.compile(f"([{_ALNUM}.])-([{_ALNUM}])")
_CONT_EN = re.compile(f"([^{_ALPHA}])'([^{_ALPHA}])")
_CONT_EN2 = re.compile(f"([^{_ALPHA}0-9])'([{_ALPHA}])")
_CONT_EN3 = re.compile(f"([{_ALPHA}])'([^{_ALPHA}])")
_CONT_EN4 = re.compile(f"([{_ALPHA}])'([{_ALPHA}])")
_CONT_EN5 = re.compile(r"([0-9])'(s)")
_NBP_ALPHA = re.compile(f"[{_ALPHA}]")
# Normalizer.r_white: a space or one of these Unicode spaces (StringTokenizer keeps them in words).
_UNICODE_SPACES = "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000\u00a0"
_WHITE = re.compile(f"[ {_UNICODE_SPACES}]+")
_TOKEN_SPLIT = re.compile("[ \t\n\r\f]+")  # java.util.StringTokenizer's default delimiters
# The same without the newline that separates lines; a single space is left as it is.
_DELIMITERS = re.compile("[\t\r\f][ \t\r\f]*| [ \t\r\f]+")
# A word (between single spaces / line starts) of 2+ characters ending with a dot; one space
# always follows it, because every line ends with the space the jar wraps it in.
_DOTTED_WORD = re.compile(r"(?<![^ \n])([^ \n]+)\.(?= )")
# What a line must contain for a group of steps to change it (the other lines are skipped).
_DOTS_TRIGGER = re.compile(r"\.\.|DOTMULTI\.")
_QUOTES_TRIGGER = re.compile("[`\u2018\u2019'\u201c\u201d]")
_DASHES_TRIGGER = re.compile("[\u2013-]")
_DOTTED_TRIGGER = re.compile(r"[^ ]\. ")
_UNICODE_SPACE_TRIGGER = re.compile(f"[{_UNICODE_SPACES}]")
_FIELD_SEPARATOR = re.compile(r"\|\|\|")
_JAVA_TRIM = "".join(map(chr, range(0x21)))
_LOWER_START = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGIT_START = frozenset("0123456789")
_NBP_ANY, _NBP_NUM_ONLY = 1, 2
_PREFIXES = "nonbreaking/english.prefixes"


@lru_cache(maxsize=4)
def nonbreaking_prefixes(jar: Path) -> dict[str, int]:
    """The jar's English non-breaking prefixes: ``{prefix: 1 (any) or 2 (numbers only)}``.

    Parsed as ``Normalizer.nbpList`` does: first token of each line, ``#`` lines skipped, type 2
    when the second token is ``#NUMERIC_ONLY#``.
    """
    with zipfile.ZipFile(jar) as archive:
        text = archive.read(_PREFIXES).decode("utf-8", "replace")
    prefixes: dict[str, int] = {}
    for line in re.split(r"\r\n|\r|\n", text):
        tokens = [t for t in _TOKEN_SPLIT.split(line) if t]
        if not tokens or tokens[0].startswith("#"):
            continue
        numeric = len(tokens) > 1 and tokens[1] == "#NUMERIC_ONLY#"
        prefixes[tokens[0]] = _NBP_NUM_ONLY if numeric else _NBP_ANY
    return prefixes


def score_lines(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[str]:
    """The ``SCORE`` line of each image, as pycocoevalcap writes them (without the newline).

    pycocoevalcap cleans the hypothesis only: ``hyp.replace("|||", "").replace("  ", " ")``.
    Line breaks would desynchronise the jar's line protocol (pycocoevalcap hangs or misreads);
    they become spaces (PTB-tokenized text has none).
    """
    lines = []
    for hyp, refs in zip(predictions, references):
        hyp = hyp.replace("|||", "").replace("  ", " ")
        line = " ||| ".join(("SCORE", " ||| ".join(refs), hyp))
        if "\n" in line or "\r" in line:
            line = line.replace("\r", " ").replace("\n", " ")
        lines.append(line)
    return lines


def normalize_score_lines(
    lines: Sequence[str], prefixes: dict[str, int]
) -> tuple[list[str], list[list[str]]]:
    """``SCORE`` lines for a jar started with ``-lower``: each field already normalised.

    The jar splits a line with ``String.split("\\\\|\\\\|\\\\|")`` (trailing empty fields
    dropped), trims each field (``String.trim()``) and, with ``-norm``, normalises it. Here the
    same split and trim run in Python and the fields are rebuilt around " ||| " separators: a
    normalised field has no "|||" (every "|" is spaced out) and no outer whitespace, so the
    jar's split and trim give back exactly the normalised fields. A line with fewer than three
    fields (the jar answers it with an error) is left unchanged.

    Returns:
        ``(lines, groups)``: the rebuilt lines and, per line, its normalised fields (the
        references, then the hypothesis; empty for a line left unchanged): the sentences the
        jar will align.
    """
    split = [_java_split(line) for line in lines]
    raw = [f.strip(_JAVA_TRIM) for parts in split if len(parts) >= 3 for f in parts[1:]]
    fields = iter(normalize_lines(raw, prefixes))
    out, groups = [], []
    for line, parts in zip(lines, split):
        group = [next(fields) for _ in parts[1:]] if len(parts) >= 3 else []
        out.append(" ||| ".join(("SCORE", *group)) if group else line)
        groups.append(group)
    return out, groups


def _java_split(line: str) -> list[str]:
    parts = _FIELD_SEPARATOR.split(line)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def normalize_lines(lines: Sequence[str], prefixes: dict[str, int]) -> list[str]:
    """``Normalizer.normalizeLine(line, LANG_EN, keepPunctuation=true)`` of each line.

    A line of ASCII letters and digits separated by single spaces (most PTB-tokenized captions)
    is its own normal form, unless it contains the jar's escape word "DOTMULTI". The other lines
    are wrapped in spaces, as the jar does, and each step runs once over the lines that contain
    its trigger character, joined by newlines: every pattern looks at one character on either
    side of a punctuation mark, and the wrapping spaces keep such a match inside its line.

    Args:
        lines: texts without ``\\n`` or ``\\r`` (the jar reads one line per ``SCORE`` field).
        prefixes: from :func:`nonbreaking_prefixes`.

    Returns:
        The normalised lines (tokens separated by single spaces, not lower-cased).
    """
    out = list(lines)
    todo = [i for i, line in enumerate(out) if not _is_plain(line)]
    if not todo:
        return out
    if any("\n" in out[i] or "\r" in out[i] for i in todo):
        raise ValueError("meteor normaliser: a line contains a line break")
    work = [f" {out[i]} " for i in todo]
    _regex_steps(work)
    _token_steps(work, prefixes)
    for i, line in zip(todo, work):
        out[i] = line.strip(_JAVA_TRIM)
    return out


def _is_plain(line: str) -> bool:
    """ASCII letters and digits between single spaces, no "DOTMULTI": no rule changes it."""
    if not line:
        return True
    return (line.isascii() and line.replace(" ", "").isalnum() and "  " not in line
            and line[0] != " " and line[-1] != " " and "DOTMULTI" not in line)


def _substitute(
    lines: list[str], trigger: str | re.Pattern[str], steps: Callable[[str], str]
) -> None:
    """Apply ``steps`` to the lines holding ``trigger`` (in place), joined by newlines.

    ``trigger``: a substring or a pattern that every line the steps can change contains; the
    other lines are left alone.
    """
    if isinstance(trigger, str):
        index = [i for i, line in enumerate(lines) if trigger in line]
    else:
        search = trigger.search
        index = [i for i, line in enumerate(lines) if search(line)]
    if not index:
        return
    for i, line in zip(index, steps("\n".join(lines[i] for i in index)).split("\n")):
        lines[i] = line


def _regex_steps(lines: list[str]) -> None:
    """The steps of ``normalizeLine`` before the text is cut into tokens, in the jar's order."""
    text = _SEP_OTHER.sub(r" \1 ", "\n".join(lines))
    lines[:] = text.split("\n")
    _substitute(lines, _DOTS_TRIGGER, _dot_steps)
    _substitute(lines, ",", lambda t: _COMMA3.sub(r"\1 , \2", _COMMA2.sub(
        r"\1 , \2", _COMMA.sub(r"\1 , \2", t))))
    _substitute(lines, _QUOTES_TRIGGER,
                lambda t: _QUOTE2.sub(' " ', _QUOTE.sub("'", t)))
    _substitute(lines, _DASHES_TRIGGER, lambda t: _RM_DASH.sub(
        r"\1 \2", t.replace("\u2013", "-").replace("--", "-")))
    _substitute(lines, "'", _apostrophe_steps)


def _dot_steps(text: str) -> str:
    """Runs of dots escaped as ``DOTMULTI`` words (restored after the token step)."""
    text = _MULTI_DOT.sub(r" DOTMULTI\1", text)
    while "DOTMULTI." in text:  # per line in the jar; a line without it is left unchanged
        text = _MULTI_DOT2.sub(r"DOTDOTMULTI \1", text)
        text = text.replace("DOTMULTI.", "DOTDOTMULTI")
    return text


def _apostrophe_steps(text: str) -> str:
    """English contractions split to the right ("it's" -> "it 's")."""
    text = _CONT_EN.sub(r"\1 ' \2", text)
    text = _CONT_EN2.sub(r"\1 ' \2", text)
    text = _CONT_EN3.sub(r"\1 ' \2", text)
    text = _CONT_EN4.sub(r"\1 '\2", text)
    return _CONT_EN5.sub(r"\1 '\2", text)


def _token_steps(lines: list[str], prefixes: dict[str, int]) -> None:
    """The jar's token loop and clean-up (before the final trim), in place.

    The jar cuts a line into ``StringTokenizer`` tokens and rebuilds it as ``"w1 w2 ... wn "``
    (a final dot split off unless the word is an abbreviation), restores the escaped dots and
    collapses runs of spaces. Here the delimiters are collapsed to one space first (a line keeps
    one space at either end, which the trim removes) and the words ending with a dot are
    rewritten by one substitution over the lines that have one.
    """
    text = _DELIMITERS.sub(" ", "\n".join(lines))
    lines[:] = text.split("\n")
    _substitute(lines, _DOTTED_TRIGGER,
                lambda t: _DOTTED_WORD.sub(lambda m: _dotted_word(m, prefixes), t))
    _substitute(lines, "DOTMULTI", _unescape_dots)
    # Single spaces separate the words now: only the Unicode spaces leave runs to collapse.
    _substitute(lines, _UNICODE_SPACE_TRIGGER, lambda t: _WHITE.sub(" ", t))


def _unescape_dots(text: str) -> str:
    while "DOTDOTMULTI" in text:
        text = text.replace("DOTDOTMULTI", "DOTMULTI.")
    return text.replace("DOTMULTI", ".")


def _dotted_word(match: re.Match[str], prefixes: dict[str, int]) -> str:
    """The jar's rebuild of one word of two or more characters ending with ".".

    ``words[i].length() > 1`` counts UTF-16 units in Java; for a word ending with "." it is the
    same test as on code points (only "." itself has length 1). The next word of the line
    starts two characters after the dot (one space in between), unless the line ends there.
    """
    word, pre = match.group(0), match.group(1)
    text, after = match.string, match.end() + 1
    following = text[after] if after < len(text) and text[after] != "\n" else ""
    kind = prefixes.get(pre)
    if "." in pre and _NBP_ALPHA.search(pre):
        return word.replace(".", "")  # "U.S." -> "US"
    if kind == _NBP_ANY or following in _LOWER_START:
        return word
    if kind == _NBP_NUM_ONLY and following in _DIGIT_START:
        return word
    return pre + " ."
