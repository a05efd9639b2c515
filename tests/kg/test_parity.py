"""Parity: the same data built into Neo4j and the embedded store gives the same graph.

Runs on the real data in ../shared/data against the real Neo4j test server.
"""

from __future__ import annotations

import numpy as np
import pytest

from kg.build import BuildConfig, build_graph
from loaders import load

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

QUIET = BuildConfig(progress=False)
FULL_RERUN = BuildConfig(progress=False, resume=False)


@pytest.fixture
def both_stores(request, tmp_path):
    from kg.stores import StoreConfig, open_store

    uri = request.getfixturevalue("neo4j_uri")
    neo = open_store(StoreConfig(kind="neo4j", uri=uri)).connect()
    neo.clear()
    emb = open_store(StoreConfig(kind="embedded", path=str(tmp_path / "graph"))).connect()
    yield emb, neo
    neo.clear()
    neo.close()
    emb.close()


def _assert_parity(dataset, stores, edge_types):
    emb, neo = stores
    reports = [build_graph(dataset, s, QUIET) for s in stores]
    counts = [s.counts() for s in stores]
    assert counts[0] == counts[1]
    assert reports[0].created == reports[1].created > 0
    for rel_type, props in edge_types:
        a, b = emb.export_edges(rel_type, props), neo.export_edges(rel_type, props)
        assert a.num_edges == b.num_edges == counts[0][rel_type]
        assert np.array_equal(a.src_ids, b.src_ids) and np.array_equal(a.dst_ids, b.dst_ids)
        assert np.array_equal(a.src_index, b.src_index) and np.array_equal(a.dst_index, b.dst_index)
        for p in props:
            assert [str(v) for v in a.props[p]] == [str(v) for v in b.props[p]]
    for store, before in zip(stores, counts):  # a second full run changes nothing
        again = build_graph(dataset, store, FULL_RERUN)
        assert again.created == 0
        assert store.counts() == before
    return counts[0]


def test_gift_cards_parity(gift_cards_dir, both_stores):
    ds = load("amazon2018", gift_cards_dir)
    counts = _assert_parity(ds, both_stores, [("REVIEWED", ()), ("ALSO_BOUGHT", ()), ("IN_CATEGORY", ())])
    assert counts["Product"] == 1547 and counts["User"] == 458
    assert counts["Review"] == counts["WROTE"] == 2972 and counts["REVIEWED"] == 2969


def test_ml100k_parity(ml100k_dir, both_stores):
    ds = load("recbole", ml100k_dir)
    counts = _assert_parity(ds, both_stores, [("RATED", ("ts",)), ("RELATED", ("relation",)), ("LINKED_TO", ())])
    assert counts["RATED"] == 100_000 and counts["User"] == 943 and counts["Product"] == 1682
    assert counts["LINKED_TO"] == len(ds.item_entities) and counts["RELATED"] == len(ds.triples)


def _random_embeddings(ds, dim: int = 8, seed: int = 0):
    """Unit vectors for every user and item: paths then differ in score within a template."""
    from kg.explain import Embeddings

    rng = np.random.default_rng(seed)
    unit = lambda: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(dim))  # noqa: E731
    return Embeddings({u: unit() for u in sorted(ds.users["user_id"])},
                      {i: unit() for i in sorted(ds.items["item_id"])})


def test_gift_cards_explanation_lists_match(gift_cards_dir, both_stores):
    """explain_many (one query per list) gives the same explanations on both stores, the same
    as explaining one item at a time, and a top reason that does not depend on max_paths."""
    from kg.explain import explain, explain_many

    ds = load("amazon2018", gift_cards_dir)
    for s in both_stores:
        build_graph(ds, s, QUIET)
    emb = _random_embeddings(ds)
    users = ds.interactions["user_id"].value_counts().index[:6].tolist()  # the most active: many paths each
    items = ds.interactions["item_id"].value_counts().index[:10].tolist()
    with_paths = 0
    for user in users:
        lists = [explain_many(s, user, items, 5, emb) for s in both_stores]
        assert lists[0] == lists[1], user
        assert lists[0] == [explain(both_stores[0], user, i, 5, emb) for i in items], user
        for k in (1, 3):
            assert [e.paths[:1] for e in explain_many(both_stores[1], user, items, k, emb)] == \
                [e.paths[:1] for e in lists[0]], (user, k)
        with_paths += sum(bool(e.paths) for e in lists[0])
    assert with_paths >= 50
