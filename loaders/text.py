"""Small text helpers shared by the loaders: HTML clean-up, titles, prices, category paths.

* :func:`clean_text` -- strip HTML tags (also a tag cut off at either end of the text,
  such as ``<span class="a-size-medium a-color-secondary"``, and whole ``<script>`` /
  ``<style>`` elements), decode entities (``html.unescape``), squeeze whitespace;
  anything that is not a string (``None``, a number …) becomes ``""``.
* :func:`has_markup` -- whether a text holds such markup (what :func:`clean_text` removes).
* :func:`is_meaningful` / :func:`fallback_title` -- a title with no letter or digit left
  is replaced by a display name: ``"<brand> — <leaf category>"``, else the brand, else the
  description's first :data:`FALLBACK_WORDS` words, else the leaf category, else the id.
* :func:`clean_lines` -- a list (or a lone string) of texts, cleaned, empties dropped.
* :func:`parse_price` -- ``"$1,250.00"`` -> 1250.0, ``"$10.00 - $20.00"`` -> 10.0 (the low
  end), decimal commas (``"12,99"`` -> 12.99, ``"1.299,00"`` -> 1299.0), a currency symbol
  or code before or after the number (``"€12.99"``, ``"12,99 €"``, ``"12.99 USD"``,
  ``"CA$ 5.00"``: dropped, not converted -- one shop has one currency), a number -> itself;
  anything else (``""``, ``None``, scraped HTML, ``"from $9.99"``, an ambiguous ``"1,2,3"``
  or ``"12,3456"``, a number too large to be finite) -> NaN. Never negative, never infinite.
  ``"2.500"`` / ``"1.299"`` (a dot, then groups of three digits) is read as a decimal point
  unless the caller knows the prices around it use decimal commas (``dot_thousands``:
  2500.0); :data:`DECIMAL_COMMA`, :data:`DECIMAL_POINT` and :data:`DOT_GROUPS` let it tell.
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
_SCRIPT = re.compile(r"<\s*(script|style)\b[^<>]*>.*?(?:<\s*/\s*\1\s*>|$)", re.IGNORECASE | re.DOTALL)
#: the HTML elements whose start may be left unclosed at the end of a scraped text
_TAG_NAMES = ("a|abbr|b|big|blockquote|body|br|button|center|code|div|em|font|form|h[1-6]|head|hr|html|"
              "i|iframe|img|input|label|li|link|meta|noscript|ol|option|p|pre|script|section|select|"
              "small|span|strong|style|sub|sup|table|tbody|td|th|thead|tr|u|ul")
_ATTRS = r"""(?:\s+[\w:.-]+(?:\s*=\s*(?:"[^"]*"?|'[^']*'?|[^\s"'<>]*))?)*\s*/?"""
#: ``<span class="a-size-medium"`` at the end: a start tag whose ``>`` was cut off
_UNCLOSED = re.compile(rf"<\s*/?\s*(?:{_TAG_NAMES})(?:{_ATTRS})$", re.IGNORECASE)
#: ``class="a-size-medium">`` at the start: the rest of a tag whose ``<`` was cut off
_CUT_START = re.compile(r"""^\s*(?:[\w:.-]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*')\s*)+/?>""")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
#: a currency before or after a price: a symbol, ``CA$`` / ``US$`` …, an ISO code, ``kr`` …
_CURRENCY = r"(?:[A-Z]{0,3}\$|[€£¥₹₩₽₺₪฿¢]|[A-Z]{3}|kr\.?|zł|Rs\.?)"
#: the number of a price (see :func:`parse_price`): ``1,234.56`` (comma thousands), ``1.299,00``
#: (dot thousands, decimal comma), ``12,99`` (decimal comma), ``12.99``, ``12``, ``.99``
_AMOUNT = (r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3})+,\d{1,2}|\d+,\d{1,2}|\d+(?:\.\d+)?|\.\d+"
           r"|\d{1,3}(?:\.\d{3}){2,})")
#: a price written with a decimal comma: a comma, then one or two digits ending the number
#: (``12,99``, ``5,9``, ``1.299,00``, ``12,99 €``)
DECIMAL_COMMA = r"(?<![\d,.])\d+(?:\.\d{3})*,\d{1,2}(?![\d,.])"
#: a price written with a decimal point: a dot then one, two or four or more digits
#: (``12.99``, ``12.5``, ``.99``, ``3.14159``), or a comma grouping thousands (``1,299``, ``1,234.56``)
DECIMAL_POINT = r"(?<![\d,.])\d*\.(?:\d{1,2}|\d{4,})(?![\d,.])|(?<![\d,.])\d{1,3}(?:,\d{3})+(?![\d,])"
#: a number that is only a dot then groups of exactly three digits (``2.500``, ``1.299``,
#: ``1.234.567``): thousands with decimal commas, a decimal point otherwise -- the ambiguous case
DOT_GROUPS = r"(?<![\d.,])[1-9]\d{0,2}(?:\.\d{3})+(?![\d.,])"
_DOT_GROUPS = re.compile(rf"[1-9]\d{{0,2}}(?:\.\d{{3}})+")
_PRICE = re.compile(rf"^(?:{_CURRENCY}\s*)?({_AMOUNT})(?:\s*{_CURRENCY})?"
                    rf"(?:\s*[-–]\s*(?:{_CURRENCY}\s*)?{_AMOUNT}(?:\s*{_CURRENCY})?)?$")

#: a category level longer than this is scraped text, not a category name
MAX_CATEGORY_LEVEL = 60
#: how many words of the description a fallback title takes
FALLBACK_WORDS = 8
#: between brand and category in a fallback title
FALLBACK_SEP = " — "


def clean_text(value: object, *, multiline: bool = False) -> str:
    """Plain text from a possibly HTML-laden value; ``""`` for non-strings.

    ``<script>`` and ``<style>`` elements go with their content; tags are removed (block
    tags such as ``<br>``, ``<p>``, ``<div>``, ``<li>`` become a line break when
    ``multiline``, else a space), as is a start tag cut off at the end of the text
    (``… <span class="a-size-medium"``) or a tag's tail at its start (``class="x">…``);
    then entities are decoded, then runs of whitespace are squeezed.
    """
    if not isinstance(value, str) or not value:
        return ""
    text = value
    if "<" in text:
        text = _SCRIPT.sub(" ", text)
        text = _BREAK.sub("\n" if multiline else " ", text)
        text = _TAG.sub("", text)
        text = _UNCLOSED.sub("", text)
    if ">" in text:
        text = _CUT_START.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = _SPACES.sub(" ", text)
    if multiline:
        return _NEWLINES.sub("\n", text).strip()
    return " ".join(text.split())


def has_markup(value: object) -> bool:
    """Whether ``value`` is a string holding HTML markup that :func:`clean_text` removes
    (a tag, a cut-off tag at either end, a script or style element); entities alone are not."""
    if not isinstance(value, str) or ("<" not in value and ">" not in value):
        return False
    return bool(_TAG.search(value) or _UNCLOSED.search(value) or _CUT_START.search(value))


def is_meaningful(text: str) -> bool:
    """Whether a (cleaned) text has at least one letter or digit."""
    return any(ch.isalnum() for ch in text)


def fallback_title(item_id: str, brand: str = "", categories: list[str] | None = None,
                   description: str = "") -> str:
    """A display name for a product whose title is empty or only markup.

    ``"<brand> — <leaf category>"`` when both are known (``"Acme — Gift Cards"``; the leaf
    is the last level of the first category path), else the brand, else the first
    :data:`FALLBACK_WORDS` words of the description (``"…"`` when cut), else the leaf
    category, else ``item_id``. Each part must be meaningful (:func:`is_meaningful`).
    """
    leaf = ""
    if categories:
        leaf = categories[0].split(CATEGORY_SEP)[-1].strip()
    brand = brand if is_meaningful(brand) else ""
    leaf = leaf if is_meaningful(leaf) else ""
    if brand and leaf:
        return f"{brand}{FALLBACK_SEP}{leaf}"
    if brand:
        return brand
    words = description.split()
    if is_meaningful(" ".join(words[:FALLBACK_WORDS])):
        return " ".join(words[:FALLBACK_WORDS]) + ("…" if len(words) > FALLBACK_WORDS else "")
    return leaf or item_id


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


def parse_price(value: object, *, dot_thousands: bool = False) -> float:
    """A unit price, or NaN when unknown or unparsable (never negative).

    A comma followed by exactly three digits (then the end, a dot or another such group)
    separates thousands: ``"1,234"``, ``"$1,234,567"``, ``"1,234.56"``. A comma followed by
    one or two digits at the end is a decimal comma: ``"12,99"`` -> 12.99, ``"5,9"`` -> 5.9,
    and with dots as thousands separators ``"1.299,00"`` -> 1299.0. Any other mix
    (``"1,2,3"``, ``"12,3456"``, ``"1.234.567"``) is ambiguous: NaN. A currency (``$``, ``€``,
    ``£``, ``¥``, ``CA$``, ``US$``, ``EUR``, ``USD`` …) may stand before or after the number,
    with or without a space; it is dropped. A range ``"$1.00 - $5.00"`` gives its low end.

    A number that is a dot then groups of exactly three digits and nothing else (``"2.500"``,
    ``"1.299 €"``, :data:`DOT_GROUPS`) cannot be told on its own: by default the dot is a
    decimal point (``"2.500"`` -> 2.5; ``"1.234.567"`` -> NaN). ``dot_thousands=True`` -- the
    caller knows the prices around it use decimal commas (:func:`loaders.tabular` decides per
    column) -- reads the dots as thousands separators: ``"2.500 €"`` -> 2500.0,
    ``"1.234.567"`` -> 1234567.0.
    """
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
    amount = m.group(1)
    comma = amount.rfind(",")
    if comma < 0 and dot_thousands and _DOT_GROUPS.fullmatch(amount):
        v = float(amount.replace(".", ""))
    elif comma < 0:
        v = float(amount) if amount.count(".") <= 1 else math.nan  # 1.234.567: ambiguous
    elif len(amount) - comma <= 3:  # one or two digits after the last comma: a decimal comma
        v = float(amount.replace(".", "").replace(",", "."))
    else:
        v = float(amount.replace(",", ""))
    return v if math.isfinite(v) else math.nan  # 400 digits make inf: not a price


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
