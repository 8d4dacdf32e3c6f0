"""Ordinal ranks: parse "ninth", "twenty-first", "1st", "28.0th" (the source's float defect) and render them back.

The Linguacodus training CSV writes places 1-20 as words ("writing the ninth place instruction") and places
above 20 as a float with a suffix ("28.0th", "22.0nd"): a formatting defect of the source that
`parse_rank` accepts and `release_ordinal` reproduces on purpose (for byte-exact reproduction of the release).
"""

from __future__ import annotations

import re

from src.errors import PipesynthError

_UNITS = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]
_CARDINAL_UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_TENS_ORDINAL = [
    "",
    "",
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
]

_WORD_TO_INT: dict[str, int] = {w: i for i, w in enumerate(_UNITS) if i > 0}
_WORD_TO_INT.update({w: 10 * i for i, w in enumerate(_TENS_ORDINAL) if w})
# "twenty-first", "ninety ninth": a cardinal tens word followed by an ordinal unit
_COMPOUND = re.compile(rf"^({'|'.join(t for t in _TENS if t)})[-\s]+({'|'.join(_UNITS[1:10])})$")
# "1st", "22nd", "28.0th", "22.0nd", "7", "7.0" (suffixes are not checked against the number: the source
# is not always right about them and the number is what matters)
_NUMERIC = re.compile(r"^#?(\d+)(?:\.0+)?\s*(?:st|nd|rd|th)?$")


def parse_rank(text: str | int) -> int:
    """The place (1-based) written in `text`: "first", "twentieth", "twenty-first", "1st", "28.0th", "22.0nd", 5."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().lower()
        if s in _WORD_TO_INT:
            value = _WORD_TO_INT[s]
        elif m := _COMPOUND.match(s):
            value = 10 * _TENS.index(m.group(1)) + _UNITS.index(m.group(2))
        elif m := _NUMERIC.match(s):
            value = int(m.group(1))
        else:
            raise PipesynthError(
                f"cannot read a rank from {text!r}",
                'write it as a number ("7", "7th") or an English ordinal ("seventh", "twenty-first")',
            )
    if value < 1:
        raise PipesynthError(f"rank {text!r} is below 1", "ranks are 1-based places in a leaderboard")
    return value


def ordinal_suffix(n: int) -> str:
    """1 -> "1st", 22 -> "22nd", 13 -> "13th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ordinal_words(n: int) -> str:
    """1 -> "first", 20 -> "twentieth", 21 -> "twenty-first" (1..99); larger numbers fall back to "100th"."""
    if 1 <= n < 20:
        return _UNITS[n]
    if 20 <= n < 100:
        tens, units = divmod(n, 10)
        return _TENS_ORDINAL[tens] if units == 0 else f"{_TENS[tens]}-{_UNITS[units]}"
    return ordinal_suffix(n)


def release_ordinal(n: int) -> str:
    """The wording of the Linguacodus release: words up to 20, then the source's float defect ("28.0th")."""
    if 1 <= n <= 20:
        return _UNITS[n] if n < 20 else "twentieth"
    suffix = ordinal_suffix(n)[len(str(n)) :]
    return f"{float(n)}{suffix}"
