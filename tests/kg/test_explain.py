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
    # the paths shown are listed by score (which ones: variety first, tests/kg/test_explain_order.py)
    assert [p.score for p in e.paths] == sorted((p.score for p in e.paths), reverse=True)
    assert len(explain(store, "u1", "p2", max_paths=2).paths) == 2


def test_unknown_ids_and_no_path(store, tiny):
    build_graph(tiny, store, QUIET)
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        explain(store, "ghost", "p1")
    with pytest.raises(UnknownIdError, match="unknown item id 'nothing'"):
        explain(store, "u1", "nothing")
    lonely = pd.DataFrame({"id": ["p9"], "title": ["Lonely"], "description": [""], "price": [1.0], "features": [""],
                           "available": [1]})
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


# ------------------------------------------------------------- one query per explanation


def _brand_shop():
    """u1 bought six Acme products (a1 first, a6 last) and nothing else; the item is Acme's
    ``t``. u2 bought a1 and t; u2 and u3 bought a2 and t (co-customers: 1 via a1, 2 via a2)."""
    from loaders.dataset import Dataset, make_table

    ds = Dataset(name="brand-shop")
    ds.users = make_table("users", [{"user_id": u, "name": u} for u in ("u1", "u2", "u3")])
    ds.items = make_table("items", [{"item_id": i, "title": i.upper(), "brand": "Acme"}
                                    for i in ("a1", "a2", "a3", "a4", "a5", "a6", "t")])
    rows = [{"user_id": "u1", "item_id": f"a{k}", "event": "purchase", "value": 1, "timestamp": 100 * k}
            for k in range(1, 7)]
    rows += [{"user_id": u, "item_id": i, "event": "purchase", "value": 1, "timestamp": ts}
             for u, i, ts in (("u2", "a1", 50), ("u2", "t", 60), ("u2", "a2", 70), ("u3", "a2", 80),
                              ("u3", "t", 90))]
    ds.interactions = make_table("interactions", rows)
    return ds.validate()


def _favouring_a1():
    """Embeddings under which a1 agrees best with u1 and t (agreement 1 against 0.5)."""
    import numpy as np

    from kg.explain import Embeddings

    e0, e1 = np.eye(2)
    return Embeddings({"u1": e0}, {"t": e0, "a1": e0, **{f"a{k}": e1 for k in range(2, 7)}})


def test_best_path_does_not_depend_on_max_paths(store):
    """Each template reads a fixed number of rows (not max_paths): the best path is found
    even when it is not among the most recent, and is the same for every max_paths."""
    build_graph(_brand_shop(), store, QUIET)
    emb = _favouring_a1()
    firsts = [explain(store, "u1", "t", max_paths=k, embeddings=emb).paths[0] for k in (1, 3, 5)]
    assert firsts[0] == firsts[1] == firsts[2]
    assert firsts[0].template == "same_brand" and [n.id for n in firsts[0].nodes] == ["u1", "a1", "Acme", "t"]
    assert firsts[0].score == 0.8  # brand 0.8 x purchase 1.0 x agreement 1.0
    assert [len(explain(store, "u1", "t", max_paths=k, embeddings=emb).paths) for k in (1, 3, 5)] == [1, 3, 5]


def test_counts_read_naturally(store):
    build_graph(_brand_shop(), store, QUIET)
    co = {p.nodes[1].id: p for p in explain(store, "u1", "t", max_paths=20).paths if p.template == "co_interaction"}
    assert co["a1"].sentence == "Recommended because 1 customer who bought A1 also bought this."
    assert co["a2"].sentence == "Recommended because 2 customers who bought A2 also bought this."
    assert co["a1"].nodes[2].id == "1 customer" and co["a2"].nodes[2].id == "2 customers"


def _count_runs(store, monkeypatch) -> list[str]:
    """Every statement ``store`` runs from now on (and ``counts()`` forbidden)."""
    seen: list[str] = []

    def counting(method):
        def run(query, params=None, *args, **kwargs):
            seen.append(query)
            return method(query, params, *args, **kwargs)
        return run

    def no_counts():
        raise AssertionError("explanations must not count the graph")

    monkeypatch.setattr(store, "run", counting(store.run))
    monkeypatch.setattr(store, "records", counting(store.records))
    monkeypatch.setattr(store, "counts", no_counts)
    return seen


def test_one_query_per_explanation_and_per_list(store, tiny, monkeypatch):
    from kg.explain import explain_many, interaction_types

    build_graph(tiny, store, QUIET)
    assert interaction_types(store) == ("PURCHASED", "RATED", "CLICKED")
    seen = _count_runs(store, monkeypatch)
    explain(store, "u1", "p2")
    assert len(seen) == 1  # the present types were cached by the call above
    explain_many(store, "u1", ["p2", "p1", "p2"])
    assert len(seen) == 2  # a whole list: one query
    explain(store, "u1", "p3")  # no template matches: plus the bounded shortest path
    assert len(seen) == 4


def test_explain_many_answers_like_explain(store, tiny):
    from kg.explain import explain_many

    build_graph(tiny, store, QUIET)
    items = ["p2", "p1", "p3", "p2"]
    assert explain_many(store, "u1", items, max_paths=3) == [explain(store, "u1", i, max_paths=3) for i in items]
    assert explain_many(store, "u1", []) == []
    assert explain_many(store, "u1", ["p2", "nothing"], strict=False)[1] is None
    with pytest.raises(UnknownIdError, match="unknown item id 'nothing'"):
        explain_many(store, "u1", ["p2", "nothing"])
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        explain_many(store, "ghost", ["p2"], strict=False)


def test_present_types_follow_a_build(store, tiny, monkeypatch):
    """The types are cached per build record: a new build (here one that adds views) is
    noticed by the next explanation itself -- a stale record costs one re-read, once."""
    from kg.explain import interaction_types

    build_graph(tiny, store, QUIET)
    assert "VIEWED" not in interaction_types(store)
    assert "direct" not in {p.template for p in explain(store, "u1", "p3").paths}
    from loaders.dataset import make_table

    tiny.interactions = make_table("interactions", pd.concat([tiny.interactions, make_table("interactions", [
        {"user_id": "u1", "item_id": "p3", "event": "view", "value": 1, "timestamp": 300}])], ignore_index=True))
    build_graph(tiny.validate(), store, QUIET)
    seen = _count_runs(store, monkeypatch)
    assert explain(store, "u1", "p3").paths[0].sentence == "You viewed Teapot before."
    assert len(seen) == 3  # stale: the explanation query, the types, the explanation query again
    assert "VIEWED" in interaction_types(store)
    explain(store, "u1", "p3")
    assert len(seen) == 4  # and then one query again


# ------------------------------------------------------- co-interaction counts of the build


def _co_shop(n_users=40, n_items=12, n=400, seed=5):
    """Random purchases and ratings, with repeats: many co-customers per pair."""
    import numpy as np

    from loaders.dataset import Dataset, make_table

    rng = np.random.default_rng(seed)
    ds = Dataset(name=f"co-shop-{seed}")
    ds.users = make_table("users", [{"user_id": f"u{k}", "name": f"U{k}"} for k in range(n_users)])
    ds.items = make_table("items", [{"item_id": f"i{k}", "title": f"Item {k}"} for k in range(n_items)])
    rows = {(f"u{rng.integers(n_users)}", f"i{rng.integers(n_items)}", str(rng.choice(["purchase", "rating"])),
             int(rng.integers(1, 50))) for _ in range(n)}
    ds.interactions = make_table("interactions", [
        {"user_id": u, "item_id": i, "event": e, "value": 1, "timestamp": t} for u, i, e, t in sorted(rows)])
    return ds.validate()


def _live_answers(store, pairs):
    """The explanations with the co-interaction counts ignored (counted live), then the
    store's record put back."""
    from kg.build import CO_COUNTS_RECORD
    from kg.explain import explain_plan

    record = store.read_meta(CO_COUNTS_RECORD)
    store.write_meta(CO_COUNTS_RECORD, "[]")
    assert not explain_plan(store, refresh=True).counted
    try:
        return [explain(store, u, i, max_paths=20) for u, i in pairs]
    finally:
        store.write_meta(CO_COUNTS_RECORD, record)
        explain_plan(store, refresh=True)


def test_co_count_rows_match_a_plain_count():
    import numpy as np

    from kg.build import co_count_rows
    from kg.stores import EdgeIndex

    rng = np.random.default_rng(0)
    users, items = np.array([f"u{k}" for k in range(30)], dtype=object), np.array(sorted(f"i{k}" for k in range(15)),
                                                                                  dtype=object)
    src, dst = rng.integers(0, 30, 300), rng.integers(0, 15, 300)  # repeats included
    edges = EdgeIndex("PURCHASED", users, items, src, dst)
    bought = {}
    for u, i in zip(src, dst):
        bought.setdefault(items[i], set()).add(u)
    want = {(a, b): len(bought[a] & bought[b]) for a in bought for b in bought if a < b and bought[a] & bought[b]}
    got = co_count_rows(edges)
    assert dict(zip(zip(got["src"], got["dst"]), got["n"])) == want
    assert (got["src"] < got["dst"]).all()
    some = ["i3", "i7", "nothing"]
    part = co_count_rows(edges, some)
    assert dict(zip(zip(part["src"], part["dst"]), part["n"])) == {k: v for k, v in want.items()
                                                                   if k[0] in some or k[1] in some}


def test_co_counts_are_kept_where_they_pay():
    """Kept when counting live reads many relationships per explanation (users and products
    with hundreds of interactions) or when they are few; not for many pairs that are cheap
    to count live."""
    import numpy as np

    from kg.build import kept_co_counts
    from kg.stores import EdgeIndex

    rng = np.random.default_rng(1)

    def edges(n_users, n_items, per_user):
        src = np.repeat(np.arange(n_users), per_user)
        dst = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
        return EdgeIndex("RATED", np.array([f"u{k:04d}" for k in range(n_users)], dtype=object),
                         np.array([f"i{k:04d}" for k in range(n_items)], dtype=object), src, dst)

    dense = kept_co_counts(edges(300, 100, 60))  # ~10,800 relationships read per explanation
    assert dense is not None and len(dense) == 100 * 99 // 2
    assert kept_co_counts(edges(200, 400, 15)) is None  # ~15,000 pairs for 3,000 rows, ~100 reads
    few = kept_co_counts(edges(50, 400, 2))  # 50 pairs
    assert few is not None and len(few) == 50


def test_co_counts_answer_as_counting_live(store):
    """The co-interaction paths read from the build's counts are the live count's: same
    paths, counts, scores and order -- also for items the user bought (the user is not
    their own co-customer) -- and an ingest of new events keeps them so."""
    from kg.build import CO_COUNTS_RECORD
    from kg.explain import explain_plan
    from kg.ingest import ingest
    from loaders.dataset import Dataset, make_table

    ds = _co_shop()
    build_graph(ds, store, QUIET)
    assert explain_plan(store).counted == {"PURCHASED", "RATED"}
    pairs = [(f"u{u}", f"i{i}") for u in range(0, 40, 3) for i in range(0, 12, 2)]
    counted = [explain(store, u, i, max_paths=20) for u, i in pairs]
    assert sum(p.template == "co_interaction" for e in counted for p in e.paths) > 100
    assert any(p.template == "direct" for e in counted for p in e.paths)  # pairs the user bought too
    assert counted == _live_answers(store, pairs)

    delta = Dataset(name="more")
    delta.interactions = make_table("interactions", [
        {"user_id": u, "item_id": i, "event": "purchase", "value": 1, "timestamp": 99}
        for u, i in (("u0", "i0"), ("u3", "i0"), ("u3", "i2"), ("new", "i0"), ("new", "i2"), ("new", "i11"))])
    ingest(store, delta, QUIET)
    pairs += [("new", "i4"), ("u1", "i11")]
    after = [explain(store, u, i, max_paths=20) for u, i in pairs]
    assert after != counted[: len(after)]
    assert after == _live_answers(store, pairs)
    assert store.read_meta(CO_COUNTS_RECORD) == '["PURCHASED", "RATED"]'


def test_a_store_without_counts_gets_them_from_the_next_build(store):
    """A build with ``co_counts=False`` leaves the types to live counting; the next build --
    even one with nothing new to write -- computes them whole."""
    from kg.build import BuildConfig as Config
    from kg.explain import explain_plan

    ds = _co_shop(seed=6)
    build_graph(ds, store, Config(progress=False, co_counts=False))
    assert explain_plan(store).counted == frozenset()
    assert not any(store.export_edges(t).num_edges for t in ("CO_PURCHASED", "CO_RATED"))
    pairs = [(f"u{u}", f"i{i}") for u in range(0, 40, 5) for i in range(0, 12, 3)]
    live = [explain(store, u, i, max_paths=20) for u, i in pairs]
    report = build_graph(ds, store, QUIET)
    assert report.up_to_date and {s.name for s in report.steps} == {"CO_PURCHASED", "CO_RATED"}
    assert [explain(store, u, i, max_paths=20) for u, i in pairs] == live
    assert explain_plan(store).counted == {"PURCHASED", "RATED"}  # the explanations noticed the build


def test_one_part_per_template_returns_the_rows_of_one_per_type(tmp_path):
    """The embedded store's statement asks each template once for all interaction types
    (``-[r:A|B]->``, the branch read off ``label(r)``): the same rows, branch numbers
    included, as one part per template and interaction type, for single items and lists."""
    import loaders
    from kg import queries as q
    from kg.explain import BUILD_RECORD, explain_plan
    from kg.stores import StoreConfig, open_store

    ds = loaders.load("synthetic", None, seed=3, n_users=80, n_items=120, n_interactions=3000)
    store = open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))).connect()
    try:
        build_graph(ds, store, QUIET)
        plan = explain_plan(store, refresh=True)
        assert len({b.via.type for b in plan.branches}) >= 3
        users = [str(u) for u in ds.users["user_id"]]
        items = [str(i) for i in ds.items["item_id"]]
        rng = random.Random(0)
        rows = 0
        for n in (1, 1, 1, 4):
            merged, apart = (q.explain_query("kuzu", plan.branches, n, merge_types=m) for m in (True, False))
            assert merged.count(" UNION ALL ") < apart.count(" UNION ALL ")
            for _ in range(15):
                chosen = rng.sample(items, n)
                params = {"user": rng.choice(users), "items": chosen, "meta": BUILD_RECORD, "build": plan.build or "",
                          **q.explain_item_params(chosen)}
                a, b = (sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in store.records(s, params))
                        for s in (merged, apart))
                assert a == b
                rows += len(a)
        assert rows > 200  # paths, not only the head rows
    finally:
        store.close()
