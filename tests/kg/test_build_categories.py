"""Category paths as written by hand-edited files: one normalised form for nodes and links.

A path with doubled spaces, a tab, spaces around it, an empty level (``>>``) or a trailing
``>`` used to give ``IN_CATEGORY`` rows naming the path as written while the ``Category``
nodes were made of its stripped levels: the embedded store's COPY failed with a traceback
("Unable to find primary key value Home  > Kitchen"), Neo4j left the link out. Now both come
from :func:`kg.rows.normalise_category_path` (the same rows on both stores).
"""

from __future__ import annotations

import pytest

from kg.build import BuildConfig, build_graph
from kg.catalogue import read_items
from kg.rows import category_levels, graph_rows, normalise_category_path
from loaders.dataset import Dataset, make_table

QUIET = BuildConfig(progress=False)


@pytest.mark.parametrize("written, levels", [
    ("Home > Kitchen", ["Home", "Kitchen"]),
    ("Home  > Kitchen", ["Home", "Kitchen"]),
    (" Home > Kitchen ", ["Home", "Kitchen"]),
    ("Home >\tKitchen", ["Home", "Kitchen"]),
    ("Home>Kitchen", ["Home", "Kitchen"]),
    ("Home >> Kitchen", ["Home", "Kitchen"]),
    ("Home > > Kitchen", ["Home", "Kitchen"]),
    ("Home > Kitchen >", ["Home", "Kitchen"]),
    ("> Home > Kitchen", ["Home", "Kitchen"]),
    ("Home\u00a0&  Garden > Tea\nPots", ["Home & Garden", "Tea Pots"]),
    ("Gifts", ["Gifts"]),
    ("", []),
    ("  ", []),
    (" > ", []),
    (None, []),
])
def test_category_levels(written, levels):
    assert category_levels(written) == levels
    assert normalise_category_path(written) == " > ".join(levels)
    assert normalise_category_path(normalise_category_path(written)) == normalise_category_path(written)


def _shop(categories: dict[str, list[str]]) -> Dataset:
    ds = Dataset(name="catspace")
    ds.items = make_table("items", [{"item_id": i, "title": f"Product {i}", "categories": c}
                                    for i, c in categories.items()])
    ds.users = make_table("users", [{"user_id": "u1"}])
    ds.interactions = make_table("interactions", [{"user_id": "u1", "item_id": i, "event": "purchase"}
                                                  for i in categories])
    return ds.validate()


MESSY = {
    "i1": ["Home  > Kitchen"],                      # two spaces (the fuzz report's reproducer)
    "i2": ["Home > Kitchen", " Home > Kitchen "],   # the same path twice, once padded
    "i3": ["Grocery >  Tea", "Food"],
    "i4": ["Grocery >\tTea > "],                    # a tab, a trailing '>'
    "i5": ["Home >> Kitchen > Mugs"],               # an empty level
    "i6": [" > ", ""],                              # no level at all: no category
}
STORED = {"i1": ["Home > Kitchen"], "i2": ["Home > Kitchen"], "i3": ["Food", "Grocery > Tea"],
          "i4": ["Grocery > Tea"], "i5": ["Home > Kitchen > Mugs"], "i6": []}
NODES = ["Food", "Grocery", "Grocery > Tea", "Home", "Home > Kitchen", "Home > Kitchen > Mugs"]


def test_graph_rows_link_only_to_category_nodes_they_make():
    steps = {s.name: s.rows for s in graph_rows(_shop(MESSY))}
    nodes = steps["Category"]
    assert sorted(nodes["id"]) == NODES
    assert set(steps["IN_CATEGORY"]["dst"]) <= set(nodes["id"])
    assert set(steps["SUBCATEGORY_OF"]["src"]) | set(steps["SUBCATEGORY_OF"]["dst"]) <= set(nodes["id"])
    links = steps["IN_CATEGORY"].groupby("src")["dst"].agg(sorted).to_dict()
    assert links == {i: paths for i, paths in STORED.items() if paths}
    names = dict(zip(nodes["id"], nodes["name"]))
    assert names["Home > Kitchen > Mugs"] == "Mugs" and names["Grocery > Tea"] == "Tea"


def test_messy_category_paths_build_on_both_stores(store):
    """The build that crashed: every link stored, under the normalised path; a rebuild of
    the same data is nothing new, and the same shop written cleanly changes nothing."""
    report = build_graph(_shop(MESSY), store, QUIET)
    counts = store.counts()
    assert counts["Category"] == len(NODES)
    assert counts["IN_CATEGORY"] == sum(len(p) for p in STORED.values()) == 6
    assert counts["SUBCATEGORY_OF"] == 3
    assert report.created == sum(counts.values())
    items = read_items(store).set_index("item_id")["categories"].to_dict()
    assert {i: list(c) for i, c in items.items()} == STORED
    clean = build_graph(_shop({i: p for i, p in STORED.items()}), store, QUIET)
    assert clean.created == 0 and store.counts() == counts


def test_an_ingested_messy_path_replaces_the_old_link(store):
    """An ingest writes the normalised link; the stale-link removal must keep that one (it
    compares with the path as written: the fresh link is removed with the old one)."""
    from dataclasses import replace

    from kg.ingest import ingest

    build_graph(_shop({"i1": ["Home > Kitchen"]}), store, QUIET)
    row = {"item_id": "i1", "title": "Product i1", "categories": ["Garden  > Tools"]}
    report = ingest(store, replace(Dataset(name="relist"), items=make_table("items", [row])), QUIET)
    got = store.cypher("MATCH (p:Product {id: 'i1'})-[:IN_CATEGORY]->(c) RETURN c.id AS c")
    assert sorted(got["c"]) == ["Garden > Tools"] and report.links_removed == 1
