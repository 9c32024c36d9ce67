"""PTBLexer's rules as Python regular expressions, for :mod:`vlmtrain.metrics.ptb`.

The rules of Stanford CoreNLP 3.4.1's ``PTBLexer.flex`` (the JFlex lexer behind pycocoevalcap's
``PTBTokenizer``), rebuilt as regexes: its character classes (Unicode 6.0 letters and digits), its
macros, its rule table in the lexer's order with trailing contexts and actions, the compilation of
the rules that can start at a character into one regex, and the actions that turn a match into a
token. Why this is hand-written, and how the rules are applied (longest match, earlier rule on a
tie), is told in :mod:`vlmtrain.metrics.ptb`, which holds the lexer loop.
"""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------
# Character classes. JFlex's [:letter:]/[:digit:] are Java's isLetter/isDigit as of Unicode 6.0;
# Python knows a newer Unicode, so letters/digits added since are subtracted.
_NEW_LETTERS = (
    "\u037F\u0528-\u052F\u0560\u0588\u05EF\u0860-\u086A\u0870-\u0887\u0889-\u088E\u08A1"
    "\u08AD-\u08C9\u0978\u0980\u09FC\u0AF9\u0C34\u0C5A\u0C5D\u0C80\u0CDD\u0D04\u0D54-\u0D56\u0D5F"
    "\u0E86\u0E89\u0E8C\u0E8E-\u0E93\u0E98\u0EA0\u0EA8-\u0EA9\u0EAC\u13F5\u13F8-\u13FD\u16F1-\u16F8"
    "\u170D\u171F\u1878\u191D-\u191E\u19B0-\u19C0\u19C8-\u19C9\u1B4C\u1C80-\u1C88\u1C90-\u1CBA"
    "\u1CBD-\u1CBF\u1CF2-\u1CF3\u1CFA\u2C2F\u2C5F\u312E-\u312F\u31BB-\u31BF\u4DB6-\u4DBF"
    "\u9FCD-\u9FFF\uA698-\uA69D\uA78F\uA794-\uA79F\uA7AB-\uA7CA\uA7D0-\uA7D1\uA7D3\uA7D5-\uA7D9"
    "\uA7F2-\uA7F7\uA8FD-\uA8FE\uA9E0-\uA9E4\uA9E6-\uA9EF\uA9FA-\uA9FE\uAA7E-\uAA7F\uAB30-\uAB5A"
    "\uAB5C-\uAB69\uAB70-\uABBF"
)
_NEW_DIGITS = "\u0DE6-\u0DEF\uA9F0-\uA9F9"
# Extra letter-like ranges of PTBLexer's WORD (combining marks etc.).
_LETTER_EXTRA = (
    "\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D\u0384"
    "\u0385\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525\u055A-\u055F"
    "\u0591-\u05BD\u05BF\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E"
    "\u0670\u06D6-\u06EF\u06FA-\u06FF\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1"
    "\u07CA-\u07F5\u07FA\u0900-\u0903\u093C\u093E-\u094E\u0951-\u0955\u0962-\u0963\u0981-\u0983"
    "\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7\u09E2\u09E3\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F"
    "\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2\u0BC6-\u0BC8\u0BCA-\u0BCD\u0C01-\u0C03"
    "\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD"
)
_MISC = (
    "+%&~\\^|\\\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u0387"
    "\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A"
    "\u066D\u0703-\u070D\u07F6-\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023"
    "\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF"
    "\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65"
)


def _ranges(chars: str) -> str:
    """Character-class body (``a-z...``) listing ``chars`` as ranges."""
    out, i = [], 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and ord(chars[j + 1]) == ord(chars[j]) + 1:
            j += 1
        out.append(re.escape(chars[i]) + ("-" + re.escape(chars[j]) if j > i else ""))
        i = j + 1
    return "".join(out)


def _unicode_classes() -> dict[str, str]:
    """JFlex's [:letter:]/[:digit:] (BMP, Unicode 6.0) and their unions as class bodies."""
    bmp = "".join(map(chr, range(0x10000)))
    new = set(re.findall(f"[{_NEW_LETTERS}{_NEW_DIGITS}]", bmp))
    # U+1885/6 were letters in Unicode 6.0 (now combining marks).
    letters = "".join(c for c in bmp if (c.isalpha() or c in "\u1885\u1886") and c not in new)
    digits = "".join(c for c in bmp if c.isdecimal() and c not in new)
    words = "".join(sorted(set(letters) | set(re.findall(f"[{_LETTER_EXTRA}]", bmp))))
    sets = {"L": letters, "D": digits, "LD": letters + digits, "LW": words, "LWD": words + digits}
    return {name: _ranges("".join(sorted(chars))) for name, chars in sets.items()}


# JFlex-style macros; {NAME} expands to (?:definition). The lexer is %caseless, which affects
# literals but not character classes: literals are wrapped in (?i:...), classes stay as written.
# Two expansions: captions are mostly ASCII, and ASCII-only classes compile and match much faster
# than the Unicode ones (which are built on first use).
_SPACENL = "[ \t\u00A0\u2000-\u200A\u3000\r\n\u2028\u2029\u000B\u000C\u0085]"
_ASCII_CLASSES = {"L": "A-Za-z", "D": "0-9", "LD": "A-Za-z0-9", "LW": "A-Za-z", "LWD": "A-Za-z0-9"}
_MACROS: dict[str, str] = {"SPACENL": _SPACENL}
_class_bodies: dict[bool, dict[str, str]] = {True: _ASCII_CLASSES}


def _x(pattern: str, ascii: bool = True) -> str:
    """Expand ``{NAME}`` macro references (JFlex syntax) in a regex, for ASCII or any text."""
    if not ascii and False not in _class_bodies:
        _class_bodies[False] = _unicode_classes()
    classes = _class_bodies[ascii]

    def expand(m: re.Match[str]) -> str:
        name = m.group(1)
        return f"[{classes[name]}]" if name in classes else f"(?:{_x(_MACROS[name], ascii)})"

    return re.sub(r"\{([A-Z][A-Z0-9]*)\}", expand, pattern)


def _macro(name: str, pattern: str) -> None:
    _MACROS[name] = pattern


_macro("SGMLNAME", r"[A-Za-z][A-Za-z0-9_:.\-]*")
_macro("SGML", r"<(?:[!?][A-Za-z\-][^>\r\n]*|{SGMLNAME}(?: +(?:{SGMLNAME} *= *(?:'[^'\r\n]*'"
       r"|\"[^\"\r\n]*\")|{SGMLNAME}))* */?|/{SGMLNAME}) *>")
_macro("SPAMP", r"&(?i:amp);")
_macro("SPLET", r"&[aeiouAEIOU](?i:acute|grave|uml);")
_macro("SPACE", "[ \t\u00A0\u2000-\u200A\u3000]")
_macro("SENTEND", r"{SPACENL}(?:{SPACENL}|[A-Z]|{SGML})")
_macro("NUM", r"{D}*(?:[.:,\u00AD\u066B\u066C]{D}+)+|{D}+")
_macro("LETTER", r"{LW}|{SPLET}")
# {LETTER}({LETTER}|{DIGIT})* written as an unrolled loop: linear-time backtracking.
_macro("WORDPART", r"{LETTER}{LWD}*(?:{SPLET}{LWD}*)*")
_macro("WORD", r"{WORDPART}(?:[.!?]{WORDPART})*")
_macro("APOS", r"['\u0092\u2019]|&(?i:apos);")
_macro("APOSETC", r"{APOS}|[`\u0091\u2018\u201B]")
_macro("HYPHEN", "[-_\u058A\u2010\u2011]")
# Special forms first: Python takes the first alternative that matches, JFlex the longest.
_macro("ACROX", r"(?i:U\.S\.-)(?i:U\.S\.S\.R|U\.K)|(?i:Canada|Sino|Korean|EU|Japan|non)-(?i:U\.S)")
_macro("ACRO", r"{ACROX}|[A-Za-z](?:\.[A-Za-z])*")
_macro("ACRO2", r"{ACROX}|[A-Za-z](?:\.[A-Za-z])+")
_macro("THINGPART", r"(?:[dDoOlL]{APOSETC}{LD})?{LD}+")
_macro("HTHING", r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:{ACRO2}\.|[A-Za-z0-9\u00AD]+))+")
_macro("THINGA", r"[A-Z]+(?:(?:[+&]|{SPAMP})[A-Z]+)+")
_macro("REDAUX", r"{APOS}(?:[msdMSD]|(?i:re|ve|ll))")
_macro("SREDAUX", r"(?i:n){APOSETC}(?i:t)")
_macro("ABTITLE", r"(?i:Mr|Mrs|Ms|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev"
       r"|Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj"
       r"|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc)|M(?i:iss)")
_macro("ABBREV1", r"(?:(?i:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mon|Tue|Tues|Wed|Thu"
       r"|Thurs|Fri|Ala|Ariz|Calif|Colo|Conn|Ct|Dak|Fla|Ga|Ind|Kans?|Ky|Md|Mich|Minn|Mo|Mont|Neb"
       r"|Nev|Okla|Penn|Tenn|Va|Vt|Wisc?|Wyo|Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn"
       r"|Univ|Intl|Sys|tel|est|ext|sq|Jr|Sr|Bros|Ed\.D|Ph\.D|Blvd|Rd|Esq|etc|al|seq|Bldg)"
       r"|A(?i:z|rk)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass|iss)|O(?i:re)|P(?i:a)|T(?i:ex)|W(?i:ash))\.")
# ABBREV4's single letters [A-Za-z] are inside {ACRO}, which goes first to get "U.S." whole.
_macro("ABBREV4", r"{ACRO}|{ABTITLE}|(?i:vs|Alex|Wm|Jos|Cie|cf|TREAS|Ph|Invt|Elec|Natl|M[ft]g"
       r"|Dept)")
_macro("ACROWORD", r"(?:A(?i:bout|ccording|dditionally|fter|n|s|t)?|B(?i:ut)|E(?i:arlier)"
       r"|H(?i:e|er|ere|owever)|I(?i:f|n|t)|L(?i:ast)|M(?i:any|ore|r\.|s\.)|N(?i:ow)"
       r"|O(?i:nce|ne|ther|ur)|S(?i:he|ince|o|ome|uch)|T(?i:hat|he|heir|hen|here|hese|hey|his)"
       r"|W(?i:e|hen|hile|hat)|Y(?i:et|ou)|{SGML})")
_macro("QUOTECH", "[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091-\u0094\u201E\u201F\u2039\u203A"
       "\u00AB\u00BB]")
_macro("URLCH", r"[^ \t\n\f\r\"<>|()]")
_macro("APOWORD1", r"[lLdDjJ]{APOS}|(?i:Dunkin|somethin|ol){APOS}|{APOS}(?i:em|cause|till?)")
_macro("APOWORD5", r"(?i:cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)"
       r"|(?i:o){APOSETC}(?i:o)")
_macro("URLEND", r"[^ \t\n\f\r\"<>|.!?(){},-]")
_macro("FULLURL", r"(?i:https?)://[^ \t\n\f\r\"<>|(){}]+{URLEND}")
_macro("WWWURL", r"(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}(?:/{URLCH}+{URLEND})?")
# ",-_" is a range (",", "-", ".", "/", digits, ":"..."@", capitals, "["..."_") in PTBLexer too.
_macro("LIKELYURL", r"(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu)"
       r"(?:/{URLCH}+{URLEND})?")
_macro("EMAILCH", r"[^ \t\n\f\r\"<>|(){}.\u00A0]")
_macro("EMAIL", r"(?:<|&(?i:lt);)?[a-zA-Z0-9][^ \t\n\f\r\"<>|(){}\u00A0]*@(?:{EMAILCH}+\.)*"
       r"{EMAILCH}+(?:>|&(?i:gt);)?")
_macro("SUBSUPNUM", r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+"
       r"|[\u2080-\u2089]+)")
_macro("TBSPEC2", r"(?i:S)(?:&|{SPAMP})(?i:P-500|Ls)|(?i:Cap){APOS}(?i:n)|(?i:c){APOS}(?i:est)")
_macro("THING3", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}")
_macro("FILENAME", r"{LWD}+(?:\.{LWD}+)*\.(?i:bat|bmp|c|class|cgi|cpp|dll|docx?|exe|gif|gz|h|html?"
       r"|jar|java|jpe?g|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip)")
_macro("PHONE1", r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}"
       r"[\- \u00A0])[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}")
_macro("PHONE2", r"(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}")
# The first alternative is PTBLexer's, mistyped there ("\.\[" where "\.[" was meant), kept as is.
_macro("ASIANSMILEY", r"[\^x=~<>]\.\[\^x=~<>\]|[\-\^x=~<>']_[\-\^x=~<>']"
       r"|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'`]\)")
_CURRENCY_CHARS = "[\u00A2-\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]"
_STOPS = "[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]"

# Actions (what a matched rule emits); see _act().
(KEEP, SKIP, ASSIM3, ASSIM2, SGML, DASH, AMP, SOFT, QLEFT, QRIGHT, FRAC, FRAC2, CURR, ACRONYM,
 REDUP, PHONE, LRB, RRB, LCB, RCB, LSB, RSB, LT, GT, HYPHENS, DOTS, SMILEY) = range(27)

# (first characters, main pattern, trailing context or None, action), in PTBLexer.flex order: on
# equal length the earlier rule wins. "first" lists the characters a match can start with, so that
# only the rules that can match are tried at a position. Alternatives of one rule are separate
# entries where Python's leftmost-first alternation would not give JFlex's longest match.
_A = "['\u0092\u2019&]"  # first characters of {APOS}
_LW = "{LW}|&"  # of {LETTER}/{WORD}
_AN = "[A-Za-z0-9]"
# First characters are supersets where that lets lower- and upper-case letters share one compiled
# rule set (each costs tens of milliseconds to compile).
_URLSTART = r"[^ \t\n\f\r\"`'<>|.!?(){},\-./:;<=>?@\[\\\]^_$]"
_RULE_SPECS: list[tuple[str, str, str | None, int]] = [
    ("[A-Za-z]", r"(?i:c\+\+|[cf]#)", None, KEEP),
    ("[A-Za-z']", r"(?i:cannot|'twas)", None, ASSIM3),
    ("['\u0092\u2019&A-Za-z]", r"{APOS}(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna)", None, ASSIM2),
    ("<", r"{SGML}", None, SGML),
    ("[&\u0096\u0097\u2013\u2014\u2015]", r"&(?i:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]",
     None, DASH),
    ("&", r"{SPAMP}", None, AMP),
    ("&", r"&(?:(?i:HT|TL|UR|LR|QC|QL|QR|odq|cdq)|#[0-9]+);", None, KEEP),
    (_LW, r"{WORD}", r"{REDAUX}", SOFT),
    ("[A-Za-z\u00AD]", r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*", r"{SREDAUX}", SOFT),
    (_LW, r"{WORD}", None, SOFT),
    (_A, r"{APOS}(?i:n){APOS}?", None, KEEP),
    ("['\u0092\u2019&A-Za-z]", r"{APOWORD1}", None, KEEP),
    ("[A-Za-z]", r"[A-HJ-XZn]{APOSETC}{L}{L}+", None, KEEP),
    (_A, r"{APOS}[2-9]0(?i:s)", None, KEEP),
    ("{L}", r"{L}+[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]{L}*", None, KEEP),
    ("[A-Za-z']", r"{APOWORD5}", None, KEEP),
    ("[A-Za-z]", r"(?i:y){APOS}", r"{L}", KEEP),
    ("[A-Za-z]", r"{FULLURL}", None, KEEP),
    ("[A-Za-z]", r"{WWWURL}", None, KEEP),
    (_URLSTART, r"{LIKELYURL}", None, KEEP),
    ("[A-Za-z0-9<&]", r"{EMAIL}", None, KEEP),
    ("[@#]", r"@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+", None, KEEP),
    (_A, r"{REDAUX}", r"[^A-Za-z]", QRIGHT),
    ("[A-Za-z]", r"{SREDAUX}", None, QRIGHT),
    ("{D}", r"{D}{1,2}[\-/]{D}{1,2}[\-/]{D}{2,4}", None, KEEP),
    ("{D}|[-+.:,\u00AD\u066B\u066C]", r"[\-+]?(?:{NUM})", None, SOFT),
    ("[\u207A\u207B\u208A\u208B\u2070\u00B9\u00B2\u00B3\u2074-\u2079\u2080-\u2089]", r"{SUBSUPNUM}",
     None, KEEP),
    ("{D}", r"(?:{D}{1,4}[- \u00A0])?{D}{1,4}(?:\\?/|\u2044){D}{1,4}", None, FRAC),
    ("[\u00BC\u00BD\u00BE\u2153-\u215E]", r"[\u00BC\u00BD\u00BE\u2153-\u215E]", None, FRAC2),
    ("[-A-Za-z]", r"-(?i:RRB|LRB|RCB|LCB|RSB|LSB)-|(?i:C\.D\.s|pro-|anti-)", None, AMP),
    ("[A-Za-z]", r"{TBSPEC2}", None, AMP),
    (_AN, r"{THING3}", None, KEEP),
    ("[A-Za-z$#]", r"[A-Z]*\$|#", None, KEEP),
    (_CURRENCY_CHARS, f"{_CURRENCY_CHARS}", None, CURR),
    ("[A-Za-z]", r"(?:{ACRO})\.", r"{SPACENL}+{ACROWORD}{SPACENL}", ACRONYM),
    ("[A-Za-z]", r"(?i:ca|figs?|prop|nos?|art|bldg|pp|op)\.", r"{SPACENL}?{D}", KEEP),
    ("[A-Za-z]", r"(?i:pt[ey]|co)\.", r"{SPACE}(?i:ltd|lim)", KEEP),
    ("[A-Za-z]", r"{ABBREV1}", r"{SENTEND}", REDUP),
    ("[A-Za-z]", r"{ABBREV1}", r"[\s\S]{2}", KEEP),  # JFlex {ABBREV1}/[^][^]: beats "Mass.a"
    ("[A-Za-z]", r"{ABBREV1}", None, REDUP),  # at the end of the text
    ("[A-Za-z]", r"(?:{ABBREV4})\.", None, KEEP),
    ("[A-Za-z]", r"{ABBREV4}", r"{SPACE}", KEEP),
    ("[A-Za-z]", r"{ACRO}", r"{SPACENL}", KEEP),
    (_A, r"{APOS}[0-9][0-9]", r"{SPACENL}", KEEP),
    ("{LWD}", r"{FILENAME}", "{SPACENL}|[.?!,]", KEEP),
    (_LW, r"{WORD}\.", r"[,;:\u3001]", SOFT),
    ("[(+0-9]", r"{PHONE1}", None, PHONE),
    ("[+0-9]", r"{PHONE2}", None, PHONE),
    ('["&]', r"\"|&(?i:quot);", r"[A-Za-z0-9$]", QLEFT),
    ('["&]', r"\"|&(?i:quot);", None, QRIGHT),
    ("\x7F", "\x7F", None, SKIP),
    ("[<&]", r"<|&(?i:lt);", None, LT),
    ("[>&]", r">|&(?i:gt);", None, GT),
    ("[<>:;=]", r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]", r"[^A-Za-z0-9]", SMILEY),
    (r"[\^=~<>\-'(A-Za-z]", r"{ASIANSMILEY}", None, SMILEY),
    (r"\{", r"\{", None, LCB), (r"\}", r"\}", None, RCB), (r"\[", r"\[", None, LSB),
    (r"\]", r"\]", None, RSB), (r"\(", r"\(", None, LRB), (r"\)", r"\)", None, RRB),
    ("-", r"-+", None, HYPHENS),
    ("[.\u0085\u2026]", r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", None, DOTS),
    ("[@#_]", r"@+|#+|_+", None, KEEP),
    (r"[*\\]", r"\*+|(?:\\\*){1,3}", None, KEEP),
    ("[,;:\u3001]", r"[,;:\u3001]", None, KEEP),
    ("[?!]", r"[?!]+", None, KEEP),
    (_STOPS, _STOPS, None, KEEP),
    ("=", "=", None, KEEP),
    ("/", "/", None, KEEP),
    (_AN, r"{HTHING}\.", r"[,;:\u3001]", SOFT),
    (_AN, r"{HTHING}", None, SOFT),
    ("{L}|{D}", r"{THINGPART}(?:{HYPHEN}{THINGPART})*\.", r"[,;:\u3001]", KEEP),
    ("{L}|{D}", r"{THINGPART}(?:{HYPHEN}{THINGPART})*", None, KEEP),
    ("[A-Za-z]", r"{THINGA}\.", r"[,;:\u3001]", AMP),
    ("[A-Za-z]", r"{THINGA}", None, AMP),
    ("'", "'", "[A-Za-z][^ \t\n\r\u00A0]", QLEFT),
    (_A, r"{REDAUX}", None, QRIGHT),
    ("'|{QUOTECH}", r"''|{QUOTECH}{1,2}", None, QRIGHT),
    (_A, r"{APOS}", None, QRIGHT),
    ("[<>]", r"<<|>>", None, KEEP),
    (f"[{_MISC}]", f"[{_MISC}]", None, KEEP),
    ("{SPACE}", "{SPACE}+", None, SKIP),
    ("[\x00\u200B\u200E\u200F\uFEFF]", "[\x00\u200B\u200E\u200F\uFEFF]", None, SKIP),
    ("[\r\n\u2028\u2029\u000B\u000C\u0085]", "[\r\n\u2028\u2029\u000B\u000C\u0085]", None, SKIP),
    ("&", r"&(?i:nbsp);", None, SKIP),
]


_Rules = tuple[re.Pattern[str], tuple[tuple[int, int, int], ...]]
_firsts: dict[bool, list[re.Pattern[str]]] = {}
_by_char: dict[tuple[bool, str], _Rules] = {}
_by_rules: dict[tuple[bool, tuple[int, ...]], _Rules] = {}


def _compile(rules: tuple[int, ...], ascii: bool) -> _Rules:
    """One regex evaluating ``rules`` at a position, ``(?:(?=(main)(trail)))?`` each, and per rule
    (group of the main part, group that ends the whole match, action)."""
    parts, index, group = [], [], 0
    for k in rules:
        _, main, trail, action = _RULE_SPECS[k]
        if trail is None:
            parts.append(f"(?:(?=({_x(main, ascii)})))?")
            group += 1
            index.append((group, group, action))
        else:
            parts.append(f"(?:(?=({_x(main, ascii)})({_x(trail, ascii)})))?")
            group += 2
            index.append((group - 1, group, action))
    return re.compile("".join(parts)), tuple(index)


def _rules_for(char: str, ascii: bool) -> _Rules:
    """The rules that can start with ``char``, compiled once per distinct set, for ASCII-only
    text (``ascii``) or any text."""
    entry = _by_char.get((ascii, char))
    if entry is None:
        if ascii not in _firsts:
            _firsts[ascii] = [re.compile(_x(spec[0], ascii)) for spec in _RULE_SPECS]
        rules = tuple(k for k, first in enumerate(_firsts[ascii]) if first.fullmatch(char))
        entry = _by_rules.get((ascii, rules))
        if entry is None:
            entry = _by_rules[ascii, rules] = _compile(rules, ascii)
        _by_char[ascii, char] = entry
    return entry


_FIXED = {LRB: "-LRB-", RRB: "-RRB-", LCB: "-LCB-", RCB: "-RCB-", LSB: "-LSB-", RSB: "-RSB-",
          LT: "<", GT: ">", DASH: "--", DOTS: "..."}
_FRACTIONS = str.maketrans({"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3",
                            "\u2154": "2/3"})
_CURRENCY = str.maketrans({"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$",
                           "\u20A0": "$", "\u20AC": "$"})
_AMP = re.compile(r"(?i)&amp;")
_QUOTES = [(re.compile(chars), to) for chars, to in [("[\u0091\u2018\u201B\u2039]", "`"), (
    "[\u0092\u2019\u203A]", "'"), ("[\u0093\u201C\u00AB]", "``"), ("[\u0094\u201D\u00BB]", "''")]]
_ASCII_QUOTES = {True: (re.compile("&apos;|'"), "`", re.compile('"|&quot;'), "``"),
                 False: (re.compile("&apos;|'"), "'", re.compile('"|&quot;'), "''")}


def _latex_quotes(text: str, left: bool) -> str:
    """PTBLexer.latexQuotes: quotes to `` ` ' ''; ASCII ones by ``left`` (probably opening)."""
    single, single_to, double, double_to = _ASCII_QUOTES[left]
    text = double.sub(double_to, single.sub(single_to, text))
    for pattern, repl in _QUOTES:
        text = pattern.sub(repl, text)
    return text


def _act(action: int, text: str) -> tuple[str | None, int]:
    """The token a rule's action emits for ``text`` (None: nothing), and how many characters of
    ``text`` it consumes (the rest is pushed back and lexed again)."""
    n = len(text)
    if action == KEEP:
        return text, n
    if action == SOFT:  # PTBLexer.removeSoftHyphens
        return text.replace("\u00AD", "") or "-", n
    if action in _FIXED:
        return _FIXED[action], n
    if action == SKIP:
        return None, n
    if action in (QLEFT, QRIGHT):
        return _latex_quotes(text, action == QLEFT), n
    if action in (ASSIM3, ASSIM2):  # "cannot" -> "can" "not", "gonna" -> "gon" "na"
        back = 3 if action == ASSIM3 else 2
        return text[:-back], n - back
    if action == ACRONYM:  # before "The" etc.: "I." -> "I" "."; "U.S." -> "U.S." "."
        return (text[0], 1) if n == 2 else (text, n - 1)
    if action == REDUP:  # sentence-final abbreviation: "Inc." -> "Inc." "."
        return text, n - 1
    if action in (SGML, FRAC, PHONE):  # normalizeSpace: no spaces inside tokens
        text = text.replace(" ", "\u00A0")
    if action in (PHONE, SMILEY):  # normalizeParentheses
        return text.replace("(", "-LRB-").replace(")", "-RRB-"), n
    if action == HYPHENS:
        return ("--" if 3 <= n <= 4 else text), n
    if action == AMP:
        return _AMP.sub("&", text), n
    if action == FRAC2:
        return text.translate(_FRACTIONS), n
    if action == CURR:
        return text.translate(_CURRENCY), n
    return text, n  # SGML, FRAC
