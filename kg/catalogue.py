"""The catalogue read back from the store: products, reviews and search judgements.

The text and fusion stages train on what is in the graph, like the GNN stage (the
store is the source of truth): :func:`read_catalogue` returns a canonical
:class:`loaders.Dataset` whose ``items``, ``reviews`` and ``judgements`` tables are
rebuilt from the nodes and relationships with portable Cypher (both stores)::

    items       <- (:Product) + [:HAS_BRAND]->(:Brand) + [:IN_CATEGORY]->(:Category)
    reviews     <- (:User)-[:WROTE]->(:Review)-[:REVIEW_OF]->(:Product)
    judgements  <- (:Query)-[:RELEVANT {grade}]->(:Product)

Rows come back sorted by their key, so both stores give identical tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kg import queries as q
from kg.schema import PRODUCT, REVIEW, rel_spec
from kg.stores import GraphStore
from loaders.dataset import Dataset, make_table


def _rels(store: GraphStore, rel_type: str) -> pd.DataFrame:
    return store.cypher(q.rel_rows_query(rel_spec(rel_type)))


def read_items(store: GraphStore) -> pd.DataFrame:
    """The ``items`` table: one row per Product node, sorted by id."""
    products = store.cypher(q.node_props_query(PRODUCT)).sort_values("id", kind="stable")
    brand = _rels(store, "HAS_BRAND").drop_duplicates("src").set_index("src")["dst"]
    cats = _rels(store, "IN_CATEGORY").sort_values(["src", "dst"]).groupby("src")["dst"].agg(list)
    ids = products["id"].astype(str)
    features = products["features"].fillna("").astype(str)
    return make_table("items", {
        "item_id": ids.to_numpy(),
        "title": products["title"].to_numpy(),
        "description": products["description"].to_numpy(),
        "brand": brand.reindex(ids).fillna("").to_numpy(),
        "categories": cats.reindex(ids).to_numpy(),
        "price": pd.to_numeric(products["price"], errors="coerce").to_numpy(dtype=float),
        "features": [s.split("\n") if s else [] for s in features],
        # a product stored before the flag existed is on sale
        "available": pd.to_numeric(products["available"], errors="coerce").fillna(1).to_numpy(dtype=np.int64),
    })


def read_reviews(store: GraphStore) -> pd.DataFrame:
    """The ``reviews`` table (author from WROTE, product from REVIEW_OF), sorted by id."""
    nodes = store.cypher(q.node_props_query(REVIEW))
    author = _rels(store, "WROTE").drop_duplicates("dst").set_index("dst")["src"]
    product = _rels(store, "REVIEW_OF").drop_duplicates("src").set_index("src")["dst"]
    ids = nodes["id"].astype(str)
    table = make_table("reviews", {
        "review_id": ids.to_numpy(),
        "user_id": author.reindex(ids).fillna("").to_numpy(),
        "item_id": product.reindex(ids).fillna("").to_numpy(),
        "rating": pd.to_numeric(nodes["rating"], errors="coerce").to_numpy(dtype=float),
        "summary": nodes["summary"].to_numpy(),
        "text": nodes["text"].to_numpy(),
        "timestamp": pd.to_numeric(nodes["ts"], errors="coerce").fillna(0).to_numpy(dtype=np.int64),
    })
    return table.sort_values("review_id", kind="stable").reset_index(drop=True)


def read_judgements(store: GraphStore) -> pd.DataFrame:
    """The ``judgements`` table from RELEVANT relationships, sorted by (query, item)."""
    rows = _rels(store, "RELEVANT")
    table = make_table("judgements", {"query": rows["src"].to_numpy(), "item_id": rows["dst"].to_numpy(),
                                      "relevance": pd.to_numeric(rows["grade"]).fillna(0).to_numpy()})
    return table.sort_values(["query", "item_id"], kind="stable").reset_index(drop=True)


def read_catalogue(store: GraphStore, name: str = "store") -> Dataset:
    """A Dataset with ``items``, ``reviews`` and ``judgements`` read from ``store``."""
    return Dataset(name=name, items=read_items(store), reviews=read_reviews(store),
                   judgements=read_judgements(store))
