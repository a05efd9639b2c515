"""Keeping a run fresh: delta ingest, fold-in updates as run versions, Engine.reload.

On a tiny run folder (:func:`fusion.tiny_run.make_tiny_run`: random parts, a real graph
store): events of a new user and of a known user are ingested, the run updated, and the
Engine reloaded -- the new user is known and gets recommendations from their history,
the known user's vector moves, a new product is recommendable, searchable and similar,
a withdrawn product is never served, and an update against a store rebuilt from scratch
is refused.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from fusion.engine import Engine
from fusion.text.texts import product_texts
from fusion.tiny_run import make_tiny_run
from fusion.update import (calibrate, cross_validated_ridge, fold_in_products, text_neighbourhood_means,
                           update_run)
from kg.build import BuildConfig, build_graph, store_version
from kg.errors import DataError
from kg.ingest import ingest
from kg.run_dir import RunDir
from kg.stores import StoreConfig, open_store
from loaders.dataset import Dataset, make_table

QUIET = BuildConfig(progress=False)


def events(rows) -> Dataset:
    return Dataset(name="delta", interactions=make_table("interactions", rows))


@pytest.fixture
def tiny(tmp_path):
    run, dataset = make_tiny_run(tmp_path)
    return run, dataset, StoreConfig.from_location(run.store_location())


def test_calibrated_readout_recovers_a_linear_map():
    g = np.random.default_rng(0)
    import torch

    x = torch.from_numpy(g.normal(size=(500, 8))).float()
    w = torch.from_numpy(g.normal(size=(8, 8))).float()
    assert torch.allclose(calibrate(x, x @ w, ridge=1e-8), w, atol=1e-3)


def test_text_neighbourhood_is_the_most_similar_trained_products_by_text():
    # 4 products: 0 and 1 share a text direction, 2 another; 3 has no text; 0 is the new one
    text = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0]])
    text = torch.nn.functional.normalize(text, dim=-1)
    vectors = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    known = np.array([False, True, True, True])
    means = text_neighbourhood_means(text, vectors, known, np.array([0, 1, 3]), k=1)
    assert torch.allclose(means[0], vectors[1])          # its nearest trained product by text
    assert torch.allclose(means[1], vectors[2])          # never itself: the next one (similarity 0.11 > 0)
    assert torch.equal(means[2], torch.zeros(2))         # no text: nothing similar
    both = text_neighbourhood_means(text, vectors, known, np.array([0]), k=2)[0]
    assert torch.allclose(both, vectors[1])              # product 2's similarity is 0: no weight
    rows = np.array([0, 1, 2, 3])                        # row by row (cells: one row of 3 at a time) alike
    assert torch.equal(text_neighbourhood_means(text, vectors, known, rows, k=2, cells=3),
                       text_neighbourhood_means(text, vectors, known, rows, k=2))


def test_a_new_product_without_graph_neighbours_gets_its_vector_from_its_text():
    """The fold-in of a product with no brand, category, link or buyer: a zero vector from the
    graph alone; with the text embeddings, a vector among the trained products whose texts are
    like its own (two planted clusters of trained products, text and vectors aligned)."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    n, d = 60, 8
    cluster = torch.arange(n + 2) % 2                                   # 2 new products: rows n, n + 1
    centres_vec, centres_text = torch.randn(2, d, generator=g) * 3, torch.randn(2, 16, generator=g)
    vectors = centres_vec[cluster] + 0.3 * torch.randn(n + 2, d, generator=g)
    text = torch.nn.functional.normalize(centres_text[cluster] + 0.3 * torch.randn(n + 2, 16, generator=g), dim=-1)
    known = np.arange(n + 2) < n
    class Graph(dict):  # the export's graph: products, no brand, category, entity or link at all
        edge_types: list = []

    export = SimpleNamespace(data=Graph(product=SimpleNamespace(num_nodes=n + 2)))
    users = torch.randn(5, d, generator=g)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    rows = np.array([n, n + 1])
    assert fold_in_products(export, vectors.clone(), known, users, empty, rows).abs().sum() == 0
    folded = fold_in_products(export, vectors.clone(), known, users, empty, rows, text=text)
    for row, vec in zip(rows, folded):
        cos = torch.nn.functional.cosine_similarity(vec[None], centres_vec, dim=-1)
        assert cos[cluster[row]] > 0.9 and cos[1 - cluster[row]] < cos[cluster[row]] - 0.3, cos
        assert vec.norm() > 0.5 * float(vectors[:n].norm(dim=1).median())  # on the trained products' scale


def test_cross_validated_ridge_is_small_for_a_clean_map_and_large_for_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    assert cross_validated_ridge(x, x @ torch.randn(8, 4, generator=g)) == 1e-3
    assert cross_validated_ridge(x, torch.randn(400, 4, generator=g)) == 1.0


def two_source_shop(informative: str, n: int = 400, d: int = 8, seed: int = 0):
    """Trained products in 4 planted clusters (their vectors near the cluster's centre) and 2
    new ones; every product has a brand (of 40) and a text, and only ``informative`` ("graph"
    or "text") says its cluster -- the other is random."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    cluster = torch.arange(n + 2) % 4
    centres = torch.randn(4, d, generator=g) * 3
    vectors = centres[cluster] + 0.5 * torch.randn(n + 2, d, generator=g)
    random_brand = torch.randint(0, 40, (n + 2,), generator=g)
    brand = cluster * 10 + torch.randint(0, 10, (n + 2,), generator=g) if informative == "graph" else random_brand
    text_centres = torch.randn(4, 16, generator=g)
    text = (text_centres[cluster] if informative == "text" else torch.randn(n + 2, 16, generator=g) * 0) \
        + 0.3 * torch.randn(n + 2, 16, generator=g)
    edges = {("product", "HAS_BRAND", "brand"): SimpleNamespace(edge_index=torch.stack([torch.arange(n + 2), brand]))}

    class Graph(dict):
        edge_types = list(edges)

    data = Graph({"product": SimpleNamespace(num_nodes=n + 2), "brand": SimpleNamespace(num_nodes=40), **edges})
    return (SimpleNamespace(data=data), vectors, torch.nn.functional.normalize(text, dim=-1), np.arange(n + 2) < n,
            centres, cluster)


@pytest.mark.parametrize("informative", ["graph", "text"])
def test_a_new_product_with_graph_and_text_follows_the_one_that_predicts_trained_products(informative, monkeypatch):
    """Where the brand says a product's cluster and its text does not (or the other way round),
    the combining readout, fitted on trained products, gives the new products the informative
    direction; an equal sum of the two (the combination switched off) lands between."""
    import fusion.update

    export, vectors, text, known, centres, cluster = two_source_shop(informative)
    rows = np.flatnonzero(~known)
    users = torch.randn(5, vectors.shape[1])
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def cosines() -> torch.Tensor:
        folded = fold_in_products(export, vectors.clone(), known, users, empty, rows, text=text)
        return torch.nn.functional.cosine_similarity(folded, centres[cluster[rows]], dim=-1)

    combined = cosines()
    assert bool((combined > 0.98).all()), combined
    monkeypatch.setattr(fusion.update, "COMBINE_FOLDS", 10 ** 6)  # too few products to fit it: summed
    summed = cosines()
    assert bool((combined > summed + 0.05).all()), (combined, summed)


def test_ingest_adds_events_and_new_users_and_advances_the_sequence(tiny):
    run, dataset, config = tiny
    item = dataset.items["item_id"].iloc[0]
    with open_store(config) as store:
        before = store_version(store)
        counts = store.counts()
        report = ingest(store, events([
            {"user_id": "newbie", "item_id": item, "event": "purchase", "timestamp": 1_700_000_000},
            {"user_id": "newbie", "item_id": "no-such-product", "event": "purchase", "timestamp": 1_700_000_001}]),
            QUIET)
        after = store.counts()
        assert report.new_users == 1 and report.rejected == {
            "interactions: unknown product (ingest its catalogue row first)": 1}
        assert after["User"] == counts["User"] + 1 and after["PURCHASED"] == counts["PURCHASED"] + 1
        assert report.version.sequence == before.sequence + 1 and report.version.store_id == before.store_id
        # the same delta again writes nothing and does not advance the sequence
        again = ingest(store, events([{"user_id": "newbie", "item_id": item, "event": "purchase",
                                       "timestamp": 1_700_000_000}]), QUIET)
        assert again.build.created == 0 and again.version == report.version
        # id-only rows of known products (a loader given only events lists them) change nothing
        title = store.cypher("MATCH (p:Product {id: $id}) RETURN p.title AS t", id=item)["t"].iloc[0]
        ingest(store, Dataset(name="ids", items=make_table("items", {"item_id": [item]})), QUIET)
        assert store.cypher("MATCH (p:Product {id: $id}) RETURN p.title AS t", id=item)["t"].iloc[0] == title


def structured_gnn(run: RunDir, dataset: Dataset, seed: int = 0) -> None:
    """Give the tiny run's random GNN vectors the structure trained ones have -- a product
    near the others of its brand, a user near what they bought -- in the tables and the
    embeddings alike, so that a fold-in has something to get right (or wrong)."""
    import torch

    from fusion.ranking.features import FeatureTables
    from kg.export import GraphExport
    from kg.run_dir import save_npz

    g = torch.Generator().manual_seed(seed)
    tables = FeatureTables.load(run.fusion_tables)
    maps, _ = GraphExport.read_id_maps(run.graph)
    brand = dataset.items.set_index("item_id")["brand"].reindex(maps["product"]).fillna("").to_numpy()
    names, codes = np.unique(brand, return_inverse=True)
    dim = tables.item_gnn.shape[1]
    item = 1.5 * torch.randn(len(names), dim, generator=g)[torch.from_numpy(codes)] + torch.randn(len(brand), dim,
                                                                                                   generator=g)
    split = run.load_split()
    hist = np.zeros((tables.num_users, len(brand)), np.float32)
    hist[split.train[0], split.train[1]] = 1
    user = torch.from_numpy(hist) @ item / torch.from_numpy(hist.sum(1, keepdims=True).clip(1))
    user = user + 0.3 * torch.randn(user.shape, generator=g)
    tables.item_gnn, tables.user_gnn = item, user
    tables.save(run.fusion_tables)
    save_npz(run.embeddings, user=user.numpy(), item=item.numpy(), user_ids=maps["user"].astype(str),
             item_ids=maps["product"].astype(str))
    run.write_manifest()


def test_update_folds_in_users_and_products_as_a_new_version(tiny):
    run, dataset, config = tiny
    structured_gnn(run, dataset)
    engine = Engine.open(run.path)
    items = list(engine.catalogue.ids[:6])
    known = engine.user_index[3]
    before_known = engine.tables.user_gnn[3].clone()
    new_item = {"item_id": "brand-new", "title": "Zentro Elite headphones X-1", "brand": dataset.items["brand"].iloc[0],
                "categories": list(dataset.items["categories"].iloc[0]), "price": 42.0}
    delta = Dataset(name="delta", items=make_table("items", [new_item]), interactions=make_table("interactions", [
        {"user_id": "newbie", "item_id": i, "event": event, "timestamp": 1_700_000_000 + 10 * n + k}
        for n, i in enumerate(items[:3]) for k, event in enumerate(("impression", "click", "purchase"))] + [
        {"user_id": known, "item_id": i, "event": "purchase", "timestamp": 1_700_000_100 + n}
        for n, i in enumerate(items[3:6])]))
    with open_store(config) as store:
        ingest(store, delta, QUIET)
        report = update_run(store, run.path)
    assert report.version == "v000001" and (report.users_added, report.users_updated, report.products_added) == (1, 1, 1)
    assert RunDir(run.path).current_version() == "v000001"
    assert not engine.knows_user("newbie") and engine.reload() and engine.version == "v000001"
    assert engine.knows_user("newbie") and engine.knows_item("brand-new")
    row = engine.user_rows(["newbie"])[0]
    assert engine.tables.user_gnn[row].abs().sum() > 0          # a real vector, not the cold-start path
    assert not np.allclose(engine.tables.user_gnn[engine.user_rows([known])[0]], before_known)
    assert [r.item_id for r in engine.recommend("newbie", k=5)]   # from its history, seen items excluded
    assert not set(items[:3]) & {r.item_id for r in engine.recommend("newbie", k=5)}
    # the exposure model counts the newbie's impressions: their shown products' P(shown) rises above the shop's
    shown = torch.tensor([engine.item_row(i) for i in items[:3]])
    exposure = engine.scorer.exposure
    assert RunDir(run.path).serving().fusion_exposure.parent.parent.name == "v000001"  # the version's own file
    newbie = exposure.log_prob(torch.full_like(shown, engine.user_rows(["newbie"])[0]), shown)
    assert newbie.exp().sum() > exposure.log_prob(torch.full_like(shown, -1), shown).exp().sum()
    # the new product, at once: in some user's top 10 (of 41 products, 20 candidates each), in
    # the top 5 of a search for its title, and among the products most like its nearest one
    vectors = engine.tables.item_gnn
    row = engine.item_row("brand-new")
    trained = np.delete(np.arange(len(vectors)), row)
    assert vectors[row].norm() == pytest.approx(float(vectors[trained].norm(dim=1).median()), rel=0.25)  # on scale
    tops = engine.recommend_batch(list(engine.user_index), k=10)
    assert sum("brand-new" in {r.item_id for r in recs} for recs in tops) >= 1
    assert "brand-new" in [r.item_id for r in engine.search(new_item["title"], k=5)]
    text = product_texts(make_table("items", [new_item])).iloc[0]  # its text embedding is in the tables:
    assert engine.search(text, k=1)[0].item_id == "brand-new"      # its own text finds it first
    nearest = engine.similar("brand-new", k=3)
    assert len(nearest) == 3 and "brand-new" in {r.item_id for r in engine.similar(nearest[0].item_id, k=10)}
    # nothing new: no version
    with open_store(config) as store:
        assert update_run(store, run.path).version is None
    Engine.open(run.path).close()  # a fresh Engine opens the newest version, manifest-checked


def test_an_update_says_which_new_products_it_had_nothing_to_place_by(tiny):
    """A new product listed with a title and brand is folded in; one listed by its id and a
    price alone (no KG neighbour, no text, no buyer) gets a zero vector, and the update says
    so. (A row of nothing but an id is no catalogue row: :func:`kg.ingest.ingest` drops it.)"""
    run, dataset, config = tiny
    named = {"item_id": "named-new", "title": "Zentro Elite headphones X-2", "brand": dataset.items["brand"].iloc[0],
             "categories": list(dataset.items["categories"].iloc[0]), "price": 40.0}
    listing = [named, {"item_id": "id-only", "price": 9.5}, {"item_id": "bare"}]
    with open_store(config) as store:
        ingest(store, Dataset(name="listing", items=make_table("items", listing)), QUIET)
        assert "bare" not in set(store.node_ids("Product"))
        report = update_run(store, run.path)
    assert (report.products_added, report.products_unplaced) == (2, 1), report
    assert "1 new with no KG neighbour, text or buyer" in report.line()
    engine = Engine.open(run.path)
    assert engine.tables.item_gnn[engine.item_row("id-only")].abs().sum() == 0
    assert engine.tables.item_gnn[engine.item_row("named-new")].abs().sum() > 0


def test_a_user_who_bought_only_new_products_is_placed_by_them(tiny):
    """A new customer whose purchases are all of products listed in the same delta gets a
    vector from those products once they are placed (it was zero: folded in before them), and
    an existing customer whose new purchase is of a new product only keeps a vector."""
    run, dataset, config = tiny
    engine = Engine.open(run.path)
    brand, cats = dataset.items["brand"].iloc[0], list(dataset.items["categories"].iloc[0])
    new = [{"item_id": f"fresh-{n}", "title": f"Zentro Elite headphones Z-{n}", "brand": brand, "categories": cats,
            "price": 30.0 + n} for n in range(2)]
    trained = engine.tables.user_gnn.norm(dim=1) > 0
    known = next(u for u, r in zip(engine.user_index, engine.user_rows(list(engine.user_index))) if trained[r])
    delta = Dataset(name="launch", items=make_table("items", new), interactions=make_table("interactions", [
        {"user_id": "first-buyer", "item_id": "fresh-0", "event": "purchase", "timestamp": 1_700_000_000},
        {"user_id": "first-buyer", "item_id": "fresh-1", "event": "purchase", "timestamp": 1_700_000_001},
        {"user_id": known, "item_id": "fresh-1", "event": "purchase", "timestamp": 1_700_000_002}]))
    with open_store(config) as store:
        ingest(store, delta, QUIET)
        report = update_run(store, run.path)
    assert (report.users_added, report.products_added, report.products_unplaced) == (1, 2, 0), report
    engine.reload()
    vectors, items = engine.tables.user_gnn, engine.tables.item_gnn
    buyer = vectors[engine.user_rows(["first-buyer"])[0]]
    assert buyer.norm() > 0
    scores = items @ buyer  # placed by what they bought: those score among the best for them
    ranks = [int((scores > scores[engine.item_row(i)]).sum()) for i in ("fresh-0", "fresh-1")]
    assert max(ranks) < len(scores) // 4, ranks
    assert vectors[engine.user_rows([known])[0]].norm() > 0


def test_withdrawn_products_are_never_served(tiny):
    run, dataset, config = tiny
    engine = Engine.open(run.path)
    user = engine.user_index[0]
    top = engine.recommend(user, k=1)[0].item_id
    row = dataset.items[dataset.items["item_id"] == top].iloc[0].to_dict()
    with open_store(config) as store:
        ingest(store, Dataset(name="withdraw", items=make_table("items", [{**row, "available": 0}])), QUIET)
        update_run(store, run.path)
    engine.reload()
    assert top not in {r.item_id for r in engine.recommend(user, k=40)}
    assert top not in {r.item_id for r in engine.similar(engine.catalogue.ids[1], k=40)}
    assert top in {r.item_id for r in engine.recommend(user, k=40, filters={"include_unavailable": True})}


def test_reload_does_not_disturb_requests_in_flight(tiny):
    run, dataset, config = tiny
    engine = Engine.open(run.path)
    users = list(engine.user_index[:20])
    errors, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                for u in users:
                    assert len(engine.recommend(u, k=5)) == 5
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    items = list(engine.catalogue.ids[:4])
    for n in range(3):  # three updates and reloads while the threads serve
        with open_store(config) as store:
            ingest(store, events([{"user_id": f"late{n}", "item_id": items[n], "event": "purchase",
                                   "timestamp": 1_700_000_000 + n}]), QUIET)
            update_run(store, run.path)
        assert engine.reload()
    stop.set()
    for t in threads:
        t.join()
    assert not errors and engine.version == "v000003"


def test_following_engine_swaps_to_a_new_version_and_says_so(tiny):
    """Engine.follow loads an updater's new version in the background and calls on_swap
    after the swap (the service freezes the garbage collector's view there)."""
    run, dataset, config = tiny
    swapped = threading.Event()
    with Engine.open(run.path) as engine:
        before = engine.version
        engine.follow(poll_seconds=0.05, on_swap=swapped.set)
        with open_store(config) as store:
            ingest(store, events([{"user_id": "follower-check", "item_id": str(engine.catalogue.ids[0]),
                                   "event": "purchase", "timestamp": 1_700_000_100}]), QUIET)
            update_run(store, run.path)
        assert swapped.wait(30), "no swap within 30 s"
        assert engine.version != before and engine.reload_error is None


def test_an_update_against_a_rebuilt_store_is_refused(tiny):
    run, dataset, config = tiny
    with open_store(config) as store:
        store.clear()  # rebuilt from scratch: a new store identity
        build_graph(dataset, store, QUIET)
        with pytest.raises(DataError, match="rebuilt from scratch"):
            update_run(store, run.path)


def test_a_retried_event_and_a_refused_batch_never_block_the_updater(tiny, capsys):
    """The same event posted twice (a client's retry, in two batches) is one event; a batch
    the store refuses is set aside in ``inbox/rejected/`` with its reason, and the batches
    after it are still ingested and folded in."""
    import pandas as pd

    from fusion.update import EventInbox, Updater
    from kg.run_dir import save_parquet

    run, dataset, config = tiny
    user, item = "retrying-shopper", str(dataset.items["item_id"].iloc[0])
    inbox = EventInbox(run.path)
    event = {"user_id": user, "item_id": item, "event": "purchase", "value": 1.0, "timestamp": 1_700_000_000}
    assert inbox.put([event])[0] == 1 and inbox.put([event])[0] == 1
    bad = inbox.folder / "00000000000000000001-000000.parquet"          # sorts first: before the good ones
    save_parquet(pd.DataFrame([{**event, "user_id": "x", "timestamp": 10**15}]), bad)  # far out of range
    later = {**event, "item_id": str(dataset.items["item_id"].iloc[1]), "timestamp": 1_700_000_100}
    assert inbox.put([later])[0] == 1
    report = Updater(run.path).step()
    assert report is not None and inbox.pending() == []
    assert (inbox.folder / "rejected" / bad.name).exists()
    assert "timestamp" in (inbox.folder / "rejected" / f"{bad.stem}.txt").read_text()
    assert bad.name in capsys.readouterr().err
    with open_store(config) as store:
        got = store.cypher("MATCH (u:User {id: $u})-[r:PURCHASED]->(p:Product) RETURN p.id AS item, r.ts AS ts",
                           u=user)
    assert sorted(got["item"]) == sorted([item, later["item_id"]])          # the retried purchase once


def test_a_warm_start_is_judged_on_held_out_new_pairs_and_never_worse_than_the_fold_in(tiny):
    """``update_run(warm_start=E)`` fine-tunes the served vectors from the fold-in on the new
    pairs (plus a replay of old ones) and keeps the result only if it ranks a held-out slice
    of the new pairs better than the fold-in by a standard error; the version records why."""
    from fusion.update import FINE_TUNE_HELD_OUT, FINE_TUNE_MIN_PAIRS

    run, dataset, config = tiny
    structured_gnn(run, dataset)
    engine = Engine.open(run.path)
    items, users = list(engine.catalogue.ids), list(engine.user_index)
    g = np.random.default_rng(1)
    rows = [{"user_id": u, "item_id": items[int(j)], "event": "purchase", "timestamp": 1_700_000_000 + n}
            for n, u in enumerate(users) for j in g.choice(len(items), 2, replace=False)]
    with open_store(config) as store:
        ingest(store, events(rows), QUIET)
        report = update_run(store, run.path, warm_start=3)
    warm = report.warm_start
    assert warm["new_pairs"] >= FINE_TUNE_MIN_PAIRS
    assert warm["held_out_pairs"] == round(warm["new_pairs"] * FINE_TUNE_HELD_OUT)
    assert set(warm["ndcg@10"]) == {"fold-in", "epoch 1", "epoch 2", "epoch 3"}
    scores = warm["ndcg@10"]
    assert warm["chosen"] == "fold-in" or scores[warm["chosen"]] > scores["fold-in"]
    assert RunDir(run.path).serving().record()["warm_start"] == warm   # version.json says what was kept
    assert engine.reload() and len(engine.recommend(users[0], k=5)) == 5
    with open_store(config) as store:  # too few new pairs: no warm start, said so
        ingest(store, events([{"user_id": users[0], "item_id": items[-1], "event": "purchase",
                               "timestamp": 1_800_000_000}]), QUIET)
        few = update_run(store, run.path, warm_start=3).warm_start
    assert few["chosen"] == "fold-in" and "fewer than" in few["why"]


def test_posted_events_are_checked_without_raising(tmp_path):
    """The inbox names the field of a bad event and never raises: a timestamp too large for
    int64 (an HTTP 500 before), an unknown event; the CSV reader's event synonyms are taken."""
    from fusion.update import EventInbox

    inbox = EventInbox(tmp_path)
    good = {"user_id": "u", "item_id": "i", "event": "purchase", "value": 1.0, "timestamp": 1_700_000_000}
    accepted, rejects = inbox.put([{**good, "timestamp": 99999999999999999999}, {**good, "event": "wishlist"},
                                   {**good, "event": " AddToCart "}, good, {**good, "value": -2.0},
                                   {**good, "user_id": "u\x00x"}, {**good, "item_id": "i\n"}])
    assert accepted == 2
    assert [(k, field) for k, field, _ in rejects] == [(0, "timestamp"), (1, "event"), (4, "value"),
                                                       (5, "user_id"), (6, "item_id")]
    # an id with a control character (as the loaders refuse them), the id never echoed
    assert rejects[3][2] == "control character in an id: U+0000 at position 2"
    assert rejects[4][2] == "control character in an id: U+000A at position 2"
    import pandas as pd

    events = pd.concat(pd.read_parquet(f) for f in inbox.pending())
    assert sorted(events["event"]) == ["cart", "purchase"]
