"""A serving-ready run folder made of random parts in seconds: for tests, benchmarks, and
trying the Engine (or a change to it) without training anything.

:func:`make_tiny_run` builds a small synthetic shop into an embedded store (so
explanations read a real graph), saves the export's id maps and split, the catalogue read
back from the store, random feature tables, the exposure model of its impressions, a
freshly initialised tiny fusion model, a
tiny random BERT as the text encoder and random GNN embeddings -- each written by its own
``save``, as ``kgrec train`` would -- records the store in ``run.json`` and ends with the
manifest. Its recommendations are meaningless; its files, shapes and code paths are real.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fusion.ranking.examples import build_examples, product_prices
from fusion.ranking.exposure import fit_exposure
from fusion.ranking.features import ITEM_SIDE, USER_SIDE, FeatureTables
from fusion.ranking.model import FusionModel
from fusion.text.encoder import random_checkpoint
from kg.build import BuildConfig, build_graph, store_version
from kg.catalogue import read_catalogue
from kg.export import export_graph
from kg.run_dir import RunDir, save_npz, save_parquet
from kg.split import split_interactions
from kg.stores import StoreConfig, open_store
from loaders.dataset import Dataset
from loaders.synthetic import SyntheticConfig, generate

GNN_DIM, TEXT_DIM = 8, 16


def make_tiny_run(root: str | Path, seed: int = 0) -> tuple[RunDir, Dataset]:
    """``root/run`` (the run folder) over a 60-user / 40-product synthetic shop built into
    the embedded store ``root/graph``; returns (run, dataset)."""
    root = Path(root)
    dataset = generate(SyntheticConfig(n_users=60, n_items=40, n_interactions=3_000, n_queries=5, seed=seed))
    with open_store(StoreConfig(kind="embedded", path=str(root / "graph"))) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
        export = export_graph(store)
        items = read_catalogue(store).items
        location, version = store.location(), store_version(store)
    run = RunDir(root / "run")
    run.update_config(store=location, store_version=version.to_dict(), fusion={"candidates": 20})
    export.save(run.graph)
    split = split_interactions(export.data, "leave_last_out")
    run.save_split(split)
    save_parquet(items, run.catalogue_items)
    n_users, n_items = len(export.id_maps["user"]), len(export.id_maps["product"])
    g = torch.Generator().manual_seed(seed)
    norm = torch.nn.functional.normalize
    tables = FeatureTables(torch.randn(n_users, GNN_DIM, generator=g), torch.randn(n_items, GNN_DIM, generator=g),
                           norm(torch.randn(n_items, TEXT_DIM, generator=g), dim=-1),
                           norm(torch.randn(n_users, TEXT_DIM, generator=g), dim=-1),
                           torch.randn(n_users, len(USER_SIDE), generator=g),
                           torch.randn(n_items, len(ITEM_SIDE), generator=g))
    tables.save(run.fusion_tables)
    examples = build_examples(export.data, split, product_prices(items, export.id_maps["product"]))
    fit_exposure(examples, items, export.id_maps["product"], export.id_maps["user"]).save(run.fusion_exposure)
    torch.manual_seed(seed)
    FusionModel.for_tables(tables, hidden=16, text_proj=8, tower=8).save(run.fusion_model)
    texts = list(items["title"].fillna("")) + ["headphones", "a gift"]
    random_checkpoint(run.text_encoder, texts, hidden_size=TEXT_DIM, num_layers=1, num_heads=2,
                      intermediate_size=32, max_length=32)
    save_npz(run.embeddings, user=tables.user_gnn.numpy(), item=tables.item_gnn.numpy(),
             user_ids=export.id_maps["user"].astype(str), item_ids=export.id_maps["product"].astype(str))
    run.write_manifest()
    return run, dataset
