"""``kgrec demo``: a synthetic shop end to end on the embedded store.

Generates a shop with planted tastes (users, products with brands/categories/prices and
text, impressions -> clicks -> purchases, reviews, search judgements), builds the
knowledge graph, trains every stage (KG-aware GNN, MiniLM fine-tuning, fusion), prints
the evaluation table, then answers a few requests through the Engine -- recommendations
with explanations, a cold-start user, a search, similar products -- and shows one live
step: a new customer's purchases ingested and folded in without retraining, their
recommendations before (cold start) and after. About 6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path

from fusion.ranking.config import FusionConfig
from fusion.pipeline import RunConfig, TextStageConfig, train_all
from fusion.text.finetune import TextTrainConfig
from kg.pipeline import GnnRunConfig
from kg.train import TrainConfig


def demo_config(quick: bool = False) -> RunConfig:
    """The demo's stages: small enough for a few minutes on 2 CPU cores."""
    gnn = GnnRunConfig(train=TrainConfig(model="kgrec", epochs=100 if quick else 300, lr=0.01, batch_size=2048,
                                         patience=10, eval_every=5))
    text = TextStageConfig(train=TextTrainConfig(epochs=1, max_steps=20 if quick else 60, batch_size=32))
    fusion = FusionConfig(epochs=6 if quick else 30)
    return RunConfig(gnn=gnn, text=text, fusion=fusion, baselines=not quick)


def live_step(engine, db, run_dir, item: str) -> None:
    """A new customer buys three products of one category: their events reach the graph
    (:func:`kg.ingest.ingest`), the run is updated without retraining
    (:func:`fusion.update.update_run`: a new version) and the Engine reloads it."""
    from kg.build import BuildConfig
    from kg.ingest import ingest
    from kg.stores import StoreConfig, open_store
    from loaders.dataset import Dataset, make_table

    _stage("5/5 live: a new customer's purchases, folded in without retraining")
    who = "live-customer"
    row = engine.item_row(item)
    category = engine.catalogue.categories[row][0] if engine.catalogue.categories[row] else None
    bought = [str(i) for i, cats in zip(engine.catalogue.ids, engine.catalogue.categories)
              if category is None or category in cats][:3]
    print(f"engine.recommend({who!r}, k=3) before: cold start ->",
          [r.item_id for r in engine.recommend(who, k=3)])
    events = make_table("interactions", [{"user_id": who, "item_id": i, "event": "purchase", "value": 1,
                                          "timestamp": int(time.time()) + n} for n, i in enumerate(bought)])
    t = time.perf_counter()
    from fusion.update import update_run

    with open_store(StoreConfig(kind="embedded", path=str(db))) as store:
        ingest(store, Dataset(name="live", interactions=events), BuildConfig(progress=False))
        report = update_run(store, run_dir, encoder=engine.loaded_encoder())
    engine.reload()
    print(f"{who} bought {bought} ({category}); {report.line()}; engine.reload() -> {engine.version} "
          f"({time.perf_counter() - t:.1f} s)")
    print(f"engine.recommend({who!r}, k=3) after:")
    for rank, r in enumerate(engine.recommend(who, k=3), 1):
        print(f"  {rank}. {r}")


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_demo(run_dir: str | Path = "runs/demo", *, db: str | Path = ".kgrec/demo", users: int = 2000,
             quick: bool = False, progress: bool = True) -> int:
    from fusion.engine import Engine
    from fusion.ranking.comparison import markdown, recall_note
    from kg.run_dir import RunDir
    from kg.build import BuildConfig, build_graph
    from kg.stores import StoreConfig, open_store
    from loaders.synthetic import SyntheticConfig, generate

    start = time.perf_counter()
    t = _stage(f"1/5 synthetic shop: {users:,} users -> knowledge graph in {db}")
    config = SyntheticConfig(n_users=users, n_items=500, n_interactions=users * 50, n_queries=150)
    dataset = generate(config)
    store = open_store(StoreConfig(kind="embedded", path=str(db)))
    with store:
        report = build_graph(dataset, store, BuildConfig(progress=progress))
    print(report.table())
    print(f"   {time.perf_counter() - t:.0f} s")

    t = _stage(f"2/5 training: graph encoder, text encoder (MiniLM), fusion -> {run_dir}")
    with open_store(StoreConfig(kind="embedded", path=str(db)), read_only=True) as store:
        out = train_all(store, run_dir, demo_config(quick), progress=progress)
    print(f"   {time.perf_counter() - t:.0f} s")

    _stage("3/5 test metrics (held-out purchases, held-out queries, test impressions)")
    print(markdown(out["fusion"]))
    print(recall_note(out["fusion"], RunDir(run_dir).load_split()))

    _stage("4/5 the Engine")
    with Engine.open(run_dir) as engine:  # explanations open the graph the run remembers
        shown = engine.user_index[:2]
        for user in shown:
            print(f"\nengine.recommend({user!r}, k=5, explain=True)")
            for rank, r in enumerate(engine.recommend(user, k=5, explain=True), 1):
                print(f"  {rank}. {r}")
                if r.explanation is not None:
                    print(f"     why: {r.explanation.sentence}")
        user = shown[0]
        print(f"\nengine.recommend({user!r}, k=3, weights={{'ctr': 1, 'cvr': 1, 'value': 1}})  # order value")
        for rank, r in enumerate(engine.recommend(user, k=3, weights={"ctr": 1, "cvr": 1, "value": 1}), 1):
            print(f"  {rank}. {r}")
        print("\nengine.recommend('someone-new', k=3)  # cold start")
        for rank, r in enumerate(engine.recommend("someone-new", k=3), 1):
            print(f"  {rank}. {r}")
        query = str(dataset.judgements["query"].iloc[0])
        print(f"\nengine.search({query!r}, user_id={user!r}, k=5)")
        for rank, r in enumerate(engine.search(query, user_id=user, k=5), 1):
            print(f"  {rank}. {r}")
        item = engine.catalogue.ids[0]
        print(f"\nengine.similar({item!r}, k=3)")
        for rank, r in enumerate(engine.similar(item, k=3), 1):
            print(f"  {rank}. {r}")
        live_step(engine, db, run_dir, str(dataset.items["item_id"].iloc[0]))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; run folder {run_dir}, "
          f"e.g. kgrec recommend --run {run_dir} --user {user}")
    return 0
