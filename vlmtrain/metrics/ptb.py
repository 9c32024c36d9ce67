"""PTB tokenizer for caption metrics, token for token equal to pycocoevalcap's.

BLEU, ROUGE-L and CIDEr-D score text after pycocoevalcap's ``PTBTokenizer``: it runs Stanford
CoreNLP 3.4.1's ``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` (a JFlex lexer,
in Java) on all captions joined by newlines, then drops the tokens in its PUNCTUATIONS list. This
module reproduces that output in pure Python. It is hand-written because the only official
implementation is that Java lexer (about a hundred rules: abbreviations, contractions, quotes,
numbers, URLs, smileys, Unicode classes); no Python library reproduces it token for token (NLTK's
Treebank tokenizer and sacremoses differ on quotes, abbreviations, hyphens, ...); and each Java call
costs about a second of JVM start-up and needs a Java runtime.

How: the rules of CoreNLP 3.4.1's ``PTBLexer.flex`` are rebuilt as regular expressions (checked
against the jar on every BMP character and on fuzzed text) and applied with JFlex's discipline: at
each position the longest match wins, trailing context counting towards the length, and ties go to
the earlier rule. One compiled regex evaluates every rule that can start with the current character
(each rule is an optional lookahead group). The rules, their compilation and their actions live in
:mod:`vlmtrain.metrics._ptb_rules`; the lexer loop is here. The lexer reads the newline-joined
stream, so the end of a caption can depend on the next one (``"I."`` before ``"The"``) and the last
caption sees end of file; :func:`tokenize` does the same. Speed: captions of letters and spaces are
split directly; captions where no token can span a space are tokenized chunk by chunk (common chunk
shapes directly, the rest by the lexer, cached); the remaining few are lexed whole.

Known differences, left as they are: a caption holding a line break other than ``"\\n"`` (``"\\r"``,
U+2028, ...) makes pycocoevalcap's Java output gain a line and misalign every later caption; here,
as in :func:`java_tokenize`, such characters read as spaces. Letters and digits follow the Unicode
6.0 tables compiled into the jar; characters beyond U+FFFF (emoji) are dropped, as the lexer drops
UTF-16 surrogates.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vlmtrain.metrics._ptb_rules import _SPACENL, KEEP, _act, _rules_for, _x

__all__ = ["PUNCTUATIONS", "java_tokenize", "tokenize", "tokenize_groups"]

#: pycocoevalcap 1.2 ``PTBTokenizer.PUNCTUATIONS``, dropped after tokenization. The check is
#: case-sensitive, so lower-cased ``-lrb-``/``-rrb-`` (parentheses) survive, as in pycocoevalcap.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
     "...", ";"]
)

_ASSIMILATIONS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])
# A word before a space, or before ")" or one of ,;:!? and a space: no other rule can extend it.
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?=[ \n)]|\Z|[,;:!?](?:[ \n]|\Z))")


def _lex(buf: str, end: int) -> list[str]:
    """PTBLexer tokens of ``buf`` that start before ``end`` (``buf[end:]`` is lookahead only)."""
    tokens, pos, ascii = [], 0, buf.isascii()
    while pos < end:
        word = _PLAIN_WORD.match(buf, pos)
        if word is not None and word.group().lower() not in _ASSIMILATIONS:
            tokens.append(word.group())
            pos = word.end()
            continue
        rules, index = _rules_for(buf[pos], ascii)
        regs = rules.match(buf, pos).regs
        best, best_main, best_action = 0, 0, KEEP
        for main, full, action in index:
            length = regs[full][1] - pos
            if length > best:
                best, best_main, best_action = length, main, action
        if not best:  # untokenizable character: PTBTokenizer deletes it (and logs a warning)
            pos += 1
            continue
        start, stop = regs[best_main]
        token, consumed = _act(best_action, buf[start:stop])
        if token is not None:
            tokens.append(token)
        pos += consumed
    return tokens


# A word as Java's BreakIterator sees it (letters and digits; "-", "'", "." inside letters; "," and
# "." inside digits), for the final-sigma rule of String.toLowerCase.
_WORD_RUN = re.compile(r"[\w\u00AD\u0300-\u036F]+(?:(?:(?<=[^\W\d_])[-'.](?=[^\W\d_])"
                       r"|(?<=\d)[,.](?=\d))[\w\u00AD\u0300-\u036F]+)*")


def _is_cased(char: str) -> bool:
    return char.islower() or char.isupper() or char.istitle()


def _java_lower(token: str) -> str:
    """``String.toLowerCase``: ``str.lower`` but for a capital sigma, which is final when no cased
    letter follows in its word (Java) rather than next to it (Python)."""
    if "\u03A3" not in token:
        return token.lower()

    def word(m: re.Match[str]) -> str:
        text = m.group()
        return "".join(
            c.lower() if c != "\u03A3" else "\u03C2" if any(map(_is_cased, text[:i])) and not any(
                map(_is_cased, text[i + 1:])) else "\u03C3" for i, c in enumerate(text))

    return _WORD_RUN.sub(word, token).lower()


def _finish(tokens: list[str], rstrip: bool = False) -> str:
    """Lower-case (``-lowerCase``) and drop pycocoevalcap's PUNCTUATIONS; ``rstrip``: the tokens
    end a line, which pycocoevalcap strips first (only a URL can end in a space, U+00A0)."""
    text = " ".join(tokens)
    text = text.lower() if "\u03A3" not in text else " ".join(map(_java_lower, tokens))
    if rstrip:
        text = text.rstrip()
    return " ".join(t for t in text.split(" ") if t and t not in PUNCTUATIONS)


# ---------------------------------------------------------------------------------------------
# Tiers. 1: letters and spaces (and a final " ."): the tokens are the words. 2: no token can span
# a space (no digit, "<", ". ." or space other than " "), so each space-separated chunk is
# tokenized alone, with the lookahead that can matter: common shapes directly, others by the
# lexer, cached. 3: the lexer on the whole caption plus what follows it in the stream.
_LINE_BREAK = re.compile("[\r\n\u2028\u2029\u000B\u000C\u0085]")
_PLAIN = re.compile(r"[A-Za-z ]*(?: \.)? *")
_SPANNING = re.compile("[\\d<\t\u00A0\u2000-\u200A\u3000\x1C-\x1F\u1680\u202F\u205F]"
                       "|\\.[ \u00A0]\\.|[^\u0000-\uFFFF]")
# Chunk shapes no other rule can change (checked rule by rule; tested against the lexer): word or
# word[,;:!?] -> word; word. -> word (unless an abbreviation); hyphen-ated[,;:.] -> hyphen-ated;
# word's -> word 's; don't -> do n't. Trailing punctuation is dropped by PUNCTUATIONS anyway.
_SHAPE = re.compile(r"([A-Za-z]+)[,;:!?]?|([A-Za-z]{2,})\.|([A-Za-z]+(?:-[A-Za-z]+)+)[,;:.]?"
                    r"|([A-Za-z]{2,})('s)[,;:.]?|([A-Za-z]*[A-MO-Za-mo-z])(n't)[,;:.]?")
_ABBREVIATION = re.compile(_x(r"{ABBREV1}|(?:{ABBREV4})\.|(?i:ca|figs?|prop|nos?|art|bldg|pp|op"
                              r"|pt[ey]|co)\."))
# What a chunk ending in "." can see: spaces, one word (the longest listed after an acronym has 12
# letters) or tag, one more space (ACRONYM, ABBREV1, ABBREV3 trailing contexts).
_PERIOD_LOOKAHEAD = re.compile(
    f"{_SPACENL}*(?:<[^>\r\n]*>?|[^<]{{0,13}}?(?={_SPACENL}|$)|.{{0,13}}){_SPACENL}?")
# Lone punctuation between spaces (no trailing context can apply to these).
_SINGLE = {".": "", ",": "", ";": "", ":": "", "!": "", "?": "", "'": "", '"': "", "-": "",
           "(": "-lrb-", ")": "-rrb-", "&": "&"}
_CACHE_LIMIT = 200_000  # entries per cache; cleared when full
_chunk_cache: dict[tuple[str, str], str] = {}
_line_cache: dict[tuple[str, str], str] = {}


def _shape(chunk: str) -> str | None:
    """Tokens of a common chunk shape (see _SHAPE), or None when the lexer must decide."""
    if len(chunk) == 1 and chunk in _SINGLE:
        return _SINGLE[chunk]
    m = _SHAPE.fullmatch(chunk)
    if m is None:
        return None
    word, dotted, hyphenated, stem, aux, stem2, aux2 = m.groups()
    if word is not None or dotted is not None:
        word = (word or dotted).lower()
        if word in _ASSIMILATIONS or dotted is not None and _ABBREVIATION.fullmatch(chunk):
            return None
        return word
    if hyphenated is not None:
        return hyphenated.lower()
    return f"{stem.lower()} {aux}" if stem is not None else f"{stem2.lower()} {aux2}"


def _chunk(chunk: str, follow: str) -> str:
    """Tokens of a space-free chunk followed by ``follow`` (" ", "\\n", "" or more after ".")."""
    key = (chunk, follow)
    out = _chunk_cache.get(key)
    if out is None:
        if len(_chunk_cache) > _CACHE_LIMIT:
            _chunk_cache.clear()
        out = _shape(chunk)
        if out is None:
            out = _finish(_lex(chunk + follow, len(chunk)))
        _chunk_cache[key] = out
    return out


def _tier2(line: str, follow: str) -> str:
    chunks, parts, pos = line.split(" "), [], 0
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        pos += len(chunk) + 1
        if not chunk:
            continue
        if chunk.isalpha() and chunk.isascii():
            out = chunk.lower()
            if out in _ASSIMILATIONS:
                out = _chunk(chunk, " ")
        elif chunk[-1] == ".":
            out = _chunk(chunk, _PERIOD_LOOKAHEAD.match(line[pos - 1:] + follow).group())
        else:
            out = _chunk(chunk, " " if i < last else follow[:1])
        if out:
            parts.append(out)
    return " ".join(parts)


def _utf16(text: str) -> str:
    """Java sees a character beyond U+FFFF as two UTF-16 surrogates (which the lexer drops)."""
    return "".join(
        c if c <= "\uFFFF" else chr(0xD7C0 + (ord(c) >> 10)) + chr(0xDC00 | ord(c) & 0x3FF)
        for c in text)


def _tier3(line: str, follow: str) -> str:
    key = (line, follow)
    out = _line_cache.get(key)
    if out is None:
        if len(_line_cache) > _CACHE_LIMIT:
            _line_cache.clear()
        text = _utf16(line)
        tokens = _lex(text + _utf16(follow), len(text))
        if not text.isascii():  # rejoin surrogate pairs kept inside URL-like tokens
            tokens = [t.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
                      for t in tokens]
        out = _line_cache[key] = _finish(tokens, rstrip=True)
    return out


def _follow(lines: list[str], i: int) -> str:
    """What the lexer sees after caption ``i`` of the newline-joined stream, as far as a trailing
    context can reach: the next captions up to 40 non-space characters ("" at end of file)."""
    follow, seen, j = [], 0, i + 1
    while j < len(lines) and seen < 40:
        follow.append(lines[j])
        seen += len(lines[j]) - lines[j].count(" ")
        j += 1
    return "".join("\n" + line for line in follow) + ("\n" if j < len(lines) else "")


def _clean(texts: Sequence[str]) -> list[str]:
    """Check the captions and put each on one line (pycocoevalcap replaces "\\n" by a space)."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of captions, got one string; wrap it in a list")
    lines = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"caption {i} is a {type(text).__name__}, not a str: {text!r:.80}")
        lines.append(text if text.isprintable() else _LINE_BREAK.sub(" ", text))
    return lines


def tokenize(texts: Sequence[str]) -> list[str]:
    """PTB-tokenize captions exactly as pycocoevalcap's ``PTBTokenizer`` does, in pure Python.

    Args:
        texts: N captions, in the order pycocoevalcap joins them (which matters only at a
            caption's end, e.g. ``"... I."`` followed by a caption that starts with ``"The"``).

    Returns:
        N strings: each caption's lower-cased tokens joined by single spaces, punctuation tokens
        dropped (``"A dog's toy (red)."`` -> ``"a dog 's toy -lrb- red -rrb-"``).
    """
    lines = _clean(texts)
    out = _tier1(lines)
    for i, line in enumerate(lines):
        if out[i] is None:
            tier = _tier3 if _SPANNING.search(line) else _tier2
            out[i] = tier(line, _follow(lines, i))
    return out


def _tier1(lines: list[str]) -> list[str | None]:
    """Captions of letters and spaces (and a final " ."): their lower-cased words, the final "."
    dropped; None for the other captions. The plain captions are handled together as one
    newline-joined text (string methods over it instead of a Python loop per caption)."""
    out: list[str | None] = [None] * len(lines)
    plain = [i for i, line in enumerate(lines) if _PLAIN.fullmatch(line)]
    if not plain:
        return out
    text = "\n".join([lines[i] for i in plain]).lower()
    while "  " in text:
        text = text.replace("  ", " ")
    # One space at most is left at either end of a line; then a final " ." goes (a lone "."
    # below).
    text = text.replace("\n ", "\n").replace(" \n", "\n").strip(" ") + "\n"
    text = text.replace(" .\n", "\n")
    words = [w if w != "." else "" for w in text[:-1].split("\n")]
    skip = set()
    for word in _ASSIMILATIONS:  # the lexer splits these words ("cannot" -> "can not"): tier 2
        if word in text:
            skip.update(k for k, w in enumerate(words) if word in w.split(" "))
    for k, (i, line) in enumerate(zip(plain, words)):
        if k not in skip:
            out[i] = line
    return out


def tokenize_groups(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """:func:`tokenize` for grouped captions (e.g. the references of each image), as one stream.

    Args:
        groups: G groups of captions.

    Returns:
        G lists holding the tokenized captions of each group.
    """
    tokens = iter(tokenize([text for group in groups for text in group]))
    return [[next(tokens) for _ in group] for group in groups]


def _jar() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("java_tokenize needs pycocoevalcap, which ships the CoreNLP jar: "
                           "pip install pycocoevalcap==1.2 (or use tokenize(), pure Python)")
    jar = Path(next(iter(spec.submodule_search_locations)), "tokenizer",
               "stanford-corenlp-3.4.1.jar")
    if not jar.is_file():
        raise RuntimeError(f"{jar} is missing: reinstall pycocoevalcap==1.2")
    return jar


def java_tokenize(texts: Sequence[str], java: str = "java") -> list[str]:
    """Tokenize with the official Java tokenizer (pycocoevalcap's CoreNLP 3.4.1 jar), in one JVM.

    Same command and post-processing as pycocoevalcap's ``PTBTokenizer``; line breaks inside a
    caption become spaces (pycocoevalcap replaces only ``"\\n"`` and misaligns on the others).

    Args:
        texts: N captions.
        java: the Java executable (name on PATH or path).

    Returns:
        N strings, as :func:`tokenize` returns them.

    Raises:
        RuntimeError: no Java runtime, no jar, or the tokenizer failed.
        ValueError: a caption is not valid Unicode (a lone surrogate).
    """
    lines = _clean(texts)
    if not lines:
        return []
    for i, line in enumerate(lines):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"caption {i} holds a lone surrogate, which is not valid UTF-8 and "
                             f"Java cannot read: {line!r:.80}") from err
    exe = shutil.which(java)
    if exe is None:
        raise RuntimeError(f"java_tokenize needs a Java runtime, and {java!r} is not on PATH: "
                           "install one (e.g. apt-get install default-jre-headless) or use "
                           "tokenize(), the pure-Python tokenizer")
    data = "\n".join(lines).encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "captions.txt")
        path.write_bytes(data)
        proc = subprocess.run([exe, "-cp", str(_jar()), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", str(path)], capture_output=True,
                              check=False)
    out = proc.stdout.decode("utf-8").split("\n")
    if proc.returncode != 0 or len(out) < len(lines):
        raise RuntimeError(f"Java PTBTokenizer failed (exit {proc.returncode}, {len(out)} lines "
                           f"for {len(lines)} captions): "
                           f"{proc.stderr.decode(errors='replace')[-600:]}")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
            for line in out[: len(lines)]]
