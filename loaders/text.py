"""Small text helpers shared by the loaders: HTML clean-up, prices, category paths.

* :func:`clean_text` -- strip HTML tags, decode entities (``html.unescape``), squeeze
  whitespace; anything that is not a string (``None``, a number …) becomes ``""``.
* :func:`clean_lines` -- a list (or a lone string) of texts, cleaned, empties dropped.
* :func:`parse_price` -- ``"$1,250.00"`` -> 1250.0, ``"$10.00 - $20.00"`` -> 10.0 (the low
  end), a number -> itself, anything else (``""``, ``None``, scraped HTML) -> NaN.
* :func:`category_path` -- one category path from a list of levels, root first, with
  consecutive duplicate levels collapsed and scraped junk cut off (see there).
"""

from __future__ import annotations

import html
import math
import re

from loaders.dataset import CATEGORY_SEP

_BREAK = re.compile(r"<\s*/?\s*(br|p|div|li|ul|ol|tr|h\d)\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"<\s*[/!]?[A-Za-z][^<>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_PRICE = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*-\s*\$?\s*(?:\d[\d,]*(?:\.\d+)?))?$")

#: a category level longer than this is scraped text, not a category name
MAX_CATEGORY_LEVEL = 60


def clean_text(value: object, *, multiline: bool = False) -> str:
    """Plain text from a possibly HTML-laden value; ``""`` for non-strings.

    Tags are removed (block tags such as ``<br>``, ``<p>``, ``<div>``, ``<li>`` become a
    line break when ``multiline``, else a space), then entities are decoded, then runs of
    whitespace are squeezed.
    """
    if not isinstance(value, str) or not value:
        return ""
    text = value
    if "<" in text:
        text = _BREAK.sub("\n" if multiline else " ", text)
        text = _TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = _SPACES.sub(" ", text)
    if multiline:
        return _NEWLINES.sub("\n", text).strip()
    return " ".join(text.split())


def clean_lines(values: object) -> list[str]:
    """Clean each text of a list (a lone string counts as a one-element list); drop empties."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return []
    out = []
    for v in values:
        t = clean_text(v, multiline=True)
        if t:
            out.append(t)
    return out


def parse_price(value: object) -> float:
    """A unit price, or NaN when unknown or unparsable (never negative)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        v = float(value)
        return v if math.isfinite(v) and v >= 0 else math.nan
    if not isinstance(value, str):
        return math.nan
    m = _PRICE.match(value.strip())
    if not m:
        return math.nan
    return float(m.group(1).replace(",", ""))


def _is_junk_level(level: str) -> bool:
    # Amazon 2018 meta sometimes appends feature bullets or stray HTML to `category`:
    # ["Gift Cards", "Gift Cards", "No expiration, no fees.", …] or [..., "</span></span>"]
    return (not level or len(level) > MAX_CATEGORY_LEVEL or level.endswith(".")
            or ". " in level)


def category_path(levels: object) -> str:
    """``" > "``-joined path of ``levels`` (root first); ``""`` when there is none.

    Each level is cleaned with :func:`clean_text`; consecutive duplicates collapse
    (``["Gift Cards", "Gift Cards"]`` -> ``"Gift Cards"``); the path is cut at the first
    level that is empty after cleaning or looks like a sentence (ends with a period,
    contains ``". "`` or is longer than :data:`MAX_CATEGORY_LEVEL` characters), since
    such levels are scraped page text rather than categories.
    """
    if isinstance(levels, str):
        levels = [levels]
    if not isinstance(levels, (list, tuple)):
        return ""
    path: list[str] = []
    for raw in levels:
        level = clean_text(raw)
        if _is_junk_level(level):
            break
        if not path or path[-1] != level:
            path.append(level)
    return CATEGORY_SEP.join(path)
