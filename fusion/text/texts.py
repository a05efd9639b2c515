"""The texts the text encoder sees: one per product, one per review, pseudo-queries.

Product text (:func:`product_text`), fields in this order, each cleaned with
:func:`loaders.text.clean_text` (HTML tags stripped, entities decoded, whitespace
squeezed) and skipped when empty::

    <title>. Brand: <brand>. Category: <path 1>; <path 2>. <description> Features: <f1>; <f2>; ...

* the title is cut to ``max_title_chars``; the brand is left out when the title already
  starts with it (no point in saying it twice);
* categories: at most ``max_categories`` distinct paths (``"A > B"``);
* the description is cut to ``max_description_chars``, features to ``max_features``
  distinct bullets of at most ``max_feature_chars`` each;
* every cut happens at a word boundary and is marked with ``"…"``; the whole text is at
  most ``max_chars`` characters.

Most encoders read 128-256 tokens (roughly 500-1000 characters of English), so the order
puts what identifies a product (title, brand, category) first and the long tail last.

Review text (:func:`review_text`): ``"<summary>. <text>"`` cleaned, cut to
``max_review_chars``; a summary that merely repeats the start of the text is dropped.

Pseudo-queries (:func:`pseudo_queries`) stand in for search queries where a catalogue has
no judgements: short lower-case phrases built from an item's title, brand and leaf
category -- the first words of the title, ``"<brand> <leaf category>"``, ``"<leaf
category> <a title word>"`` -- deduplicated per item and seeded.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from kg.config import checked_fields
from loaders.dataset import CATEGORY_SEP
from loaders.text import clean_text

ELLIPSIS = "…"


@dataclass(frozen=True)
class ProductTextConfig:
    """Lengths and counts of the product and review texts (characters, not tokens)."""

    max_chars: int = 1000
    max_title_chars: int = 200
    max_categories: int = 2
    max_description_chars: int = 400
    max_features: int = 5
    max_feature_chars: int = 120
    max_review_chars: int = 600

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ProductTextConfig:
        return cls(**checked_fields(cls, values))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, ``"…"`` marking the cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:max(limit, 0)]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # do not throw away more than half for a clean cut
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + ELLIPSIS


def _sentence(text: str) -> str:
    return text if not text or text[-1] in ".!?…" else text + "."


def _as_list(value) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    return [value] if isinstance(value, str) and value else []


def product_text(title: str = "", brand: str = "", categories=(), description: str = "",
                 features=(), config: ProductTextConfig | None = None) -> str:
    """The one text of a product (see the module docstring for the layout)."""
    cfg = config or ProductTextConfig()
    title = truncate(clean_text(title), cfg.max_title_chars)
    brand = clean_text(brand)
    parts = []
    if title:
        parts.append(_sentence(title))
    if brand and not title.lower().startswith(brand.lower()):
        parts.append(f"Brand: {brand}.")
    paths: list[str] = []
    for path in _as_list(categories):
        path = CATEGORY_SEP.join(clean_text(level) for level in str(path).split(CATEGORY_SEP))
        if path and path not in paths:
            paths.append(path)
    if paths:
        parts.append(f"Category: {'; '.join(paths[: cfg.max_categories])}.")
    description = truncate(clean_text(description), cfg.max_description_chars)
    if description:
        parts.append(_sentence(description))
    bullets: list[str] = []
    for feature in _as_list(features):
        feature = truncate(clean_text(feature), cfg.max_feature_chars).rstrip(".")
        if feature and feature not in bullets:
            bullets.append(feature)
        if len(bullets) >= cfg.max_features:
            break
    if bullets:
        parts.append("Features: " + "; ".join(bullets) + ".")
    return truncate(" ".join(parts), cfg.max_chars)


def product_texts(items: pd.DataFrame, config: ProductTextConfig | None = None) -> pd.Series:
    """:func:`product_text` of every row of the canonical ``items`` table, indexed by item_id."""
    texts = [product_text(t, b, c, d, f, config) for t, b, c, d, f in zip(
        items["title"], items["brand"], items["categories"], items["description"], items["features"])]
    return pd.Series(texts, index=pd.Index(items["item_id"], name="item_id"), dtype="str", name="text")


def review_text(summary: str = "", text: str = "", config: ProductTextConfig | None = None) -> str:
    """``"<summary>. <text>"`` cleaned and cut; the summary is dropped when the text starts with it."""
    cfg = config or ProductTextConfig()
    summary, text = clean_text(summary), clean_text(text)
    if summary and text.lower().startswith(summary.lower().rstrip(".!?")):
        summary = ""
    joined = f"{_sentence(summary)} {text}".strip() if summary else text
    return truncate(joined, cfg.max_review_chars)


def review_texts(reviews: pd.DataFrame, config: ProductTextConfig | None = None) -> pd.Series:
    """:func:`review_text` of every row of the canonical ``reviews`` table, indexed by review_id."""
    texts = [review_text(s, t, config) for s, t in zip(reviews["summary"], reviews["text"])]
    return pd.Series(texts, index=pd.Index(reviews["review_id"], name="review_id"), dtype="str",
                     name="text")


_MODEL_NUMBER = re.compile(r"\b(?=[A-Za-z\-]*\d)[A-Za-z0-9\-]+\b")  # tokens with a digit: "X-120"
_TITLE_WORD = re.compile(r"[A-Za-z][A-Za-z'&\-]+")


def _leaf(categories) -> str:
    for path in _as_list(categories):
        leaf = clean_text(str(path).split(CATEGORY_SEP)[-1])
        if leaf:
            return leaf
    return ""


def item_pseudo_queries(title: str, brand: str, categories, n: int,
                        rng: np.random.Generator) -> list[str]:
    """Up to ``n`` distinct pseudo-queries of one item (lower case), most specific first."""
    title = clean_text(title)
    words = _TITLE_WORD.findall(_MODEL_NUMBER.sub(" ", title))
    brand = clean_text(brand).lower()
    leaf = _leaf(categories).lower()
    candidates: list[str] = []
    if words:
        k = int(rng.integers(2, 5)) if len(words) > 2 else len(words)
        candidates.append(" ".join(words[:k]).lower())
    if brand and leaf:
        candidates.append(f"{brand} {leaf}")
    known = {w.rstrip("s") for w in (brand + " " + leaf).split()}
    content = [w.lower() for w in words if w.lower().rstrip("s") not in known and len(w) > 3]
    if leaf and content:
        candidates.append(f"{content[int(rng.integers(0, len(content)))]} {leaf}")
    if len(content) >= 2:
        pick = rng.choice(len(content), size=2, replace=False)
        candidates.append(" ".join(content[i] for i in sorted(pick)))
    if brand and content:
        candidates.append(f"{brand} {content[-1]}")
    out: list[str] = []
    for q in candidates:
        q = " ".join(q.split())
        if q and q not in out:
            out.append(q)
    return out[:n]


def pseudo_queries(items: pd.DataFrame, per_item: int = 2, seed: int = 0) -> pd.DataFrame:
    """Pseudo search queries for every item: DataFrame ``query, item_id`` (seeded)."""
    rng = np.random.default_rng(seed)
    rows_q: list[str] = []
    rows_i: list[str] = []
    for item_id, title, brand, categories in zip(items["item_id"], items["title"], items["brand"],
                                                 items["categories"]):
        for q in item_pseudo_queries(title, brand, categories, per_item, rng):
            rows_q.append(q)
            rows_i.append(item_id)
    return pd.DataFrame({"query": pd.Series(rows_q, dtype="str"), "item_id": pd.Series(rows_i, dtype="str")})
