"""The fusion stage on a real source without impressions: Amazon 2018 Gift Cards (reviews
only), with a LightGCN graph encoder and a tiny random BERT (so what it does is not MiniLM's)."""

from __future__ import annotations

import json

import numpy as np

from fusion.ranking.config import FusionConfig
from fusion.pipeline import RunConfig, TextStageConfig, load_fusion_data, train_all
from fusion.ranking.ensemble import FusionEnsemble, load_fusion_model
from fusion.ranking.features import FeatureTables
from fusion.ranking.train import evaluate_fusion
from fusion.text.texts import product_texts
from fusion.text.encoder import random_checkpoint
from fusion.text.finetune import TextTrainConfig
from kg.build import BuildConfig, build_graph
from kg.pipeline import GnnRunConfig
from kg.run_dir import RunDir
from kg.stores import StoreConfig, open_store
from kg.train import TrainConfig
from loaders import load


def test_fused_keeps_the_gnns_ranking_and_beats_popularity_where_the_source_has_no_impressions(gift_cards_dir,
                                                                                                 tmp_path):
    dataset = load("amazon2018", str(gift_cards_dir))
    root = tmp_path
    db, run_dir = str(root / "graph"), root / "run"
    with open_store(StoreConfig(kind="embedded", path=db)) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
    texts = list(product_texts(dataset.items)) + list(dataset.reviews["text"].astype(str))
    bert = random_checkpoint(root / "bert", texts, max_length=64)
    config = RunConfig(
        gnn=GnnRunConfig(train=TrainConfig(model="lightgcn", epochs=300, lr=0.005, batch_size=2048, patience=10,
                                           eval_every=5, threads=2)),
        text=TextStageConfig(train=TextTrainConfig(checkpoint=str(bert), max_steps=10, batch_size=32,
                                                   max_length=64, anchor_max_length=32)),
        fusion=FusionConfig(epochs=20), baselines=False)
    with open_store(StoreConfig(kind="embedded", path=db), read_only=True) as store:
        results = train_all(store, run_dir, config)["fusion"]
    print(results)
    examples = json.loads((run_dir / "fusion" / "examples.json").read_text())
    assert examples["kind"] == "implicit" and examples["counts"]["rule"] == "rating>=4"
    gnn = results["gnn"]
    # the default fusion stage is five models averaged (cross-fitted, FusionEnsemble): one
    # model varies with its seed and the torch thread count ("auto": the cores free) -- with
    # this random BERT single seeds gave Recall@10 0.236-0.297, sd ~0.02 -- the ensemble less
    folder = RunDir(run_dir)
    model = load_fusion_model(folder.fusion_model)
    assert isinstance(model, FusionEnsemble) and len(model.members) == config.fusion.members == 5
    data = load_fusion_data(run_dir, config.fusion.examples)
    data.tables = FeatureTables.load(folder.fusion_tables)
    single = [evaluate_fusion(m, data, "test", candidates=config.fusion.candidates) for m in model.members]
    fused = results["fused"]
    mean = {m: float(np.mean([r[m] for r in single])) for m in ("recall@10", "ndcg@10")}
    print(fused, mean, [r["recall@10"] for r in single])
    # 458 test users: one standard error of Recall@10 is about 0.022 (NDCG@10 about 0.013).
    # With this random BERT (its text alone: Recall@10 0.02) the fused ranker re-ranks the
    # GNN's candidates with its side features: 0.3559 / NDCG@10 0.1787 against the GNN's
    # 0.3472 / 0.1806 and popularity's 0.2511 (CI, leave-last-out ties at random). Before
    # the ties were broken at random it "beat" a GNN held to 0.231 by the split's bias
    # (bench/fusion_quality.py: with MiniLM, 0.3777 against 0.3472): so what is asserted is
    # that re-ranking keeps the GNN's ranking within a standard error and beats popularity
    # by more than two -- a fusion stage that learnt nothing, or the wrong thing, fails both.
    assert fused["recall@10"] > gnn["recall@10"] - 0.022, (fused, results)
    assert fused["ndcg@10"] > gnn["ndcg@10"] - 0.013, (fused, results)
    assert fused["recall@10"] > results["popularity"]["recall@10"] + 0.045, (fused, results)
    # averaging loses nothing against its members on average
    assert fused["recall@10"] > mean["recall@10"] - 0.01, (fused, mean)
