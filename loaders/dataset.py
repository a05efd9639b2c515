"""The canonical tables every loader produces.

A :class:`Dataset` holds eight pandas DataFrames with fixed columns and dtypes
(:data:`TABLES`). Dtype conventions:

* ``str``     -- pandas string column; a missing text is ``""`` (never NaN).
* ``float64`` -- NaN means unknown (e.g. a product without a price).
* ``int64``   -- timestamps are Unix seconds; ``0`` means unknown.
* ``list``    -- an object column holding a Python ``list[str]`` per row.

Accepted values, checked by every reader (a value outside is an error reject naming
file, line and field, never stored) and again by :meth:`Dataset.validate`:

* a **timestamp** (``interactions.timestamp``, ``reviews.timestamp``) is a whole number
  of Unix seconds with ``MIN_TIMESTAMP <= t < MAX_TIMESTAMP``, i.e. from 1970-01-01
  (``0`` = unknown) to before 2200-01-01 00:00 UTC. Readers reject a non-integral number
  of seconds ("not an integer"); sub-second parts are dropped only where the unit is
  finer than a second (milliseconds, an ISO datetime with a fraction) or where the
  format declares the timestamp a float (RecBole's ``timestamp:float``, floored).
* a **price** (``items.price``) is finite and ``>= 0``, or NaN (unknown). An Amazon price
  string that is not a price (scraped HTML, ``"free"``) is NaN; ``inf`` is never stored.
* an **id** (of a user, a product, a review, an entity or a relation: :data:`ID_COLUMNS`)
  holds no control character (:data:`CONTROL_CHARACTERS`: NUL, tab, newline, escape …, the
  C0 and C1 ranges): such an id printed raw garbles a terminal or a CSV, and the store
  joins ids with one (:data:`kg.queries.PAIR_SEP`). Readers reject the record naming file,
  line and field ("control character in an id").

:func:`timestamps_ok`, :func:`prices_ok` and :func:`ids_ok` are these rules, vectorised,
for all readers.

Tables (key columns first):

============  ==================================================================
users         user_id, name
items         item_id, title, description, brand, categories, price, features
interactions  user_id, item_id, event, value, timestamp, split
reviews       review_id, user_id, item_id, rating, summary, text, timestamp
item_links    src_item, dst_item, relation  (also_buy / also_view / bought_together)
triples       head, relation, tail          (external knowledge graph, entity ids)
item_entities item_id, entity_id            (product -> external entity)
judgements    query, item_id, relevance     (graded search relevance, 0 = irrelevant)
============  ==================================================================

``items.categories`` is a list of category *paths*, each written root-first and
joined by ``" > "`` (``"Electronics > Audio > Headphones"``); a flat genre is a
one-level path. ``interactions.event`` is one of :data:`EVENTS`; ``value`` is the
rating for ``rating``/``review`` events, the quantity for ``purchase`` and ``cart``
(1 when unknown) and 1 otherwise. ``split`` is ``""`` unless the source ships
its own split (KGAT's ``train``/``test``; any source may give ``train``/``valid``/``test``,
:data:`SPLITS`; a given ``valid`` part is used as the validation set as given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Iterable

import numpy as np
import pandas as pd

from loaders.errors import DatasetError
from loaders.report import LoadReport

EVENTS: tuple[str, ...] = ("impression", "view", "click", "cart", "purchase", "rating", "review")
LINK_RELATIONS: tuple[str, ...] = ("also_buy", "also_view", "bought_together")
SPLITS: tuple[str, ...] = ("", "train", "valid", "test")  #: values of interactions.split
CATEGORY_SEP = " > "

#: the first accepted timestamp: 1970-01-01 00:00 UTC (``0`` also means "unknown")
MIN_TIMESTAMP = 0
#: the first timestamp *not* accepted: 2200-01-01 00:00 UTC
MAX_TIMESTAMP = 7_258_118_400
#: the reject reason for a timestamp outside [MIN_TIMESTAMP, MAX_TIMESTAMP)
TIMESTAMP_RANGE = "timestamp out of range: not Unix seconds from 1970-01-01 to before 2200-01-01 UTC"
#: the lowest accepted price (prices must also be finite; NaN = unknown is allowed)
MIN_PRICE = 0.0
#: the reject reason for a price that is infinite or negative
PRICE_RANGE = "price out of range: not a finite number >= 0"
#: characters no id may hold: the C0 and C1 control characters (NUL, tab, newline, escape, DEL …)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the reject reason (its kind) for an id holding a control character; the detail is the id's repr
CONTROL_IN_ID = "control character in an id"
#: the id columns of each table (``judgements.query`` is search text, not an id)
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",), "items": ("item_id",), "interactions": ("user_id", "item_id"),
    "reviews": ("review_id", "user_id", "item_id"), "item_links": ("src_item", "dst_item"),
    "triples": ("head", "relation", "tail"), "item_entities": ("item_id", "entity_id"), "judgements": ("item_id",),
}


def timestamps_ok(seconds) -> np.ndarray:
    """Bool array: which ``seconds`` (numbers, a scalar or array-like) are accepted
    timestamps, ``MIN_TIMESTAMP <= t < MAX_TIMESTAMP``; NaN and ``inf`` are not."""
    t = np.asarray(seconds, dtype="float64")
    with np.errstate(invalid="ignore"):
        return (t >= MIN_TIMESTAMP) & (t < MAX_TIMESTAMP)


def prices_ok(prices) -> np.ndarray:
    """Bool array: which ``prices`` are accepted -- finite and ``>= MIN_PRICE``, or NaN."""
    p = np.asarray(prices, dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.isnan(p) | (np.isfinite(p) & (p >= MIN_PRICE))


def ids_ok(ids) -> np.ndarray:
    """Bool array: which ``ids`` (strings, a scalar or array-like) hold no control character
    (:data:`CONTROL_CHARACTERS`)."""
    s = ids if isinstance(ids, pd.Series) else pd.Series(np.atleast_1d(np.asarray(ids, dtype=object)), dtype=object)
    s = s.astype(str)  # pandas' own string dtype (what the tables hold) is searched in C
    return ~s.str.contains(CONTROL_CHARACTERS.pattern, regex=True).to_numpy(dtype=bool)


def control_problem(value: object) -> str | None:
    """The reject reason for one id holding a control character (:data:`CONTROL_IN_ID`,
    then the id's ``repr``, which shows them escaped: ``'u\\x00x'``); None when it holds none."""
    text = str(value)
    return f"{CONTROL_IN_ID}: {text!r}" if CONTROL_CHARACTERS.search(text) else None


def escaped(value: object) -> str:
    """``value`` as text with each control character written as its ``\\xNN`` escape (for a
    reject report's value column: the raw character would garble the CSV or a terminal)."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value))


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # "str" | "float64" | "int64" | "list"
    doc: str
    default: object = None  # the value of a missing column (None: '' / NaN / 0 / [] by dtype)


TABLES: dict[str, tuple[Column, ...]] = {
    "users": (
        Column("user_id", "str", "external user id, unique, non-empty"),
        Column("name", "str", "display name, '' if unknown"),
    ),
    "items": (
        Column("item_id", "str", "external product id, unique, non-empty"),
        Column("title", "str", "product title"),
        Column("description", "str", "plain-text description (HTML entities decoded)"),
        Column("brand", "str", "brand or store, '' if unknown"),
        Column("categories", "list", "category paths, root first, joined by ' > '"),
        Column("price", "float64", "unit price, NaN if unknown"),
        Column("features", "list", "bullet-point features"),
        Column("available", "int64", "1: on sale; 0: withdrawn (never recommended or found unless asked for)", 1),
    ),
    "interactions": (
        Column("user_id", "str", "user id (in users)"),
        Column("item_id", "str", "item id (in items)"),
        Column("event", "str", "one of EVENTS"),
        Column("value", "float64", "rating, quantity or 1"),
        Column("timestamp", "int64", "Unix seconds, 0 if unknown"),
        Column("split", "str", "'' or the source's own split: 'train', 'valid' or 'test'"),
    ),
    "reviews": (
        Column("review_id", "str", "unique review id"),
        Column("user_id", "str", "author (in users)"),
        Column("item_id", "str", "reviewed item (in items)"),
        Column("rating", "float64", "star rating, NaN if none"),
        Column("summary", "str", "review headline"),
        Column("text", "str", "review body"),
        Column("timestamp", "int64", "Unix seconds, 0 if unknown"),
    ),
    "item_links": (
        Column("src_item", "str", "item id (in items)"),
        Column("dst_item", "str", "item id (in items)"),
        Column("relation", "str", "one of LINK_RELATIONS"),
    ),
    "triples": (
        Column("head", "str", "entity id"),
        Column("relation", "str", "relation name, e.g. film.film.director"),
        Column("tail", "str", "entity id"),
    ),
    "item_entities": (
        Column("item_id", "str", "item id (in items)"),
        Column("entity_id", "str", "entity id (may or may not occur in triples)"),
    ),
    "judgements": (
        Column("query", "str", "search query text"),
        Column("item_id", "str", "item id (in items)"),
        Column("relevance", "int64", "graded relevance, 0 = irrelevant"),
    ),
}

#: Columns that identify a row; duplicates of these are not allowed.
KEYS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "items": ("item_id",),
    "interactions": ("user_id", "item_id", "event", "timestamp"),
    "reviews": ("review_id",),
    "item_links": ("src_item", "dst_item", "relation"),
    "triples": ("head", "relation", "tail"),
    "item_entities": ("item_id", "entity_id"),
    "judgements": ("query", "item_id"),
}


def isin(values: pd.Series, universe) -> np.ndarray:
    """``values.isin(universe)`` as a bool array -- via factorize, which is much faster
    than ``Series.isin`` on pandas 3 Arrow-backed strings (that iterates in Python)."""
    try:
        universe = pd.Series(np.asarray(universe)).astype(values.dtype)
    except (TypeError, ValueError):
        return values.isin(universe).to_numpy()
    codes, _ = pd.factorize(pd.concat([universe, values], ignore_index=True))
    return np.isin(codes[len(universe):], codes[: len(universe)])


def _coerce(col: Column, values: pd.Series) -> pd.Series:
    if col.dtype == "str":
        return values.fillna("").astype(str)
    if col.dtype == "float64":
        return pd.to_numeric(values, errors="raise").astype("float64")
    if col.dtype == "int64":
        return pd.to_numeric(values, errors="raise").fillna(col.default or 0).astype("int64")
    # list columns: keep lists, turn missing into []
    return values.map(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [])


def make_table(name: str, data: pd.DataFrame | dict | Iterable[dict] | None = None) -> pd.DataFrame:
    """Build table ``name`` with exactly the canonical columns and dtypes.

    ``data`` may be a DataFrame, a dict of columns or an iterable of row dicts.
    Missing columns get their empty value ('' / NaN / 0 / []).
    """
    cols = TABLES[name]
    if data is None:
        frame = pd.DataFrame()
    elif isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, dict):
        frame = pd.DataFrame(data)
    else:
        frame = pd.DataFrame(list(data))
    n = len(frame)
    out = {}
    for col in cols:
        if col.name in frame.columns:
            try:
                out[col.name] = _coerce(col, frame[col.name].reset_index(drop=True))
            except (ValueError, TypeError) as exc:
                raise DatasetError(f"table '{name}', column '{col.name}': {exc}") from exc
        elif col.default is not None:
            out[col.name] = _coerce(col, pd.Series([col.default] * n))
        elif col.dtype == "str":
            out[col.name] = pd.Series([""] * n, dtype=str)
        elif col.dtype == "float64":
            out[col.name] = pd.Series(np.full(n, np.nan), dtype="float64")
        elif col.dtype == "int64":
            out[col.name] = pd.Series(np.zeros(n, dtype=np.int64))
        else:
            out[col.name] = pd.Series([[] for _ in range(n)], dtype=object)
    return pd.DataFrame(out, columns=[c.name for c in cols])


def _empty_tables() -> dict[str, pd.DataFrame]:
    return {name: make_table(name) for name in TABLES}


@dataclass
class Dataset:
    """The canonical tables of one source, plus the report of how they were read."""

    name: str = "dataset"
    users: pd.DataFrame = field(default_factory=lambda: make_table("users"))
    items: pd.DataFrame = field(default_factory=lambda: make_table("items"))
    interactions: pd.DataFrame = field(default_factory=lambda: make_table("interactions"))
    reviews: pd.DataFrame = field(default_factory=lambda: make_table("reviews"))
    item_links: pd.DataFrame = field(default_factory=lambda: make_table("item_links"))
    triples: pd.DataFrame = field(default_factory=lambda: make_table("triples"))
    item_entities: pd.DataFrame = field(default_factory=lambda: make_table("item_entities"))
    judgements: pd.DataFrame = field(default_factory=lambda: make_table("judgements"))
    report: LoadReport = field(default_factory=LoadReport)
    meta: dict = field(default_factory=dict)  # how the data was made (e.g. the synthetic config)
    #: for each table a loader read from a file with a header (``loaders.tabular``): the canonical
    #: columns that file really had (after the column mapping), in TABLES order; a table not
    #: listed has all its columns (every other loader, a table built in code). A column the file
    #: lacks holds its empty value in the table, so only this tells "absent" from "empty": a
    #: delta's row changes only the columns its file had (:func:`kg.ingest.ingest`)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: for a delta (``loaders.tabular.read(..., delta=True)``): per table (``items``, ``users``)
    #: the ids the loader listed id-only because other rows name them although the table's own
    #: file has no row for them -- rows of no file, whatever ``columns`` says
    listed: dict[str, np.ndarray] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in TABLES}

    def sizes(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.tables().items()}

    def problems(self, known_users=None, known_items=None) -> list[str]:
        """Everything that breaks the schema, each naming table, column and a row.

        ``known_users`` / ``known_items``: ids that exist elsewhere (a delta's rows may
        refer to the users and products a graph store holds already)."""
        out: list[str] = []
        tables = self.tables()
        for name, cols in TABLES.items():
            df = tables[name]
            want = [c.name for c in cols]
            if list(df.columns) != want:
                out.append(f"table '{name}': columns {list(df.columns)} != {want}")
                continue
            for col in cols:
                s = df[col.name]
                if col.dtype in ("float64", "int64") and str(s.dtype) != col.dtype:
                    out.append(f"table '{name}', column '{col.name}': dtype {s.dtype} != {col.dtype}")
                elif col.dtype == "str" and not (pd.api.types.is_string_dtype(s) and not s.isna().any()):
                    out.append(f"table '{name}', column '{col.name}': must be strings without NaN")
                elif col.dtype == "list":
                    bad = ~s.map(lambda v: isinstance(v, list))
                    if bad.any():
                        out.append(f"table '{name}', column '{col.name}', row {int(np.flatnonzero(bad)[0])}: not a list")
            if out:
                continue
            key = list(KEYS[name])
            dup = df.duplicated(key)
            if dup.any():
                row = int(np.flatnonzero(dup)[0])
                out.append(f"table '{name}': duplicate key {tuple(df.loc[row, key])} at row {row}")
            for kcol in key[:1] if name in ("users", "items", "reviews") else []:
                empty = df[kcol] == ""
                if empty.any():
                    out.append(f"table '{name}', column '{kcol}', row {int(np.flatnonzero(empty)[0])}: empty id")
        if out:
            return out
        # value domains and references between tables
        checks = [
            ("interactions", "event", tables["interactions"]["event"].isin(EVENTS), "unknown event"),
            ("interactions", "split", tables["interactions"]["split"].isin(SPLITS),
             "unknown split (not '', 'train', 'valid' or 'test')"),
            ("item_links", "relation", tables["item_links"]["relation"].isin(LINK_RELATIONS), "unknown relation"),
            ("judgements", "relevance", tables["judgements"]["relevance"] >= 0, "negative relevance"),
            ("items", "price", prices_ok(tables["items"]["price"]), "price not finite and >= 0"),
            ("items", "available", tables["items"]["available"].isin([0, 1]), "available must be 1 or 0"),
            ("interactions", "timestamp", timestamps_ok(tables["interactions"]["timestamp"]),
             "timestamp out of range"),
            ("reviews", "timestamp", timestamps_ok(tables["reviews"]["timestamp"]), "timestamp out of range"),
            # ids with a control character, in the tables that list them: the ids an interaction,
            # review, link or judgement names must be among these (or the store's), checked below
            *((name, col, ids_ok(tables[name][col]), CONTROL_IN_ID)
              for name, col in (("users", "user_id"), ("items", "item_id"), ("reviews", "review_id"),
                                ("triples", "head"), ("triples", "relation"), ("triples", "tail"),
                                ("item_entities", "entity_id"))),
        ]
        users = tables["users"]["user_id"]
        items = tables["items"]["item_id"]
        if known_users is not None and len(known_users):
            users = pd.concat([users, pd.Series(np.asarray(known_users, dtype=object), dtype=users.dtype)],
                              ignore_index=True).rename("user_id")
        if known_items is not None and len(known_items):
            items = pd.concat([items, pd.Series(np.asarray(known_items, dtype=object), dtype=items.dtype)],
                              ignore_index=True).rename("item_id")
        for name, col, universe in [
            ("interactions", "user_id", users), ("interactions", "item_id", items),
            ("reviews", "user_id", users), ("reviews", "item_id", items),
            ("item_links", "src_item", items), ("item_links", "dst_item", items),
            ("item_entities", "item_id", items), ("judgements", "item_id", items),
        ]:
            checks.append((name, col, isin(tables[name][col], universe), f"unknown id (not in {universe.name.split('_')[0]}s)"))
        for name, col, ok, what in checks:
            bad = ~np.asarray(ok, dtype=bool)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                value = tables[name][col].iloc[row]
                out.append(f"table '{name}', column '{col}', row {row}: {what}: {value!r} ({int(bad.sum())} rows)")
        return out

    def validate(self, known_users=None, known_items=None) -> Dataset:
        """Raise :class:`DatasetError` listing every problem; return self when clean
        (``known_*``: see :meth:`problems`)."""
        problems = self.problems(known_users, known_items)
        if problems:
            raise DatasetError(f"dataset '{self.name}' is invalid:\n  " + "\n  ".join(problems))
        return self

    def summary(self) -> str:
        return "\n".join(f"{name:<14} {n:>12,}" for name, n in self.sizes().items())
