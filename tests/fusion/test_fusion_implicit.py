"""The fusion stage on a real source without impressions: Amazon 2018 Gift Cards (reviews
only), with a LightGCN graph encoder and a tiny random BERT (so the gain is not MiniLM's)."""

from __future__ import annotations

import json

import numpy as np

from fusion.ranking.config import FusionConfig
from fusion.pipeline import RunConfig, TextStageConfig, fusion_seeds, train_all
from fusion.text.texts import product_texts
from fusion.text.encoder import random_checkpoint
from fusion.text.finetune import TextTrainConfig
from kg.build import BuildConfig, build_graph
from kg.pipeline import GnnRunConfig
from kg.stores import StoreConfig, open_store
from kg.train import TrainConfig
from loaders import load


def test_fused_beats_the_gnn_on_recall_where_the_source_has_no_impressions(gift_cards_dir, tmp_path):
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
    # one fusion run varies with its seed and the torch thread count ("auto": the cores
    # free) -- with this random BERT, Recall@10 0.236-0.297 measured, sd ~0.02 -- so the
    # claim is on the mean of three fusion seeds (seed 0 is the run's own)
    per_seed, ensemble = fusion_seeds(run_dir, config, 3, results["fused"])
    fused = {m: float(np.mean([r[m] for r in per_seed])) for m in ("recall@10", "ndcg@10")}
    print(fused, [r["recall@10"] for r in per_seed], ensemble)
    # 458 test users: one standard error of Recall@10 is about 0.02. Measured with this
    # random BERT (its text alone: Recall@10 0.015, so the gain is the re-ranking of the
    # GNN's candidates with the side features): means 0.246 / 0.252 / 0.270 in three
    # processes (single seeds 0.236-0.297) vs the GNN's 0.231 -- a small gain, under one
    # standard error; with MiniLM the text carries it to ~0.37 (bench/fusion_quality.py)
    assert fused["recall@10"] > gnn["recall@10"], (fused, results)
    assert fused["ndcg@10"] > gnn["ndcg@10"], (fused, results)
    assert fused["recall@10"] > results["popularity"]["recall@10"], (fused, results)
    # the three seeds' models averaged (FusionEnsemble): measured 0.299 here against the
    # seeds' 0.271 / 0.260 / 0.266 -- averaging loses nothing against one seed on average
    assert ensemble["recall@10"] > gnn["recall@10"], (ensemble, results)
    assert ensemble["recall@10"] > fused["recall@10"] - 0.01, (ensemble, fused)
