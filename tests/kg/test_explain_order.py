"""The paths of an explanation: chosen variety first, listed by score (API and ``kgrec explain``)."""

from __future__ import annotations

import re

from kg.build import BuildConfig, build_graph
from kg.explain import explain
from loaders.dataset import Dataset, make_table


def _two_brands_one_category() -> Dataset:
    """u1 bought two Acme mugs and a Zed teapot; the Acme teapot p3 is then explained by two
    same-brand paths (0.8 × 1/2 each) and one same-category path (0.5 × 1/2)."""
    ds = Dataset(name="order")
    ds.users = make_table("users", [{"user_id": "u1", "name": "U1"}])
    ds.items = make_table("items", [
        {"item_id": "p1", "title": "Red Mug", "brand": "Acme", "categories": ["Mugs"]},
        {"item_id": "p2", "title": "Blue Mug", "brand": "Acme", "categories": ["Mugs"]},
        {"item_id": "p3", "title": "Acme Teapot", "brand": "Acme", "categories": ["Teapots"]},
        {"item_id": "p4", "title": "Zed Teapot", "brand": "Zed", "categories": ["Teapots"]},
    ])
    ds.interactions = make_table("interactions", [
        {"user_id": "u1", "item_id": p, "event": "purchase", "value": 1, "timestamp": t}
        for p, t in (("p1", 100), ("p2", 200), ("p4", 300))])
    return ds


def test_the_chosen_paths_are_listed_by_score(store):
    """Variety first chose the best same-brand and the same-category path before the second
    same-brand one, and listed them so (0.4, 0.25, 0.4): the chosen paths are the same, in
    score order now; with room for two, variety still keeps the category path."""
    build_graph(_two_brands_one_category(), store, BuildConfig(progress=False))
    why = explain(store, "u1", "p3")
    assert [(p.template, p.score) for p in why.paths] == [("same_brand", 0.4), ("same_brand", 0.4),
                                                          ("same_category", 0.25)]
    assert why.sentence == why.paths[0].sentence and why.score == 0.4
    two = explain(store, "u1", "p3", max_paths=2)
    assert [(p.template, p.score) for p in two.paths] == [("same_brand", 0.4), ("same_category", 0.25)]
    assert two.paths[0] == why.paths[0]  # the best path does not depend on max_paths


def test_kgrec_explain_prints_the_paths_by_score(tmp_path, capsys):
    from fusion.cli import main
    from kg.stores import StoreConfig, open_store

    db = str(tmp_path / "graph")
    with open_store(StoreConfig(path=db)) as store:
        build_graph(_two_brands_one_category(), store, BuildConfig(progress=False))
    assert main(["explain", "--db", db, "--user", "u1", "--item", "p3"]) == 0
    scores = [float(s) for s in re.findall(r"^  (\d\.\d{3})  ", capsys.readouterr().out, re.MULTILINE)]
    assert scores == [0.4, 0.4, 0.25]
