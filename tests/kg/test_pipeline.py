"""The graph-encoder stage end to end: store -> export -> split -> train -> run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kg.build import BuildConfig, build_graph
from kg.pipeline import GnnRunConfig, evaluate_run, open_run, train_gnn
from kg.train import TrainConfig
from loaders import load

FAST = TrainConfig(model="lightgcn", epochs=3, lr=0.01, batch_size=1024, embedding_dim=16, num_layers=2,
                   eval_every=1, patience=3)


@pytest.fixture(scope="module")
def shop():
    return load("synthetic", None, n_users=200, n_items=120, n_interactions=15_000, seed=3)


def test_run_folder_is_complete_and_reloadable(shop, store, tmp_path, monkeypatch):
    build_graph(shop, store, BuildConfig(progress=False))
    run = train_gnn(store, tmp_path / "run", GnnRunConfig(train=FAST), progress=False)
    folder = tmp_path / "run"
    for name in ("run.json", "graph/graph.pt", "graph/id_maps.json", "split.npz", "model.pt",
                 "embeddings.npz", "metrics.json", "report.md"):
        assert (folder / name).exists(), name
    recorded = json.loads((folder / "run.json").read_text())
    assert recorded["gnn"]["train"]["epochs"] == 3
    assert recorded["store"] == store.location() and recorded["store"]["kind"] == store.kind  # where the graph is
    ran = recorded["ran_with"]["gnn"]  # what "auto" resolved to: the numbers to set to repeat the run
    assert isinstance(ran["threads"], int) and ran["threads"] >= 1 and ran["device"] in ("cpu", "cuda"), ran
    emb = np.load(folder / "embeddings.npz")
    assert emb["item"].shape == (120, 16) and emb["user"].shape == (200, 16)
    assert sorted(emb["item_ids"]) == list(emb["item_ids"])  # the id map order
    # the synthetic shop has a KG: its content is ranked too, with the real and a shuffled KG
    assert set(run.metrics) == {"popularity", "lightgcn", "KG content", "KG content, shuffled KG"}
    content, shuffled = run.metrics["KG content"], run.metrics["KG content, shuffled KG"]
    assert content["recall@20"] > 1.5 * shuffled["recall@20"], run.metrics  # the planted tastes are in the KG
    again = evaluate_run(folder)
    for row in run.metrics:
        for name, value in run.metrics[row].items():
            assert again.metrics[row][name] == pytest.approx(value, abs=1e-9), (row, name)
    assert "| lightgcn |" in (folder / "report.md").read_text()
    # where in the long tail (kgrec evaluate --by-degree): every test pair in one of the groups;
    # popularity finds the least-known items' pairs least often
    table = again.by_degree(3).splitlines()
    counts = [int(c.split("(")[1].split()[0].replace(",", "")) for c in table[2].split("|")[2:-1]]
    assert len(counts) == 3 and sum(counts) == len(again.split.test[0])
    pop = [float(v) for v in next(r for r in table if r.startswith("| popularity |")).split("|")[2:-1]]
    assert pop[0] <= pop[-1] and pop[-1] > 0, table
    assert any(r.startswith("| lightgcn |") for r in table)
    content_rows = {r.split("|")[1].strip(): [float(v) for v in r.split("|")[2:-1]] for r in table
                    if r.startswith("| KG content")}
    assert set(content_rows) == {"KG content", "KG content, shuffled KG"}, table
    assert sum(content_rows["KG content"]) > sum(content_rows["KG content, shuffled KG"]), table  # planted tastes
    # which relations say what users choose (kgrec evaluate --by-relation)
    by_relation = again.by_relation()
    relations = {r.split("|")[1].strip(): r.split("|")[2:-1] for r in by_relation.splitlines()
                 if r.startswith("| ") and not r.startswith("| relation")}
    for planted in ("has_brand", "in_category"):  # the synthetic shop plants tastes in brands and categories
        triples, reached, ndcg, shuffled = (float(v.replace(",", "")) for v in relations[planted][:4])
        assert reached == len(again.split.items if again.split.items is not None else emb["item_ids"])
        assert ndcg > 1.5 * shuffled, relations[planted]
    assert "related:works_for" not in relations and "Left out" in by_relation  # entity-entity: no item
    from fusion.cli import main

    assert main(["evaluate", "--run", str(folder), "--by-degree", "3", "--by-relation"]) == 0
    assert "| KG content, shuffled KG |" in (folder / "report.md").read_text()
    # on a big shop the content rows score a seeded sample of the test users, and say so
    import kg.pipeline

    monkeypatch.setattr(kg.pipeline, "CONTENT_USERS", 20)
    sampled = evaluate_run(folder)
    assert sampled.metrics["KG content"]["users"] == 20 < sampled.metrics["popularity"]["users"]
    assert sampled.metrics["lightgcn"] == again.metrics["lightgcn"]
    assert "on a sample of 20 test users" in sampled.report()
    sampled_table = sampled.by_degree(3).splitlines()
    assert sampled_table[2] == table[2] and sampled_table[-4:-2] == table[-4:-2]  # same groups; the models on all
    assert "KG content rows on a sample of 20 test users" in sampled_table[0]


def test_open_run_needs_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="kgrec train"):
        open_run(tmp_path)


@pytest.mark.neo4j
def test_item_embeddings_go_back_to_neo4j_with_a_vector_index(shop, neo4j_uri, tmp_path):
    from kg.stores.neo4j import Neo4jStore

    with Neo4jStore(neo4j_uri) as store:
        store.clear()
        build_graph(shop, store, BuildConfig(progress=False))
        run = train_gnn(store, tmp_path / "run", GnnRunConfig(train=FAST, write_embeddings=True),
                        progress=False)
        emb = np.load(tmp_path / "run" / "embeddings.npz")
        item = 7
        hits = store.vector_neighbours("Product", emb["item"][item], k=3)
        assert hits["id"].iloc[0] == emb["item_ids"][item]
        assert hits["score"].iloc[0] == pytest.approx(1.0, abs=1e-4)
        assert run.export.id_maps["product"][item] == emb["item_ids"][item]


@pytest.mark.neo4j
def test_similar_items_by_vector_index_with_graph_filters(shop, neo4j_uri, tmp_path):
    from kg.stores.neo4j import Neo4jStore

    with Neo4jStore(neo4j_uri) as store:
        store.clear()
        build_graph(shop, store, BuildConfig(progress=False))
        train_gnn(store, tmp_path / "run", GnnRunConfig(train=FAST, write_embeddings=True), progress=False)
        emb = np.load(tmp_path / "run" / "embeddings.npz")
        item = str(emb["item_ids"][0])
        plain = store.similar_items(item, k=5)
        unit = emb["item"] / np.linalg.norm(emb["item"], axis=1, keepdims=True)
        cosine = unit @ unit[0]
        exact = np.argsort(-cosine)[1:6]  # without the item itself
        # an approximate (HNSW) index: nearly the exact top 5, with exact scores ((1 + cos) / 2)
        assert len(set(plain["id"]) & {str(emb["item_ids"][j]) for j in exact}) >= 4
        position = {str(i): j for j, i in enumerate(emb["item_ids"])}
        want = [(1 + cosine[position[i]]) / 2 for i in plain["id"]]
        assert list(plain["score"]) == pytest.approx(want, abs=1e-3)
        peers = store.cypher("MATCH (:Product {id: $id})-[:IN_CATEGORY]->(c)<-[:IN_CATEGORY]-(o:Product) "
                             "RETURN o.id AS id, o.price AS price", id=item)
        bound = float(peers["price"].median())
        same_cat = store.similar_items(item, k=5, same_category=True, max_price=bound)
        assert len(same_cat) > 0 and set(same_cat["id"]) <= set(peers["id"])
        assert (same_cat["price"] <= bound).all()


def test_a_split_without_test_pairs_says_so_instead_of_zeros():
    """Every user with fewer than 3 items: leave-last-out holds nothing out, and the report
    says there is nothing to measure rather than a table of 0.0000."""
    from types import SimpleNamespace

    from kg.pipeline import GnnRun, GnnRunConfig
    from kg.split import Split

    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(3, 4, (np.array([0, 1, 2]), np.array([0, 1, 2])), none, none)
    run = SimpleNamespace(split=split, metrics={"popularity": {"recall@10": 0.0}},
                          config=GnnRunConfig(split="leave_last_out"), export=None)
    text = GnnRun.report(run)
    assert text.startswith("No test pairs: nothing to measure") and "0.0000" not in text
    assert "leave-last-out holds out an item only of users with at least 3" in text
    # kgrec evaluate --by-degree / --by-relation: no table of zeros (or NaNs) either
    assert GnnRun.by_degree(run) == "No test pairs: nothing to measure by item degree."
    assert GnnRun.by_relation(run) == "No test pairs: nothing to measure per relation."


RESUME = TrainConfig(model="lightgcn", epochs=1, lr=0.01, batch_size=512, embedding_dim=8, num_layers=1,
                     eval_every=1, patience=3, threads=1)


def test_no_test_pairs_names_the_split_that_was_made(tmp_path):
    """A time split of interactions that all share one time holds nothing out: the report
    says why in the time split's terms -- it named leave-last-out, which was not used."""
    from types import SimpleNamespace

    from kg.pipeline import GnnRun
    from kg.stores import StoreConfig, open_store

    shop = load("synthetic", None, n_users=40, n_items=30, n_interactions=1_500, seed=3)
    shop.interactions = shop.interactions.drop_duplicates(["user_id", "item_id", "event"]).reset_index(drop=True)
    shop.interactions["timestamp"] = shop.interactions["timestamp"].iloc[0]  # one time: no timestamps, say
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "graph"))) as store:
        build_graph(shop, store, BuildConfig(progress=False))
        run = train_gnn(store, tmp_path / "run", GnnRunConfig(split="time", train=RESUME), progress=False)
    assert run.split.sizes()["test"] == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.startswith("No test pairs: nothing to measure (the time split holds out the positives later "
                             "than the 0.9 quantile of their times (test_fraction 0.1), and none is later"), report
    assert "leave-last-out" not in report
    # every split kind says something true of itself
    said = {kind: GnnRun.report(SimpleNamespace(split=run.split, metrics={}, export=None,
                                                config=GnnRunConfig(split=kind, split_file=file)))
            for kind, file in (("given", None), ("leave_last_out", None), ("auto", "splits/x"),
                               ("time", None))}
    assert "the source's own split marks no positive interaction as test" in said["given"]
    assert "leave-last-out holds out an item only of users with at least 3" in said["leave_last_out"]
    assert "the split file splits/x names no test pair" in said["auto"]
    assert said["time"] == report.split("\n")[0]
    zero = GnnRun.report(SimpleNamespace(split=run.split, metrics={}, export=None,
                                         config=GnnRunConfig(split="time", test_fraction=0.0)))
    assert "the time split's test_fraction is 0" in zero


@pytest.mark.parametrize("model, branded", [("lightgcn", False), ("kgrec", True)])
def test_embeddings_record_which_items_the_graph_reached(tmp_path, model, branded):
    """``embeddings.npz`` says per item whether it has an edge in the graph the model was
    trained over (``item_in_graph``): a training pair, or for the KG model a triple. Three
    products without any event -- one of an existing brand, two with no brand or category
    -- have none for LightGCN; the KG model reaches the branded one through its brand."""
    from dataclasses import replace

    import pandas as pd

    from kg.stores import StoreConfig, open_store

    shop = load("synthetic", None, n_users=40, n_items=30, n_interactions=1_500, seed=3)
    brand = str(shop.items["brand"].iloc[0])
    ghosts = pd.DataFrame({"item_id": ["zz-branded", "zz-bare-1", "zz-bare-2"], "title": ["A", "B", "C"],
                           "description": "", "brand": [brand, "", ""], "categories": [[], [], []],
                           "price": 1.0, "features": [[], [], []], "available": 1})
    shop.items = pd.concat([shop.items, ghosts[shop.items.columns]], ignore_index=True)
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "graph"))) as store:
        build_graph(shop, store, BuildConfig(progress=False))
        run = train_gnn(store, tmp_path / "run", GnnRunConfig(train=replace(RESUME, model=model)), progress=False)
    emb = np.load(tmp_path / "run" / "embeddings.npz")
    flags = dict(zip(emb["item_ids"], emb["item_in_graph"]))
    assert emb["item_in_graph"].dtype == bool and len(flags) == len(emb["item"])
    assert (flags["zz-branded"], flags["zz-bare-1"], flags["zz-bare-2"]) == (branded, False, False)
    trained = np.zeros(run.split.num_items, bool)
    trained[run.split.train[1]] = True
    assert (emb["item_in_graph"] >= trained).all()  # every item of a training pair
    if model == "lightgcn":
        assert (emb["item_in_graph"] == trained).all()


def _small_store(path, seed: int = 3, n_interactions: int = 1_500):
    """An embedded store of a small synthetic shop (connected: close it after use)."""
    from kg.stores import StoreConfig, open_store

    store = open_store(StoreConfig(kind="embedded", path=str(path))).connect()
    shop = load("synthetic", None, n_users=40, n_items=30, n_interactions=n_interactions, seed=seed)
    build_graph(shop, store, BuildConfig(progress=False))
    return store


def test_resume_with_other_model_settings_names_them_in_one_line(tmp_path):
    """B9: a checkpoint of dim 8 resumed with dim 16 is a ConfigError naming the setting and
    what to do, not PyTorch's state_dict size-mismatch traceback; more epochs resume fine."""
    from dataclasses import replace

    from kg.errors import ConfigError

    store = _small_store(tmp_path / "graph")
    try:
        folder = tmp_path / "run"
        train_gnn(store, folder, GnnRunConfig(train=RESUME), progress=False)
        before = (folder / "run.json").read_text()
        with pytest.raises(ConfigError, match=r"train\.embedding_dim=8 \(given 16\).*without --resume"):
            train_gnn(store, folder, GnnRunConfig(train=replace(RESUME, embedding_dim=16)), resume=True,
                      progress=False)
        assert (folder / "run.json").read_text() == before  # nothing recorded for a resume refused
        run = train_gnn(store, folder, GnnRunConfig(train=replace(RESUME, epochs=2)), resume=True, progress=False)
        assert run.model.embeddings()[1].shape[1] == 8
    finally:
        store.close()


def test_resume_on_another_store_is_refused_and_run_json_keeps_the_trained_one(tmp_path):
    """B10: a resume continues on the run's own export, so a store other than run.json's is
    refused (it would be recorded but never read); a store that grew since the checkpoint is
    resumed on the export, and run.json keeps the store version that export is of."""
    from kg.build import store_version
    from kg.errors import ConfigError

    store = _small_store(tmp_path / "graph")
    other = _small_store(tmp_path / "other", seed=5)
    try:
        folder = tmp_path / "run"
        train_gnn(store, folder, GnnRunConfig(train=RESUME), progress=False)
        before = json.loads((folder / "run.json").read_text())
        with pytest.raises(ConfigError, match=r"was trained on embedded .*graph, not embedded .*other"):
            train_gnn(other, folder, GnnRunConfig(train=RESUME), resume=True, progress=False)
        assert json.loads((folder / "run.json").read_text())["store"] == before["store"] == store.location()
        build_graph(load("synthetic", None, n_users=50, n_items=35, n_interactions=2_000, seed=9), store,
                    BuildConfig(progress=False))  # the shop grew since the checkpoint
        assert store_version(store).sequence > before["store_version"]["sequence"]
        run = train_gnn(store, folder, GnnRunConfig(train=RESUME), resume=True, progress=False)
        assert len(run.export.id_maps["product"]) == 30  # the run's export, not the grown graph
        after = json.loads((folder / "run.json").read_text())
        assert after["store_version"] == before["store_version"] and after["store"] == before["store"]
    finally:
        store.close()
        other.close()


def test_a_checkpoint_of_another_shape_is_a_config_error(tmp_path):
    """B9, below the run folder: ``train(resume=True)`` with a model of another shape than
    the checkpoint's says so in one ConfigError line."""
    from dataclasses import replace

    from kg.errors import ConfigError
    from kg.train import build_model, train

    store = _small_store(tmp_path / "graph")
    try:
        gnn = train_gnn(store, tmp_path / "run", GnnRunConfig(train=RESUME), progress=False)
    finally:
        store.close()
    wider = replace(RESUME, embedding_dim=16)
    model = build_model(wider, gnn.export, gnn.split)
    with pytest.raises(ConfigError, match="trained with other settings.*without --resume") as caught:
        train(model, gnn.split, wider, checkpoint_dir=tmp_path / "run" / "checkpoints", resume=True, progress=False)
    assert "\n" not in str(caught.value)
