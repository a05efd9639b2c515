"""Dataset tables -> the node and relationship rows of the graph schema.

:func:`graph_rows` turns a canonical :class:`~loaders.dataset.Dataset` into one
DataFrame per label (columns ``id`` + properties) and per relationship type
(columns ``src``, ``dst`` + properties), in the order they must be written
(nodes before the relationships that need them). Pure pandas, vectorised.

Category paths are stored in one normalised form (:func:`category_levels`,
:func:`normalise_category_path`): every ``>`` separates two levels, whitespace inside a
level is collapsed to single spaces and stripped, and empty levels are dropped, so
``" Home  >\tKitchen >"``, ``"Home>>Kitchen"`` and ``"Home > Kitchen"`` are the one
category ``"Home > Kitchen"``. The ``Category`` node ids, their ``SUBCATEGORY_OF`` links
and the ``IN_CATEGORY`` rows all come from that form (never from the path as written,
which the store could not match to a node), on either store; a path with no level left
(``""``, ``" > "``) is no category. Whatever else compares a path with the stored ones
(an ingest's replaced links, serving's category filter) must normalise it the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg.schema import EVENT_TYPES, LINK_TYPES, node_spec, rel_spec
from loaders.dataset import CATEGORY_SEP, Dataset


@dataclass(frozen=True)
class Step:
    """One write: a label (kind 'node') or a relationship type (kind 'rel') and its rows."""

    kind: str
    name: str
    rows: pd.DataFrame


def _frame(kind: str, name: str, data: dict) -> Step:
    spec = node_spec(name) if kind == "node" else rel_spec(name)
    cols = (["id"] if kind == "node" else ["src", "dst"]) + [p.name for p in spec.props]
    frame = pd.DataFrame(data)[cols]
    if kind == "rel":  # grouped by source node: fewer page faults/locks in the store
        frame = frame.sort_values(["src", "dst"], kind="stable")
    return Step(kind, name, frame.reset_index(drop=True))


#: what separates two levels of a category path as written: every ``>`` (the canonical
#: separator is :data:`loaders.dataset.CATEGORY_SEP`, ``" > "``)
LEVEL_MARK = ">"


def category_levels(path: object) -> list[str]:
    """The levels of a category path, root first, as the graph stores them: the path is
    split at every ``>``; in each level, runs of whitespace (spaces, tabs, newlines,
    no-break spaces …) become one space and the level is stripped; empty levels are
    dropped (``" Home  >> Kitchen > "`` -> ``["Home", "Kitchen"]``). ``[]`` for a path
    with no level (``""``, ``" > "``) and for anything that is not a string."""
    if not isinstance(path, str):
        return []
    levels = (" ".join(part.split()) for part in path.split(LEVEL_MARK))
    return [level for level in levels if level]


def normalise_category_path(path: object) -> str:
    """``path`` in the one form the graph stores (:func:`category_levels` joined by
    :data:`~loaders.dataset.CATEGORY_SEP`): ``"Home  >Kitchen "`` -> ``"Home > Kitchen"``;
    ``""`` when it has no level."""
    return CATEGORY_SEP.join(category_levels(path))


def _categories(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Category nodes (every prefix of every path), SUBCATEGORY_OF and IN_CATEGORY rows,
    all of them from the normalised paths (:func:`normalise_category_path`): an
    ``IN_CATEGORY`` row always names a ``Category`` node of this step. Two paths of one
    product that normalise alike give one row; a path with no level gives none."""
    listed = items[["item_id", "categories"]].explode("categories").dropna()
    written = listed["categories"].astype(str)
    dst = written.map({p: normalise_category_path(p) for p in pd.unique(written)})  # once per distinct path
    in_category = pd.DataFrame({"src": listed["item_id"].astype(str), "dst": dst.astype(str)})
    in_category = in_category[in_category["dst"] != ""].drop_duplicates()
    paths: dict[str, tuple[str, int, str | None]] = {}
    for path in pd.unique(in_category["dst"]):  # one loop per distinct path, not per item
        parts = path.split(CATEGORY_SEP)  # normalised: no level holds the separator
        for level in range(len(parts)):
            prefix = CATEGORY_SEP.join(parts[: level + 1])
            parent = CATEGORY_SEP.join(parts[:level]) if level else None
            paths.setdefault(prefix, (parts[level], level, parent))
    nodes = pd.DataFrame(
        {"id": list(paths), "name": [v[0] for v in paths.values()], "level": [v[1] for v in paths.values()]}
    )
    sub = pd.DataFrame(
        {"src": [k for k, v in paths.items() if v[2] is not None],
         "dst": [v[2] for v in paths.values() if v[2] is not None]}
    )
    return nodes.astype({"level": "int64"}), sub, in_category


def graph_rows(ds: Dataset) -> list[Step]:
    """All writes for ``ds``, nodes first; empty tables give no step."""
    items, inter = ds.items, ds.interactions
    cat_nodes, cat_sub, cat_in = _categories(items)
    brands = pd.unique(items.loc[items["brand"] != "", "brand"])
    entities = pd.unique(pd.concat([ds.triples["head"], ds.triples["tail"], ds.item_entities["entity_id"]]))
    queries = pd.unique(ds.judgements["query"])

    steps = [
        _frame("node", "User", {"id": ds.users["user_id"], "name": ds.users["name"]}),
        _frame("node", "Product", {
            "id": items["item_id"], "title": items["title"], "description": items["description"],
            "price": items["price"], "features": items["features"].map("\n".join), "available": items["available"],
        }),
        _frame("node", "Brand", {"id": brands, "name": brands}),
        _frame("node", "Category", cat_nodes),
        _frame("node", "Entity", {"id": entities}),
        _frame("node", "Review", {
            "id": ds.reviews["review_id"], "rating": ds.reviews["rating"], "summary": ds.reviews["summary"],
            "text": ds.reviews["text"], "ts": ds.reviews["timestamp"],
        }),
        _frame("node", "Query", {"id": queries}),
    ]
    for event, rel_type in EVENT_TYPES.items():
        sel = inter[inter["event"] == event]
        steps.append(_frame("rel", rel_type, {
            "src": sel["user_id"], "dst": sel["item_id"], "ts": sel["timestamp"],
            "value": sel["value"], "split": sel["split"],
        }))
    with_brand = items[items["brand"] != ""]
    steps += [
        _frame("rel", "WROTE", {"src": ds.reviews["user_id"], "dst": ds.reviews["review_id"]}),
        _frame("rel", "REVIEW_OF", {"src": ds.reviews["review_id"], "dst": ds.reviews["item_id"]}),
        _frame("rel", "HAS_BRAND", {"src": with_brand["item_id"], "dst": with_brand["brand"]}),
        _frame("rel", "IN_CATEGORY", cat_in),
        _frame("rel", "SUBCATEGORY_OF", cat_sub),
    ]
    for relation, rel_type in LINK_TYPES.items():
        sel = ds.item_links[ds.item_links["relation"] == relation]
        steps.append(_frame("rel", rel_type, {"src": sel["src_item"], "dst": sel["dst_item"]}))
    steps += [
        _frame("rel", "LINKED_TO", {"src": ds.item_entities["item_id"], "dst": ds.item_entities["entity_id"]}),
        _frame("rel", "RELATED", {"src": ds.triples["head"], "dst": ds.triples["tail"],
                                  "relation": ds.triples["relation"]}),
        _frame("rel", "RELEVANT", {"src": ds.judgements["query"], "dst": ds.judgements["item_id"],
                                   "grade": ds.judgements["relevance"]}),
    ]
    return [s for s in steps if len(s.rows)]


def fingerprint(ds: Dataset) -> str:
    """A content hash of the dataset's tables (changes when any row changes)."""
    parts = [ds.name]
    for name, df in ds.tables().items():
        flat = df.copy()
        for col in flat.columns:
            if flat[col].dtype == object:
                flat[col] = flat[col].map(lambda v: "\x1f".join(v) if isinstance(v, list) else str(v))
        hashed = pd.util.hash_pandas_object(flat, index=False).to_numpy() if len(flat) else np.zeros(0, np.uint64)
        parts.append(f"{name}:{len(df)}:{int(hashed.sum(dtype=np.uint64))}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
