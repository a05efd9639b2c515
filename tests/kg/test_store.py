"""The GraphStore contract, run on the embedded store and on the real Neo4j server."""

from __future__ import annotations

import numpy as np
import pytest

from kg.build import BuildConfig, build_graph
from kg.schema import RELS, quote

QUIET = BuildConfig(progress=False)


EXPECTED = {
    "User": 3, "Product": 3, "Brand": 1, "Category": 4, "Entity": 2, "Review": 1, "Query": 1,
    "PURCHASED": 3, "RATED": 1, "CLICKED": 1, "SHOWN": 0, "WROTE": 1, "REVIEW_OF": 1, "HAS_BRAND": 2,
    "IN_CATEGORY": 4, "SUBCATEGORY_OF": 2, "ALSO_BOUGHT": 1, "LINKED_TO": 1, "RELATED": 2, "RELEVANT": 2,
}


def test_build_writes_the_schema_graph(store, tiny):
    report = build_graph(tiny, store, QUIET)
    counts = store.counts()
    for name, n in EXPECTED.items():
        assert counts[name] == n, name
    assert report.created == sum(EXPECTED.values())
    assert "PURCHASED" in report.table()


def test_second_build_changes_nothing(store, tiny):
    build_graph(tiny, store, QUIET)
    before = store.counts()
    again = build_graph(tiny, store, BuildConfig(progress=False, resume=False))
    assert again.created == 0
    assert store.counts() == before


def test_changed_properties_are_updated_not_duplicated(store, tiny):
    build_graph(tiny, store, QUIET)
    tiny.items.loc[tiny.items["item_id"] == "p2", "title"] = "Navy Mug"
    report = build_graph(tiny, store, QUIET)  # new content -> new fingerprint -> real pass
    assert report.created == 0 and not report.resumed
    names = {n.id: n.name for n in store.neighbours("User", "u2") if n.label == "Product"}
    assert names["p2"] == "Navy Mug"
    assert store.counts()["Product"] == 3


def test_resume_after_interruption(store_factory, tiny):
    """A crash mid-relationship-step: the rerun resumes and ends with the same graph."""
    store = store_factory(batch_size=1)  # one row per write, so the crash lands mid-step
    original = store.upsert_rels
    batches = {"n": 0}

    def crashing(rel_type, rows, progress=None):
        def progress_then_crash(n):
            progress(n)
            if rel_type == "PURCHASED" and n:
                batches["n"] += 1
                if batches["n"] == 2:
                    raise KeyboardInterrupt("simulated crash")

        return original(rel_type, rows, progress=progress_then_crash)

    store.upsert_rels = crashing
    with pytest.raises(KeyboardInterrupt):
        build_graph(tiny, store, QUIET)
    assert 0 < store.counts()["PURCHASED"] < EXPECTED["PURCHASED"]
    store.upsert_rels = original
    report = build_graph(tiny, store, QUIET)
    assert report.resumed
    purchased = next(s for s in report.steps if s.name == "PURCHASED")
    assert purchased.skipped >= 1
    assert {k: v for k, v in store.counts().items() if k in EXPECTED} == EXPECTED


def test_export_edges_are_index_arrays_with_id_maps(store, tiny):
    build_graph(tiny, store, QUIET)
    edges = store.export_edges("PURCHASED", props=("ts",))
    assert list(edges.src_ids) == ["u1", "u2", "u3"] and list(edges.dst_ids) == ["p1", "p2", "p3"]
    assert edges.src_index.dtype == np.int64 and edges.num_edges == 3
    pairs = sorted(zip(edges.src_ids[edges.src_index], edges.dst_ids[edges.dst_index], edges.props["ts"]))
    assert pairs == [("u1", "p1", 100), ("u1", "p1", 200), ("u2", "p2", 150)]
    related = store.export_edges("RELATED", props=("relation",))
    assert sorted(related.props["relation"]) == ["made_of", "style"]
    assert list(store.node_ids("Category")) == sorted(["Home", "Home > Kitchen", "Home > Kitchen > Mugs", "Gifts"])


def test_neighbours_cover_both_directions(store, tiny):
    build_graph(tiny, store, QUIET)
    around = {(n.rel_type, n.outgoing, n.id) for n in store.neighbours("Product", "p1")}
    assert ("PURCHASED", False, "u1") in around
    assert ("HAS_BRAND", True, "Acme") in around
    assert ("ALSO_BOUGHT", True, "p2") in around
    assert ("RELEVANT", False, "red mug") in around
    with pytest.raises(ValueError, match="unknown node label"):
        store.neighbours("Shop", "x")


def test_missing_price_is_null_in_the_store(store, tiny):
    build_graph(tiny, store, QUIET)
    from kg import queries as q
    from kg.schema import PRODUCT

    df = store.run(q.node_props_query(PRODUCT))
    price = dict(zip(df["id"], df["price"]))
    assert price["p1"] == 9.5 and (price["p2"] is None or np.isnan(price["p2"]))


def test_schema_names_only():
    assert quote("Product") == "`Product`"
    with pytest.raises(ValueError):
        quote("Product`) DETACH DELETE (n")
    assert len({r.type for r in RELS}) == len(RELS)


def test_an_ingested_row_replaces_a_products_brand_and_categories(store, tiny):
    """Both stores: a product row changed by an ingest replaces the product's brand and
    category links (the new ones written, the ones it no longer names removed)."""
    from dataclasses import replace

    from kg.ingest import ingest
    from loaders.dataset import Dataset, make_table

    build_graph(tiny, store, QUIET)
    row = {**tiny.items.iloc[0].to_dict(), "brand": "Kettleworks", "categories": ["Garden > Tools"]}
    report = ingest(store, replace(Dataset(name="relist"), items=make_table("items", [row])), QUIET)
    assert report.links_removed == 2
    got = store.cypher("MATCH (p:Product {id: 'p1'})-[e:HAS_BRAND|IN_CATEGORY]->(n) RETURN n.id AS n")
    assert sorted(got["n"]) == ["Garden > Tools", "Kettleworks"]
    kept = store.cypher("MATCH (p:Product {id: 'p2'})-[e:HAS_BRAND|IN_CATEGORY]->(n) RETURN n.id AS n")
    assert sorted(kept["n"]) == ["Acme", "Home > Kitchen > Mugs"]
