"""``similar`` for products the graph encoder never learned anything about.

A product with no interaction in training (and, for the KG model, no brand, category or
other triple) has no edge in the graph the GNN was trained over: its vector is its random
start, pushed about only as a sampled negative, so its cosine to any product is noise. A
real ``kgrec build`` + ``kgrec train`` of a small CSV shop (30 users x 8 events on 10
titled products; 10 more products in the catalogue with no event and no text), then
``kgrec ingest`` + ``kgrec update``, through the command line.
"""

from __future__ import annotations

import csv
import random

import numpy as np

from fusion.cli import main
from fusion.engine import Engine

TRAIN = ["--epochs", "5", "--dim", "16", "--text-steps", "2", "--fusion-set", "epochs=2", "--fusion-set", "members=2",
         "--value-set", "epochs=20", "--value-set", "members=1", "--no-progress"]


def write_shop(folder) -> None:
    """``folder``: interactions.csv (30 users x 8 events on i0..i9) and items.csv (i0..i9
    titled lamps of brand L in Light; g0..g9 with nothing but their id)."""
    folder.mkdir()
    r, t0 = random.Random(7), 1_700_000_000
    with open(folder / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event", "timestamp", "value"])
        w.writerows([[f"u{u}", f"i{r.randrange(10)}", r.choice(["view", "click", "purchase"]),
                      t0 + r.randrange(10 ** 7), 1] for u in range(30) for _ in range(8)])
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "brand", "categories", "price"])
        w.writerows([[f"i{i}", f"Lamp {i}", "L", "Light", 20 + i] for i in range(10)]
                    + [[f"g{i}", "", "", "", ""] for i in range(10)])


def ghosts(recs) -> list[str]:
    return [r.item_id for r in recs if r.item_id.startswith("g")]


def test_a_product_outside_the_trained_graph_is_like_nothing_and_nothing_is_like_it(tmp_path, capsys):
    shop, db, run = tmp_path / "shop", str(tmp_path / "graph"), str(tmp_path / "run")
    write_shop(shop)
    assert main(["build", "--source", "csv", "--path", str(shop), "--db", db, "--no-progress"]) == 0
    assert main(["train", "--db", db, "--run", run, *TRAIN]) == 0
    emb = np.load(f"{run}/embeddings.npz")
    reached = dict(zip(emb["item_ids"], emb["item_in_graph"].tolist()))
    assert not any(reached[f"g{i}"] for i in range(10))
    with Engine.open(run) as engine:
        # g3 and g6 share nothing (no event, no text, no brand or category): before, g6 came
        # first for g3 with a GNN cosine of 0.57, and g7 was among i3's products
        assert engine.similar("g3", k=5) == []
        near = engine.similar("i3", k=20)
        assert ghosts(near) == [] and {r.item_id for r in near} == {f"i{i}" for i in range(10)} - {"i3"}
        assert all(r.objectives["gnn"] != 0 for r in near)
    capsys.readouterr()
    assert main(["similar", "--run", run, "--item", "g3"]) == 0  # the CLI says why the list is empty
    assert "none: g3 has neither a graph vector" in capsys.readouterr().out
    # a version written by kgrec update: a new lamp n1 (placed by its brand, category and
    # buyers) and a purchase of g5, whose vector the update does not train (no warm start)
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "items.csv").write_text("item_id,title,brand,categories,price\nn1,Lamp N,L,Light,25\n")
    (delta / "interactions.csv").write_text("user_id,item_id,event,timestamp,value\n"
                                            "u1,n1,purchase,1710000000,1\nu2,n1,purchase,1710000001,1\n"
                                            "u3,g5,purchase,1710000002,1\nu4,i3,purchase,1710000003,1\n")
    assert main(["ingest", "--source", "csv", "--path", str(delta), "--run", run]) == 0
    assert main(["update", "--run", run]) == 0
    with Engine.open(run) as engine:
        assert engine.version == "v000001"
        assert engine.similar("g3", k=5) == [] and engine.similar("g5", k=5) == []
        near = engine.similar("i3", k=20)
        assert ghosts(near) == [] and "n1" in {r.item_id for r in near}
        assert ghosts(engine.similar("n1", k=20)) == [] and len(engine.similar("n1", k=20)) == 10
    capsys.readouterr()


def test_a_run_trained_before_items_in_graph_keeps_its_answers(tmp_path):
    """A run whose embeddings.npz has no ``item_in_graph`` -- every run trained before the
    GNN stage wrote it, and :func:`fusion.tiny_run.make_tiny_run`'s -- counts every product
    as having a graph vector, as it did."""
    from fusion.engine import graph_vector_items
    from fusion.tiny_run import make_tiny_run

    run, _ = make_tiny_run(tmp_path)
    with Engine.open(run.path) as engine:
        v = engine.current
        assert graph_vector_items(run, v.catalogue.ids, v.tables.item_gnn, run.load_split()) is None
        assert v.likeable is None and len(engine.similar(str(v.catalogue.ids[0]), k=39)) == 39
