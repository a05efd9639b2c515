"""Cypher explanations on both stores, their parity, read-only Cypher, networkx export."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from kg.build import BuildConfig, build_graph
from kg.errors import UnknownIdError
from kg.explain import Explanation, explain
from kg.explain_graph import draw_png, explanation_graph, neighbourhood_graph
from kg.stores import ReadOnlyError
from loaders import load

QUIET = BuildConfig(progress=False)


def test_paths_through_brand_category_and_links(store, tiny):
    build_graph(tiny, store, QUIET)
    e = explain(store, "u1", "p2")
    templates = {p.template for p in e.paths}
    assert {"same_brand", "same_category", "item_link"} <= templates
    brand = next(p for p in e.paths if p.template == "same_brand")
    assert [n.id for n in brand.nodes] == ["u1", "p1", "Acme", "p2"]
    assert brand.rel_types == ("PURCHASED", "HAS_BRAND", "HAS_BRAND")
    assert brand.sentence == "Recommended because you bought Red Mug, also by Acme."
    assert e.paths[0].template == "item_link"  # the strongest reason comes first
    # variety first: one path per template, best first, then the others
    templates = [p.template for p in e.paths]
    k = len(set(templates))
    assert len(set(templates[:k])) == k
    assert [p.score for p in e.paths[:k]] == sorted((p.score for p in e.paths[:k]), reverse=True)
    assert len(explain(store, "u1", "p2", max_paths=2).paths) == 2


def test_unknown_ids_and_no_path(store, tiny):
    build_graph(tiny, store, QUIET)
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        explain(store, "ghost", "p1")
    with pytest.raises(UnknownIdError, match="unknown item id 'nothing'"):
        explain(store, "u1", "nothing")
    lonely = pd.DataFrame({"id": ["p9"], "title": ["Lonely"], "description": [""], "price": [1.0], "features": [""]})
    store.upsert_nodes("Product", lonely)
    e = explain(store, "u1", "p9")
    assert isinstance(e, Explanation) and e.paths == () and "no path" in e.reason
    far = explain(store, "u1", "p3")  # only a 4-hop path via the category tree
    assert [p.template for p in far.paths] == ["fallback"]
    assert far.paths[0].nodes[0].id == "u1" and far.paths[0].nodes[-1].id == "p3"


def test_cypher_is_read_only_unless_asked(store, tiny):
    build_graph(tiny, store, QUIET)
    df = store.cypher("MATCH (p:Product) WHERE p.price > $min RETURN p.id AS id ORDER BY id", min=10.0)
    assert list(df["id"]) == ["p3"]
    with pytest.raises(ReadOnlyError, match="write=True"):
        store.cypher("CREATE (:Brand {id: 'x', name: 'x'})")
    with pytest.raises(Exception, match="(?i)variable|not defined|unbound"):
        store.cypher("MATCH (p:Product) RETURN q.id")  # the store's own error, not a masked one
    assert list(store.cypher("MATCH (b:Brand) RETURN b.id AS id")["id"]) == ["Acme"]  # still usable
    assert store.counts()["Brand"] == 1
    store.cypher("CREATE (:Brand {id: 'x', name: 'x'})", write=True)
    assert store.counts()["Brand"] == 2


def test_networkx_export_and_png(store, tiny, tmp_path):
    build_graph(tiny, store, QUIET)
    g = explanation_graph(explain(store, "u1", "p2"))
    assert g.has_edge("Product:p1", "Brand:Acme")
    assert {d["type"] for _, _, d in g.edges(data=True)} >= {"PURCHASED", "HAS_BRAND", "ALSO_BOUGHT"}
    around = neighbourhood_graph(store, "User", "u1")
    assert set(around.successors("User:u1")) == {"Product:p1"}
    png = draw_png(g, tmp_path / "why.png", "why p2")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _pairs(ds, n=15, seed=0):
    """Deterministic (user, item) pairs: items the user has not interacted with."""
    rng = random.Random(seed)
    users = sorted(ds.interactions["user_id"].unique())
    items = ds.interactions["item_id"].value_counts().index[:40].tolist()
    seen = set(zip(ds.interactions["user_id"], ds.interactions["item_id"]))
    out = []
    while len(out) < n:
        u, i = rng.choice(users), rng.choice(items)
        if (u, i) not in seen:
            out.append((u, i))
    return out


@pytest.mark.neo4j
@pytest.mark.slow
@pytest.mark.parametrize("source,fixture", [("amazon2018", "gift_cards_dir"), ("recbole", "ml100k_dir")])
def test_explanations_match_on_both_stores(source, fixture, request, neo4j_uri, tmp_path):
    from kg.stores import StoreConfig, open_store

    ds = load(source, request.getfixturevalue(fixture))
    stores = [open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))).connect(),
              open_store(StoreConfig(kind="neo4j", uri=neo4j_uri)).connect()]
    stores[1].clear()
    try:
        for s in stores:
            build_graph(ds, s, QUIET)
        explained = 0
        for user, item in _pairs(ds):
            a, b = (explain(s, user, item, max_paths=5) for s in stores)
            assert a == b, (user, item)
            explained += bool(a.paths)
        assert explained >= 10  # most pairs have a reason
    finally:
        stores[1].clear()
        for s in stores:
            s.close()
