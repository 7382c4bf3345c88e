"""Pure-Python COCO caption tokenisation: what pycocoevalcap's PTBTokenizer produces, without Java.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` over all
captions (joined by newlines) and then drops a fixed list of punctuation tokens. This module
re-implements that lexer as a longest-match scanner over the same rules (JFlex semantics: the
longest match wins, trailing context counts towards its length, ties go to the earlier rule) and
applies the same punctuation filter, so BLEU / ROUGE-L / CIDEr see the same tokens.

Quirks kept on purpose because the reference has them: ``-lowerCase`` turns ``-LRB-`` into
``-lrb-``, which the (upper-case) punctuation list then fails to remove; ``cannot`` becomes
``can not``; abbreviations keep their period (``dr.``, ``u.s.``, ``no.``); a non-breaking space
joins fraction tokens (``3\u00a01/2``). British spellings are not americanised (3.4.1 does not).

Not reproduced: the reference's misalignment when a caption holds a carriage return or another
line separator (those become spaces here), and rules for rare tokens (SGML entities beyond
``&amp;``, some phone-number forms). ``tests/test_eval_captions.py`` holds outputs of the real jar.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenising (compared after
# lower-casing, so the bracket escapes survive).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# ---- character classes (JFlex's %caseless leaves character classes case-sensitive) ----------
# Python's \w also holds numeric non-digits (½, ², circled numbers) that Java does not call letters.
_NOT_LETTER_NUMERIC = (r"[\u00B2\u00B3\u00B9\u00BC-\u00BE\u2070-\u209F\u2150-\u218F\u2460-\u24FF"
                       r"\u2776-\u2793\u3007\u3021-\u3029\u3038-\u303A]")
_LETTER = rf"(?:(?!{_NOT_LETTER_NUMERIC})[^\W\d_]|[\u00AD\u0300-\u036F])"
_DIGIT = r"\d"
_ALNUM = rf"(?:{_LETTER}|{_DIGIT})"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_NEWLINE = r"(?:\r|\r?\n|[\u2028\u2029\u000B\u000C])"
_SPACENL = rf"(?:{_SPACE}|{_NEWLINE})"
_UPPER = r"[A-Z\u00C0-\u00D6\u00D8-\u00DE]"
_NAME = r"[A-Za-z][A-Za-z0-9_:.\-]*"
_SGML = (rf"<(?:[!?][A-Za-z\-][^>\r\n]*|{_NAME}(?:[ ]+(?:{_NAME}|{_NAME}[ ]*=[ ]*(?:'[^'\r\n]*'"
         rf"|\"[^\"\r\n]*\"|{_NAME})))*[ ]*\/?|\/{_NAME})[ ]*>")
_SENTEND = rf"{_SPACENL}(?:{_SPACENL}|{_UPPER}|{_SGML})"
_INSENTP = r"[,;:\u3001]"
_HYPHEN = r"[-_\u058A\u2010\u2011]"

_WORD = rf"{_LETTER}{_ALNUM}*(?:[.!?]{_LETTER}{_ALNUM}*)*"
_SWORD = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
_REDAUX = rf"{_APOS}(?:[msdMSD]|(?i:re|ve|ll))"
_SREDAUX = rf"(?i:n){_APOSETC}(?i:t)"
_NUM = rf"(?:{_DIGIT}*(?:[.:,\u00AD\u066B\u066C]{_DIGIT}+)+|{_DIGIT}+)"
_NUMBER = rf"[-+]?{_NUM}"
_APOWORD = "|".join([
    rf"{_APOS}(?i:n){_APOS}?", rf"[lLdDjJ]{_APOS}", rf"(?i:dunkin){_APOS}",
    rf"(?i:somethin){_APOS}", rf"(?i:ol){_APOS}", rf"{_APOS}(?i:em)",
    rf"[A-HJ-XZn]{_APOSETC}{_LETTER}{{2}}{_LETTER}*", rf"{_APOS}[2-9]0(?i:s)",
    rf"{_APOS}(?i:till?)", rf"{_LETTER}+[aeiouyAEIOUY]{_APOSETC}[aeiouA-Z]{_LETTER}*",
    rf"{_APOS}(?i:cause)", r"(?i:cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
])
_THING_PART = rf"(?:[dDoOlL]{_APOSETC}{_ALNUM})?{_ALNUM}+"
_THING = rf"{_THING_PART}(?:{_HYPHEN}{_THING_PART})*"
_ACRO = (r"[A-Za-z](?:\.[A-Za-z])+|(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)"
         r"|(?i:u\.s\.-(?:u\.k|u\.s\.s\.r))")
_HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|(?:{_ACRO})\.))+"
_THINGA = r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
_THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"


def _ci(words: str) -> str:
    """Alternation of literal words, matched case-insensitively (JFlex %caseless literals)."""
    return "(?i:" + words + ")"


_ABMONTH = _ci("jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_ABDAYS = _ci("mon|tue|tues|wed|thu|thurs|fri")
_ABSTATE = ("A(?i:rk)|I(?i:ll)|M(?i:ass)|M(?i:iss)|O(?i:re)|W(?i:ash)|" + _ci(
    "ala|ariz|calif|colo|conn|dak|del|fla|ga|ind|kans?|ky|la|md|mich|minn|mo|mont|neb|nev|okla"
    "|pa|penn|tenn|tex|va|vt|wisc?|wyo"))
_ABTITLE = "M(?i:iss)|" + _ci(
    "mr|mrs|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt"
    "|mt|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det")
_ABPTIT = _ci(r"jr|sr|bros|(?:ed|ph)\.d|blvd|rd|esq")
_ABCOMP = _ci("inc|cos?|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys")
_ABCOMP2 = _ci("invt|elec|natl|m[ft]g")
_ABNUM = _ci("ph|tel|est|ext|sq|ft")  # 3.4.1 keeps "no." only before a number (rule below)
# One rule per group: Python takes the first alternative that fits ("ph." before "ph.d."), JFlex
# the longest; separate rules get the longest match from the scanner.
_ABBREV1_GROUPS = [_ABMONTH, _ABDAYS, _ABSTATE, _ABCOMP, _ABNUM, _ABPTIT, _ci("etc|al|seq")]
# Python takes the first alternative that fits, JFlex the longest: longer alternatives go first.
_ABBREV4 = (rf"(?:{_ACRO}|{_ABTITLE}|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas)|{_ABCOMP2}"
            r"|[A-Za-z])")
# Words that, after an acronym, mark a sentence end (first letter case-sensitive, as in JFlex).
_ACRONYM_NEXT_WORDS = [
    "About", "According", "Additionally", "After", "An", "A", "As", "At", "But", "Earlier", "He",
    "Her", "Here", "However", "If", "In", "It", "Last", "Many", "More", r"Mr\.", r"Ms\.", "Now",
    "Once", "One", "Other", "Our", "She", "Since", "So", "Some", "Such", "That", "The", "Then",
    "There", "These", "They", "This", "We", "When", "While", "What", "Yet", "You"]
_ACRONYM_NEXT = "|".join(w[0] + f"(?i:{w[1:]})" for w in _ACRONYM_NEXT_WORDS)
_FULLURL = r"https?:\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"
_LIKELYURL = (r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
              r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+(?:com|net|org|edu)))"
              r"(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?")
_EMAIL = (r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)*"
          r"[^ \t\n\f\r\"<>|().\u00A0]+")
_PHONE = (r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])"
          r"[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}"
          r"|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}")
_QUOTES = (rf"{_APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E"
           r"\u201F\u2039\u203A\u00AB\u00BB]{1,2}")
_MISCSYMBOL = (r"[+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7"
               r"\u0387\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044"
               r"\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB"
               r"\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65<>]")
_FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_CURRENCY = {"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$", "\u20A0": "$",
             "\u20AC": "$"}

# A token action gets the matched token text and returns (tokens to emit, characters consumed).
Action = Callable[[str], tuple[list[str], int]]


def _keep(tok: str) -> tuple[list[str], int]:
    return [tok], len(tok)


def _const(out: str) -> Action:
    return lambda tok: ([out], len(tok))


def _split_after(n: int) -> Action:
    """Emit the first n characters; the rest is lexed again (JFlex yypushback)."""
    return lambda tok: ([tok[:n]], n)


def _duplicate_period(tok: str) -> tuple[list[str], int]:
    """Sentence-final abbreviation: keep its period and also emit the period as a token."""
    return [tok, "."], len(tok)


def _acronym_at_sentence_end(tok: str) -> tuple[list[str], int]:
    """``I.`` splits off its period; a longer acronym keeps it and emits the period again."""
    if len(tok) == 2:
        return [tok[0]], 1
    return [tok, "."], len(tok)


def _latex_quotes(tok: str, left: bool) -> str:
    s = re.sub(r"&apos;|'", "`" if left else "'", tok)
    s = re.sub(r"\"|&quot;", "``" if left else "''", s)
    s = re.sub("[\u0091\u2018\u201B\u2039]", "`", s)
    s = re.sub("[\u0092\u2019\u203A]", "'", s)
    s = re.sub("[\u0093\u201C\u00AB]", "``", s)
    return re.sub("[\u0094\u201D\u00BB]", "''", s)


def _quote(left: bool) -> Action:
    return lambda tok: ([_latex_quotes(tok, left)], len(tok))


def _nbsp(tok: str) -> tuple[list[str], int]:
    return [tok.replace(" ", "\u00A0")], len(tok)


def _phone(tok: str) -> tuple[list[str], int]:
    return [tok.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-")], len(tok)


def _hyphens(tok: str) -> tuple[list[str], int]:
    return (["--"] if 3 <= len(tok) <= 4 else [tok]), len(tok)


def _map_chars(table: dict[str, str]) -> Action:
    return lambda tok: (["".join(table.get(c, c) for c in tok)], len(tok))


def _skip(tok: str) -> tuple[list[str], int]:
    return [], len(tok)


def _newline(tok: str) -> tuple[list[str], int]:
    return ["\n"], len(tok)


# (token pattern, trailing-context pattern or None, action), in the reference lexer's rule order.
_RULES_SPEC: list[tuple[str, str | None, Action]] = [
    (r"(?i:cannot)", None, _split_after(3)),
    (r"(?i:gon|got|wan|lem|gim)", r"(?i:na|ta|me)(?![^\W\d_])", _keep),
    (rf"{_APOS}(?i:t)", r"(?i:is|was)", _keep),
    (_SGML, None, _nbsp),
    (r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", None, _const("--")),
    (r"&amp;", None, _const("&")),
    (r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", None, _keep),
    (_WORD, _REDAUX, _keep),
    (_SWORD, _SREDAUX, _keep),
    (_WORD, None, _keep),
    (_APOWORD, None, _keep),
    (r"[yY]" + _APOS, _LETTER, _keep),
    (_FULLURL, None, _keep),
    (_LIKELYURL, None, _keep),
    (_EMAIL, None, _keep),
    (r"@[a-zA-Z_][a-zA-Z_0-9]*|#" + _WORD, None, _keep),
    (_REDAUX, r"[^A-Za-z]", _quote(False)),
    (_SREDAUX, None, _quote(False)),
    (rf"{_DIGIT}{{1,2}}[\-\/]{_DIGIT}{{1,2}}[\-\/]{_DIGIT}{{2,4}}", None, _keep),
    (_NUMBER, None, _keep),
    (r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)",
     None, _keep),
    (rf"(?:{_DIGIT}{{1,4}}[- \u00A0])?{_DIGIT}{{1,4}}(?:\\?\/|\u2044){_DIGIT}{{1,4}}", None, _nbsp),
    (r"[\u00BC\u00BD\u00BE\u2153-\u215E]", None, _map_chars(_FRACTIONS)),
    ((r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|(?i:pro|anti)-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls"
      rf"|(?i:cap){_APOS}(?i:n)|(?i:c){_APOS}(?i:est)"), None, _keep),
    (_THING3, None, _keep),
    (r"[A-Z]*\$|#", None, _keep),
    ((r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AA\u20AC\u20B9\u060B\u0E3F\u20A4\uFFE0"
      r"\uFFE1\uFFE5\uFFE6]"), None, _map_chars(_CURRENCY)),
    (rf"(?:{_ACRO}|[A-Za-z])\.", rf"{_SPACENL}+(?:{_ACRONYM_NEXT}){_SPACE}",
     _acronym_at_sentence_end),
    *[(rf"(?:{group})\.", _SENTEND, _duplicate_period) for group in _ABBREV1_GROUPS],
    *[(rf"(?:{group})\.", r"[\s\S]{2}", _keep) for group in _ABBREV1_GROUPS],
    *[(rf"(?:{group})\.", None, _duplicate_period) for group in _ABBREV1_GROUPS],
    (r"(?i:nos?)\.", rf"{_SPACENL}?{_DIGIT}", _keep),
    (rf"{_ABBREV4}\.", None, _keep),
    (_ABBREV4, _SPACE, _keep),
    (_ACRO, _SPACENL, _keep),
    (rf"{_APOS}[0-9][0-9]", _SPACENL, _keep),
    (rf"{_WORD}\.", _INSENTP, _keep),
    (_PHONE, None, _phone),
    (r"\"|&quot;", r"[A-Za-z0-9$]", _quote(True)),
    (r"\"|&quot;", None, _quote(False)),
    (r"\[", None, _const("-LSB-")),
    (r"\]", None, _const("-RSB-")),
    (r"\{", None, _const("-LCB-")),
    (r"\}", None, _const("-RCB-")),
    (r"\(", None, _const("-LRB-")),
    (r"\)", None, _const("-RRB-")),
    (r"-+", None, _hyphens),
    (r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", None, _const("...")),
    (r"@+|#+|_+", None, _keep),
    (r"\*+|(?:\\\*){1,3}", None, _keep),
    (_INSENTP, None, _keep),
    (r"[?!]+", None, _keep),
    (r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", None, _keep),
    (r"=", None, _keep),
    (r"\/", None, _keep),
    (rf"{_HTHING}\.", _INSENTP, _keep),
    (_HTHING, None, _keep),
    (rf"{_THING}\.", _INSENTP, _keep),
    (_THING, None, _keep),
    (rf"{_THINGA}\.", _INSENTP, _keep),
    (_THINGA, None, _keep),
    (r"'", r"[A-Za-z][^ \t\n\r\u00A0]", _quote(True)),
    (_REDAUX, None, _quote(False)),
    (_QUOTES, None, _quote(False)),
    (r"<<|>>", None, _keep),
    (_MISCSYMBOL, None, _keep),
    (rf"\x00|{_SPACE}+|[\u200B\u200E\u200F\uFEFF]", None, _skip),
    (_NEWLINE, None, _newline),
    (r"&nbsp;", None, _skip),
]
_RULES = [(re.compile(f"(?P<t>{tok})" + (f"(?=(?P<c>{ctx}))" if ctx else "")), action)
          for tok, ctx, action in _RULES_SPEC]

# Fast path: a plain word, optionally followed by one punctuation mark, then a space or the end,
# lexes to the word (and the mark) unless a rule splits the word or it is an abbreviation.
_PLAIN_WORD = re.compile(r"([A-Za-z]+)([.,;:!?]?)(?=[ \t]|$)")
_SPLIT_WORDS = frozenset(["cannot", "gonna", "gotta", "wanna", "lemme", "gimme"])
_ANY_ABBREV = re.compile("|".join([rf"(?:{g})\." for g in _ABBREV1_GROUPS]
                                  + [rf"{_ABBREV4}\.", r"(?i:nos?)\."]))
_NON_BMP = re.compile("[\U00010000-\U0010FFFF]")


def _lex(text: str, stop: int) -> list[str]:
    """Tokens of text[:stop], using text[stop:] only as trailing context."""
    tokens: list[str] = []
    pos = 0
    while pos < stop:
        if text[pos] in " \t":  # no rule starts with a space: skip it without the scanner
            pos += 1
            continue
        plain = _PLAIN_WORD.match(text, pos, stop)
        if plain and plain.group(1).lower() not in _SPLIT_WORDS and not (
                plain.group(2) == "." and _ANY_ABBREV.fullmatch(plain.group())):
            tokens.extend(t for t in plain.groups() if t)
            pos = plain.end()
            continue
        best: tuple[int, Action, str] | None = None
        for rx, action in _RULES:
            m = rx.match(text, pos)
            if m is None or m.end("t") == pos or m.end("t") > stop:
                continue
            length = m.end("t") - pos + len(m.group("c") or "") if "c" in rx.groupindex else (
                m.end("t") - pos)
            if best is None or length > best[0]:
                best = (length, action, m.group("t"))
        if best is None:  # untokenizable character: the reference deletes it
            pos += 1
            continue
        out, consumed = best[1](best[2])
        tokens.extend(out)
        pos += consumed
    return tokens


def ptb_tokenize(captions: Sequence[str]) -> list[str]:
    """Tokenise captions like pycocoevalcap's PTBTokenizer: one string of space-joined tokens each.

    Captions are lexed as consecutive lines (as the reference does), so each line's end sees the
    next caption's start as context; then tokens are lower-cased and punctuation is dropped.
    """
    lines = [_NON_BMP.sub("\x00", re.sub(r"[\r\n\u2028\u2029\u000B\u000C\u0085]", " ", c))
             for c in captions]
    out = []
    for i, line in enumerate(lines):
        context = "\n" + lines[i + 1] if i + 1 < len(lines) else ""
        tokens = [t.lower() for t in _lex(line + context, len(line))]
        out.append(" ".join(t for t in tokens if t not in PUNCTUATIONS))
    return out
