"""Recommendation quality of the graph encoders on real data, every row measured in one run.

Rows (``--rows``): Pop, BPR-MF, LightGCN, LightGCN + contrastive (XSimGCL), the KG model,
the KG model + contrastive, LightGCN and the KG model trained with the sampled softmax
(``loss="softmax"``, :class:`kg.models.base.Ranking`) instead of BPR, and the KG ablation
in the spirit of KG4RecEval -- the KG model
(the ``--ablate`` row's settings) with its KG shuffled (:func:`kg.models.kg_model.shuffle_tails`:
every relation's tails permuted, all degrees kept), without its KG (``use_kg=False``),
and -- on a KG with item-to-item links -- with its product attributes only
(``drop_relations``: no ``also_bought`` / ``also_viewed`` / ``bought_together`` triples).
Model-free beside them (:mod:`kg.content_baseline`): the KG's content as a ranker (item-kNN
over the TF-IDF of each item's KG neighbours) with the real and the shuffled KG; and with
``--blend-content`` every trained row is also scored fused late with that ranker (weight
chosen on the validation part), once with the real and once with the shuffled KG -- whether
the KG's content adds anything to what the interactions already give a model.
Each row is trained with :func:`kg.train.train` and scored on the test part by full
ranking (:func:`kg.evaluation.evaluate`); mean ± std over ``--seeds``; per row the epochs,
the training wall time (steps only), the CPU seconds of the whole call
(``resource.getrusage``: training + validation) and the load average when it ended (the
machine may be shared: CPU seconds are the comparable figure).

Protocols (``--datasets``):

* ``ml100k-recbole`` -- ``../shared/data/ml-100k-kg`` (RecBole atomic files, Freebase KG)
  split by RecBole's own split (``../shared/data/ml-100k-kg-recbole-split``, read with
  :func:`kg.split.split_from_file`, the same path as ``kgrec train --split-file``):
  78,836 / 9,359 / 9,359 train / valid / test pairs, full ranking over the split's 1,598
  items, train items masked for valid and train + valid for test, early stopping on valid
  NDCG@10. RecBole 1.2.1's published rows on the same split are printed beside ours.
* ``ml100k`` -- the same data, leave-last-out per user by time (continuity with earlier
  reports); early stopping on valid Recall@20.
* ``synthetic`` -- the demo's synthetic shop (2,000 users, 500 products, 100k events,
  generator seed 0; :mod:`loaders.synthetic`), whose tastes are planted in categories and
  brands; leave-last-out, early stopping on valid NDCG@20, the demo's GNN settings (the
  bench's KG-model options). Its item links are computed by the generator over every
  purchase, the held-out ones included (as a shop's "also bought" feed covers its whole
  log): the attributes-only row is the KG without them.
* ``book`` -- ``../shared/data/amazon-book-kgat`` (interactions only: its KG is not
  available, so the KG model has no triples and is LightGCN with an extra table), KGAT's
  split. KGAT's split has no validation part, so a random 2 % of train is carved out as
  validation (seeded; those pairs are not trained on): it selects the best evaluation
  (every 5 epochs) and stops early; test is scored once, on the selected state, and never
  selects anything.

``--cold-items F`` (any protocol): **item cold start**, where a KG should matter most. A
seeded random fraction ``F`` of the ranked items (``--cold-seed``) is taken out of train and
valid (as if they were listed after training: not even drawn as negatives); models are
trained and stopped early on the rest, and the test part is every pair of the cold items
(train, valid and test alike), ranked among the cold items only. A trained row scores them
with its own vectors (LightGCN's and BPR-MF's were never trained: a floor; the KG model's
carry its knowledge aggregation), and ``+ fold-in`` with the vectors kgrec gives a new
product (:func:`fusion.update.fold_in_products`: its KG neighbourhood), from the graph as
it is and with every product-side relation's tails shuffled. Random ranking and the KG
content ranker (which needs no interaction of the item) are the model-free rows; Pop has
nothing to rank cold items by and is skipped. The cold items' product-to-product links
(also bought / viewed, which come from interactions) are dropped (:func:`restricted_export`);
the split is :func:`kg.split.cold_start`'s. ``--text`` adds the fold-in that also reads the
products' text (their product text through the default MiniLM encoder, as a run's text stage
without fine-tuning: :func:`product_text_vectors`), with the graph (``+ fold-in + text``, a
live update's path) and without any product-side relation (``+ fold-in, text only``).

``--by-degree N`` (any protocol but cold start) adds a table: per row, the share of the test
pairs found in the top K (K of the protocol's first metric), the pairs in ``N`` groups of
about equal size by their item's training interactions, least known first
(:func:`kg.evaluation.found_pairs`, :func:`kg.evaluation.by_item_degree`) -- *where* in the
long tail a row finds what users chose, and so where a KG helps: a graph should matter most
for the items with few interactions, which a headline metric counts little.

``--tune`` (any protocol) carves ``--tune-fraction`` of train as validation, drops test and
prints the validation curve instead: a way to choose settings without touching test.

Usage::

    python bench/gnn_quality.py --quick                       # minutes: ml100k-recbole, 1 seed
    python bench/gnn_quality.py --datasets ml100k-recbole ml100k --seeds 0 1 2
    python bench/gnn_quality.py --datasets book --rows pop bpr_mf lightgcn lightgcn-cl --threads 2  # the book table
    python bench/gnn_quality.py --datasets book --rows lightgcn-cl --tune --set epochs=60
    python bench/gnn_quality.py --datasets ml100k-recbole --set lightgcn-cl:cl_weight=0.05
    # the KG ablation of the softmax-trained KG model:
    python bench/gnn_quality.py --datasets ml100k-recbole --rows kgrec-sm kgrec-shuffled kgrec-nokg --ablate kgrec-sm
    # the KG ablation on the synthetic shop (seconds per row):
    python bench/gnn_quality.py --datasets synthetic --ablate kgrec --seeds 0 1 2 \
        --rows pop lightgcn kgrec kgrec-shuffled kgrec-nokg kgrec-attributes
    # does the KG's content say anything the ratings do not? (model-free rows, late fusion)
    python bench/gnn_quality.py --datasets ml100k-recbole --seeds 0 1 2 \
        --rows pop lightgcn-sm kg-content kg-content-shuffled --blend-content
    # where in the long tail the KG helps (5 groups of test pairs by their item's interactions)
    python bench/gnn_quality.py --datasets ml100k-recbole --seeds 0 1 2 --by-degree 5 --ablate kgrec-sm \
        --rows pop lightgcn-sm kgrec-sm kgrec-shuffled kg-content kg-content-shuffled
    # new items: 20 % of the items never seen in training, the KG ablation on them
    python bench/gnn_quality.py --datasets ml100k-recbole --seeds 0 1 2 --cold-items 0.2 --ablate kgrec \
        --rows random lightgcn kgrec kgrec-shuffled kg-content kg-content-shuffled
    # ... and the fold-in from the new items' text as well
    python bench/gnn_quality.py --datasets ml100k-recbole --seeds 0 1 2 --cold-items 0.2 --ablate kgrec \
        --rows random lightgcn kgrec --text

``--set [ROW:]KEY=VALUE`` overrides a :class:`kg.train.TrainConfig` field (JSON value,
else a string) for every row or for one row; ``model_options.KEY=VALUE`` a model option.
``--set model_options.drop_relations='["in_category"]'`` (every row) also leaves those
relations out of the KG content rows: which part of a KG carries its signal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from kg.schema import LINK_TYPES  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = {  # name -> (loader, path, split)
    "ml100k-recbole": ("recbole", DATA / "ml-100k-kg", dict(split_file=DATA / "ml-100k-kg-recbole-split")),
    "ml100k": ("recbole", DATA / "ml-100k-kg", dict(method="leave_last_out")),
    "book": ("kgat", DATA / "amazon-book-kgat", dict(method="given", valid_fraction=0.02)),
    "synthetic": ("synthetic", None, dict(method="leave_last_out")),
}
#: loader options per data set (the synthetic shop's size: the demo's)
LOAD_OPTIONS = {"synthetic": dict(n_users=2000, n_items=500, n_interactions=100_000, n_queries=150)}
EXPORTS = {"ml100k-recbole": "ml100k", "ml100k": "ml100k", "book": "book", "synthetic": "synthetic"}
REFERENCE = {  # published figures on the same split (metric -> value)
    "book": {  # KGCL paper (SIGIR 2022) Table 3; SGL and DARec: DARec paper (Sci. Rep. 2025) Table 3
        "LightGCN (published)": {"recall@20": 0.1398, "ndcg@20": 0.0736},
        "KGAT (published)": {"recall@20": 0.1390, "ndcg@20": 0.0739},
        "KGIN (published)": {"recall@20": 0.1436, "ndcg@20": 0.0748},
        "SGL (published)": {"recall@20": 0.1445, "ndcg@20": 0.0766},
        "KGCL (published)": {"recall@20": 0.1496, "ndcg@20": 0.0793},
        "DARec (published)": {"recall@20": 0.1572, "ndcg@20": 0.0920},
    },
    "ml100k-recbole": {  # RecBole 1.2.1 on this split (../shared/data/README.md)
        "RecBole Pop": {"recall@10": 0.0830, "recall@20": 0.1643, "ndcg@10": 0.0964, "ndcg@20": 0.1197},
        "RecBole BPR": {"recall@10": 0.2491, "recall@20": 0.3737, "ndcg@10": 0.2884, "ndcg@20": 0.3095},
        "RecBole LightGCN": {"recall@10": 0.2527, "recall@20": 0.3703, "ndcg@10": 0.2965, "ndcg@20": 0.3142},
        "RecBole CKE": {"recall@10": 0.2445, "recall@20": 0.3686, "ndcg@10": 0.2844, "ndcg@20": 0.3076},
        "RecBole KGCN": {"recall@10": 0.2342, "recall@20": 0.3462, "ndcg@10": 0.2705, "ndcg@20": 0.2891},
        "RecBole KGIN": {"recall@10": 0.2348, "recall@20": 0.3446, "ndcg@10": 0.2657, "ndcg@20": 0.2860},
        "RecBole KGAT": {"recall@10": 0.2249, "recall@20": 0.3365, "ndcg@10": 0.2664, "ndcg@20": 0.2842},
    },
}
METRICS = {"ml100k-recbole": ("ndcg@10", "recall@10", "ndcg@20", "recall@20"),
           "ml100k": ("recall@10", "recall@20", "ndcg@10", "ndcg@20"),
           "book": ("recall@20", "ndcg@20"),
           "synthetic": ("recall@10", "ndcg@10", "recall@20", "ndcg@20")}
#: the KG model's options everywhere: 1 KG attention layer (on ml100k 1 and 2 layers, with or
#: without dropout 0.1 / l2 1e-3, were within the split's noise; 1 layer is 2-3x faster)
KG_OPTIONS = {"kg_layers": 1, "heads": 1, "kg_weight": 1.0, "kg_dropout": 0.1}
#: TrainConfig settings per protocol ("base") and per row (on top of base), chosen on the
#: validation part only (the module docstring says how for book)
SETTINGS: dict[str, dict[str, dict]] = {
    "ml100k-recbole": {
        "base": dict(lr=5e-3, batch_size=4096, epochs=400, eval_every=5, patience=5, select_metric="ndcg@10",
                     l2=1e-4),
        "lightgcn-cl": dict(contrastive="xsimgcl", cl_weight=0.02, cl_eps=0.1, cl_temperature=0.2),
        "kgrec-cl": dict(contrastive="xsimgcl", cl_weight=0.02, cl_eps=0.1, cl_temperature=0.2, kg_view_weight=0.1),
        "lightgcn-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2),
        "kgrec-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2),
    },
    "ml100k": {
        "base": dict(lr=5e-3, batch_size=4096, epochs=400, eval_every=5, patience=5, select_metric="recall@20",
                     l2=1e-4),
        "lightgcn-cl": dict(contrastive="xsimgcl", cl_weight=0.02, cl_eps=0.1, cl_temperature=0.2),
        "kgrec-cl": dict(contrastive="xsimgcl", cl_weight=0.02, cl_eps=0.1, cl_temperature=0.2, kg_view_weight=0.1),
        "lightgcn-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2),
        "kgrec-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2),
    },
    "book": {  # batch 32768, lr 0.02, 4 negatives: LightGCN reaches the published 0.1398 in 40 epochs
        # with 64 dimensions and uniform negatives; every row takes 256 dimensions and hard
        # negatives, and each row's training is capped at the target's 30 minutes
        "base": dict(lr=0.02, batch_size=32768, num_negatives=4, epochs=150, eval_every=5, patience=3, l2=1e-4,
                     select_metric="recall@20", negatives="hard", embedding_dim=256, max_seconds=1800),
        "bpr_mf": dict(lr=5e-3, batch_size=4096, num_negatives=1, l2=1e-3, model_options={"init_std": 0.01}),
        # one seed (README): Recall@20 / NDCG@20 0.1630 / 0.0910 with these (256 dimensions, hard
        # negatives: early stopping after 21 epochs, the best validation state is epoch 10's;
        # LightGCN alone 0.1630 / 0.0918); 0.1523 / 0.0826 with 128 dimensions, 0.1397 / 0.0740
        # with 64, and 0.1382 / 0.0740 with 64 and uniform negatives; XSimGCL's published book
        # settings (cl_weight 0.2, cl_temperature 0.15; 64, uniform) gave 0.1275
        "lightgcn-cl": dict(contrastive="xsimgcl", cl_weight=0.1, cl_eps=0.2, cl_temperature=0.2),
        "kgrec-cl": dict(contrastive="xsimgcl", cl_weight=0.1, cl_eps=0.2, cl_temperature=0.2),
        # the softmax rows' loss settings of ml100k, not tuned on book; one seed (64 dimensions,
        # before the base took 256) gave Recall@20 0.1352 with these, 0.1373 with batch_size=4096,
        # lr=0.005 (README): both below the published LightGCN
        "lightgcn-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2, num_negatives=1),
        "kgrec-sm": dict(loss="softmax", softmax_negatives=1024, softmax_temperature=0.2, num_negatives=1),
    },
    "synthetic": {  # the demo's GNN settings (fusion.demo.demo_config); rows not tuned here
        "base": dict(lr=0.01, batch_size=2048, epochs=300, eval_every=5, patience=10, select_metric="ndcg@20"),
    },
}
#: the item-to-item link relations of the graph (kg.schema.LINK_TYPES, as the export names them)
ITEM_LINKS = tuple(t.lower() for t in LINK_TYPES.values())
ROWS = {  # row -> (label, model, model options)
    "random": ("Random", None, {}),
    "pop": ("Pop", None, {}),
    "bpr_mf": ("BPR-MF", "bpr_mf", {}),
    "lightgcn": ("LightGCN", "lightgcn", {}),
    "lightgcn-cl": ("LightGCN + contrastive", "lightgcn", {}),
    "kgrec": ("KG model", "kgrec", KG_OPTIONS),
    "kgrec-cl": ("KG model + contrastive", "kgrec", KG_OPTIONS),
    "lightgcn-sm": ("LightGCN + softmax", "lightgcn", {}),
    "kgrec-sm": ("KG model + softmax", "kgrec", KG_OPTIONS),
    "kgrec-shuffled": ("KG model, shuffled KG", "kgrec", {**KG_OPTIONS, "shuffle_kg": True}),
    "kgrec-nokg": ("KG model, no KG", "kgrec", {**KG_OPTIONS, "use_kg": False}),
    "kgrec-attributes": ("KG model, attributes only (no item links)", "kgrec",
                         {**KG_OPTIONS, "drop_relations": list(ITEM_LINKS)}),
    "kg-content": ("KG content (item-kNN over the KG)", None, {}),
    "kg-content-shuffled": ("KG content, shuffled KG", None, {"shuffle_kg": True}),
}
CONTENT_ROWS = ("kg-content", "kg-content-shuffled")
ABLATION = ("kgrec-shuffled", "kgrec-nokg", "kgrec-attributes")


def export_dataset(name: str, cache: Path | None):
    """GraphExport of data set ``name`` (built into a fresh embedded store, or from ``cache``)."""
    import loaders
    from kg.build import BuildConfig, build_graph
    from kg.export import GraphExport, export_graph
    from kg.stores import StoreConfig, open_store

    key = EXPORTS[name]
    if cache is not None and (cache / key / "graph.pt").exists():
        return GraphExport.load(cache / key), 0.0
    source, path, _ = DATASETS[name]
    t = time.perf_counter()
    ds = loaders.load(source, path, **LOAD_OPTIONS.get(name, {}))
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig(kind="embedded", path=str(Path(tmp) / "g"))).connect()
        build_graph(ds, store, BuildConfig(progress=False))
        export = export_graph(store)
        getattr(store, "close", lambda: None)()
    if cache is not None:
        export.save(cache / key)
    return export, time.perf_counter() - t


def make_split(name: str, export, tune: float = 0.0, seed: int = 0):
    """The protocol's split; with ``tune`` > 0 a validation part carved from train, no test."""
    from kg.split import Split, split_from_file, split_interactions

    spec = dict(DATASETS[name][2])
    if "split_file" in spec:
        split = split_from_file(export.data, export.id_maps, spec["split_file"])
    else:
        split = split_interactions(export.data, **spec)
    if tune:
        rng = np.random.default_rng(seed)
        n = len(split.train[0])
        held = np.zeros(n, dtype=bool)
        held[rng.choice(n, size=int(n * tune), replace=False)] = True
        empty = (split.test[0][:0], split.test[1][:0])
        split = Split(split.num_users, split.num_items, (split.train[0][~held], split.train[1][~held]),
                      (split.train[0][held], split.train[1][held]), empty, items=split.items)
    return split


def restricted_export(export, cold: np.ndarray, dropped=()):
    """The export without the product-to-product links of the ``cold`` items (also bought /
    viewed / bought together come from interactions: a product listed today has none) and
    without the edges of the ``dropped`` relations (``--set model_options.drop_relations``),
    so the fold-in reads the same KG as the models and the content rows."""
    import torch

    data = export.data.clone()
    is_cold = torch.zeros(data["product"].num_nodes, dtype=torch.bool)
    is_cold[torch.from_numpy(cold)] = True
    for a, rel, b in list(data.edge_types):
        if rel in dropped:
            del data[a, rel, b]
        elif a == b == "product":
            ei = data[a, rel, b].edge_index
            data[a, rel, b].edge_index = ei[:, ~(is_cold[ei[0]] | is_cold[ei[1]])]
    return export.__class__(data, export.id_maps, export.relations)


def shuffled_export(export, seed: int):
    """The export with every product-side relation's tails permuted among its edges (brands,
    categories, entities, linked products: what :func:`fusion.update.product_groups` reads),
    all degrees kept -- :func:`kg.models.kg_model.shuffle_tails` for the fold-in."""
    import torch

    data = export.data.clone()
    gen = torch.Generator().manual_seed(seed)
    for a, rel, b in data.edge_types:
        if a == "product" and b != "user":
            ei = data[a, rel, b].edge_index
            data[a, rel, b].edge_index = torch.stack([ei[0], ei[1][torch.randperm(ei.shape[1], generator=gen)]])
    return export.__class__(data, export.id_maps, export.relations)


def product_text_vectors(name: str, export):
    """[I, dt] embeddings of the data set's product texts (:func:`fusion.text.texts.product_texts`
    through the default MiniLM encoder, as a run's text stage without fine-tuning), in the
    export's product order; a zero row for a product without text (``aligned``); ``None`` for
    a data set without product texts."""
    import torch

    import loaders
    from fusion.ranking.features import aligned
    from fusion.text.encoder import TextEncoder
    from fusion.text.index import embed_items

    source, path, _ = DATASETS[name]
    items = loaders.load(source, path, **LOAD_OPTIONS.get(name, {})).items
    if items is None or not len(items):
        return None
    encoder = TextEncoder.from_pretrained()
    encoder.eval()
    with torch.no_grad():
        emb = embed_items(encoder, items)
    return aligned(np.asarray(export.id_maps["product"], dtype=object), emb.ids, emb.vectors)[0]


def fold_in(net, export, split, cold: np.ndarray, label: str, evaluate_cold, seed: int, runs: dict,
            text=None) -> None:
    """The cold items scored with the vectors kgrec gives a new product (its KG neighbourhood,
    :func:`fusion.update.fold_in_products`), from the graph and from it shuffled
    (:func:`shuffled_export`); metrics into ``runs`` under ``label + " + fold-in"`` and
    ``label + " + fold-in, shuffled KG"``. With the products' ``text`` embeddings also
    ``" + fold-in + text"`` (the graph and the text neighbourhood: a live update's path) and
    ``" + fold-in, text only"`` (no product-side relation of the graph)."""
    import torch

    from fusion.update import fold_in_products

    net.eval()
    with torch.no_grad():
        users, items = net.embeddings()
    known = np.zeros(split.num_items, dtype=bool)  # the products training saw (never a cold one)
    known[np.unique(split.train[1])] = True
    variants = [("fold-in", export, None), ("fold-in, shuffled KG", shuffled_export(export, seed), None)]
    if text is not None:
        product_side = [rel for a, rel, b in export.data.edge_types if a == "product" and b != "user"]
        variants += [("fold-in + text", export, text),
                     ("fold-in, text only", restricted_export(export, cold, product_side), text)]
    for name, graph, words in variants:
        vectors = items.clone()
        vectors[torch.from_numpy(cold)] = fold_in_products(graph, items, known, users, split.train, cold, text=words)
        m = evaluate_cold(lambda u: users[u] @ vectors.t())  # noqa: B023
        runs.setdefault(f"{label} + {name}", []).append(m)
        print(f"{label + ' + ' + name:<24} seed {seed}: ndcg@10 {m['ndcg@10']:.4f}, recall@10 {m['recall@10']:.4f}",
              flush=True)


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``[ROW:]KEY=VALUE`` -> {row or "*": {key: value}} (values JSON when they parse)."""
    out: dict[str, dict] = {}
    for item in items:
        target, _, kv = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("*", "", item)
        key, _, raw = kv.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(target or "*", {})[key.strip()] = value
    return out


def row_config(name: str, row: str, seed: int, args, sets: dict[str, dict]):
    from kg.train import TrainConfig

    label, model, options = ROWS[row]
    base_row = args.ablate if row in ABLATION else row
    values = {**SETTINGS[name]["base"], **SETTINGS[name].get(base_row, {})}
    options = {**options, **values.pop("model_options", {})}
    if row in ABLATION:  # the ablated row's settings, its KG changed
        options = {**{k: v for k, v in ROWS[base_row][2].items()}, **options, **ROWS[row][2],
                   "shuffle_seed": seed}
    for scope in ("*", base_row, row):
        for key, value in sets.get(scope, {}).items():
            if key.startswith("model_options."):
                options[key.split(".", 1)[1]] = value
            else:
                values[key] = value
    if model != "kgrec":
        options = {k: v for k, v in options.items() if k == "init_std"}
        values.pop("kg_view_weight", None)
    values.update(model=model, seed=seed, threads=args.threads, model_options=options, ks=(10, 20))
    if args.quick:
        values["epochs"] = min(values.get("epochs", 40), 40)
    return TrainConfig(**values)


def blend_content(net, split, triples, seed: int, label: str, metric: str, runs: dict) -> None:
    """The trained ``net`` fused late with the KG content ranker (:mod:`kg.content_baseline`),
    of the real KG and of the KG shuffled with ``seed``, each weight chosen on the validation
    part; their test metrics go into ``runs`` under ``label + " + KG content"`` / ``" + shuffled KG content"``."""
    import torch

    from kg.content_baseline import blended_scores, choose_blend, content_scores
    from kg.evaluation import evaluate
    from kg.models.kg_model import shuffle_tails

    net.eval()
    with torch.no_grad():
        emb = net.embeddings()
    model = lambda users: net.score(users, emb)  # noqa: E731
    for name, kg in (("KG content", triples), ("shuffled KG content", shuffle_tails(triples, seed))):
        content = content_scores(kg, split.train, split.num_users, split.num_items)
        weight, curve = choose_blend(model, content, split, metric)
        with torch.no_grad():
            m = evaluate(blended_scores(model, content, weight), split.num_users, split.num_items, split.test,
                         [split.train, split.valid], ks=(10, 20), candidates=split.items)
        runs.setdefault(f"{label} + {name}", []).append(m)
        print(f"{label + ' + ' + name:<24} seed {seed}: {metric} {m[metric]:.4f} (weight {weight} chosen on valid: "
              + ", ".join(f"{w} {v:.4f}" for w, v in curve.items()) + ")", flush=True)


def print_by_degree(tail: dict[str, list[list[tuple[int, int, int, float]]]], k: int) -> None:
    """The --by-degree table: per row, the share of the test pairs found in the top ``k``
    in each group of pairs by their item's training interactions (mean over seeds)."""
    from kg.evaluation import by_degree_table

    groups = next(iter(tail.values()))[0]  # the same pairs for every row
    print(f"\nShare of test pairs found in the top {k}, by the item's training interactions "
          f"(groups of about equal size; mean ± std over seeds):\n")
    print(by_degree_table(groups, {label: [mean_std([seed[g][3] for seed in per_seed]) for g in range(len(groups))]
                                   for label, per_seed in tail.items()}))


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["ml100k-recbole", "ml100k", "book"], choices=list(DATASETS))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--ablate", default="kgrec-cl", choices=["kgrec", "kgrec-cl", "kgrec-sm"],
                    help="the KG row whose settings the shuffled / no-KG rows take (default: kgrec-cl)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    ap.add_argument("--set", action="append", default=[], metavar="[ROW:]KEY=VALUE")
    ap.add_argument("--tune", action="store_true", help="validation curve on a part carved from train; no test")
    ap.add_argument("--tune-fraction", type=float, default=0.05)
    ap.add_argument("--cache", type=Path, default=None, help="keep the graph exports here between runs")
    ap.add_argument("--quick", action="store_true", help="ml100k-recbole only, at most 40 epochs")
    ap.add_argument("--blend-content", action="store_true",
                    help="also score every trained row fused with the KG content ranker and with its shuffled "
                         "twin (weight chosen on the validation part)")
    ap.add_argument("--cold-items", type=float, default=0.0, metavar="F",
                    help="item cold start: this fraction of the items left out of training, tested on (docstring)")
    ap.add_argument("--cold-seed", type=int, default=0, help="which items are cold (default: 0)")
    ap.add_argument("--text", action="store_true",
                    help="with --cold-items: also the fold-in from the products' text (MiniLM) with and without the KG")
    ap.add_argument("--by-degree", type=int, default=0, metavar="N",
                    help="also the share of test pairs found in the top K, in N groups of pairs by their item's "
                         "training interactions (where in the long tail each row finds them)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not 0 <= args.cold_items < 1 or (args.cold_items and (args.tune or args.blend_content)):
        ap.error("--cold-items takes a fraction in [0, 1), without --tune or --blend-content")
    if args.text and not args.cold_items:
        ap.error("--text is for the fold-in of --cold-items")
    if args.by_degree < 0 or (args.by_degree and (args.tune or args.cold_items)):
        ap.error("--by-degree takes a number of groups, on the test part (without --tune or --cold-items)")
    if args.quick:
        args.datasets = ["ml100k-recbole"]

    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from kg.content_baseline import content_scores
    from kg.evaluation import by_item_degree, evaluate, found_pairs, popularity_scores
    from kg.models.kg_model import shuffle_tails, without_relations
    from kg.split import cold_start
    from kg.train import build_model, train

    torch.set_num_threads(args.threads)
    sets = parse_sets(args.set)
    dropped = sets.get("*", {}).get("model_options.drop_relations", [])
    for name in args.datasets:
        export, build_s = export_dataset(name, args.cache)
        split = make_split(name, export, args.tune_fraction if args.tune else 0.0)
        if args.cold_items:
            cold = cold_start(split, args.cold_items, args.cold_seed)
            split, export = cold.warm, restricted_export(export, cold.items)
            fold_graph = restricted_export(export, cold.items, dropped) if dropped else export  # the same KG
            text = product_text_vectors(name, export) if args.text else None
        triples = export.knowledge_triples()
        if dropped:
            triples = without_relations(triples, dropped)
        metrics = METRICS[name]
        part = "valid (carved from train)" if args.tune else "test"
        if args.cold_items:
            part = (f"test = every pair of {len(cold.items):,} cold items ({len(cold.pairs[0]):,} pairs, cold "
                    f"seed {args.cold_seed}; their item links dropped), ranked among them; trained on the others")

            def evaluate_cold(scores, split=split, cold=cold):
                return evaluate(scores, split.num_users, split.num_items, cold.pairs, [], ks=(10, 20),
                                candidates=cold.items)
        print(f"\n## {name}: {split.num_users:,} users, {split.num_items:,} items"
              f"{f' ({len(split.items):,} ranked)' if split.items is not None else ''}, {split.sizes()}"
              f"{f', {split.left_out:,} positives in no part' if split.left_out else ''}; "
              f"{len(triples.head):,} KG triples / {triples.num_relations} relations; build+export "
              f"{build_s:.1f} s; {part}; torch threads {args.threads}", flush=True)
        runs: dict[str, list[dict[str, float]]] = {}
        costs: dict[str, list[tuple[float, float, float, float]]] = {}
        tail: dict[str, list[list[tuple[int, int, int, float]]]] = {}  # --by-degree: label -> per seed
        degree = np.bincount(split.train[1], minlength=split.num_items)
        top_k = int(metrics[0].split("@")[1])

        def found_by_degree(scores, split=split, degree=degree, top_k=top_k):
            found = found_pairs(scores, split.num_users, split.num_items, split.test, [split.train, split.valid],
                                k=top_k, candidates=split.items)
            return by_item_degree(found, split.test[1], degree, args.by_degree)
        for row in args.rows:
            label, model, _ = ROWS[row]
            if row in ("kgrec-shuffled", *CONTENT_ROWS) and not len(triples.head):
                continue  # no KG to shuffle or to rank by
            if row == "kgrec-attributes" and not set(ITEM_LINKS) & set(triples.relation_names):
                continue  # no item links to leave out
            if row == "pop" and args.cold_items:
                print("Pop: cold items have no interactions to rank them by (skipped)")
                continue
            for seed in args.seeds if model or row in ("kg-content-shuffled", "random") else [0]:
                c0 = resource.getrusage(resource.RUSAGE_SELF)
                t = time.perf_counter()
                if model is None:  # the model-free rows: popularity, the KG content ranker
                    heldout, seen = (split.valid, [split.train]) if args.tune else (split.test, [split.train, split.valid])
                    if row in CONTENT_ROWS:
                        kg = shuffle_tails(triples, seed) if ROWS[row][2].get("shuffle_kg") else triples
                        scores = content_scores(kg, split.train, split.num_users, split.num_items)
                    elif row == "random":
                        gen = torch.Generator().manual_seed(seed)
                        scores = lambda users: torch.rand(len(users), split.num_items, generator=gen)  # noqa: E731
                    else:
                        scores = popularity_scores(split.train, split.num_items)
                    m = evaluate_cold(scores) if args.cold_items else evaluate(
                        scores, split.num_users, split.num_items, heldout, seen, ks=(10, 20), candidates=split.items)
                    if args.by_degree:
                        tail.setdefault(label, []).append(found_by_degree(scores))
                    epochs, train_s, why = 0, 0.0, ""
                else:
                    config = row_config(name, row, seed, args, sets)
                    net = build_model(config, export, split)
                    # cold items stay unseen, not even drawn as negatives
                    result = train(net, split, config, progress=args.verbose,
                                   negatives_from=split.items if args.cold_items else None)
                    if args.cold_items:
                        net.eval()
                        with torch.no_grad():
                            emb = net.embeddings()
                            m = evaluate_cold(lambda users: net.score(users, emb))  # noqa: B023
                    else:
                        m = result.best_metrics if args.tune else result.test_metrics
                    if args.by_degree:
                        net.eval()
                        with torch.no_grad():
                            emb = net.embeddings()
                            tail.setdefault(label, []).append(
                                found_by_degree(lambda users: net.score(users, emb)))  # noqa: B023
                    epochs, train_s = result.history[-1]["epoch"], result.train_seconds
                    why = f", stopped by {result.stop_reason}"
                    if not args.tune and result.best_metrics:  # what chose the state: compare settings on it
                        why += f", valid {metrics[0]} {result.best_metrics.get(metrics[0], float('nan')):.4f}"
                    if args.tune:
                        print(f"  {label} seed {seed} valid curve: " + ", ".join(
                            f"{h['epoch']}: {h['valid_' + metrics[0]]:.4f}" for h in result.history
                            if "valid_" + metrics[0] in h), flush=True)
                c1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
                load = os.getloadavg()[0]
                runs.setdefault(label, []).append(m)
                costs.setdefault(label, []).append((epochs, train_s, cpu, load))
                print(f"{label:<24} seed {seed}: " + ", ".join(f"{k} {m.get(k, float('nan')):.4f}" for k in metrics)
                      + f"  ({epochs} epochs{why}, train {train_s:.0f} s wall, {cpu:.0f} s CPU, "
                        f"{time.perf_counter() - t:.0f} s call, load {load:.1f})", flush=True)
                if model is not None and args.blend_content and not args.tune and len(triples.head):
                    blend_content(net, split, triples, seed, label, metrics[0], runs)
                if model is not None and args.cold_items:
                    fold_in(net, fold_graph, split, cold.items, label, evaluate_cold, seed, runs, text)
        print(f"\n### {name} ({part}; mean ± std over seeds {args.seeds}; CPU s: getrusage of the "
              f"whole training call, {args.threads} thread(s))\n")
        header = ["model", *metrics, "epochs", "train s (wall)", "CPU s", "load"]
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for label, ms in runs.items():
            c = np.array(costs.get(label, [(np.nan,) * 4]))  # a late fusion has no training of its own
            lines.append(f"| {label} | " + " | ".join(mean_std([r[k] for r in ms]) for k in metrics)
                         + " | " + " | ".join("" if np.isnan(v) else f"{v:.{d}f}"
                                              for v, d in zip(c.mean(0), (0, 0, 0, 1))) + " |")
        if not args.tune and not args.cold_items:  # published figures are on the usual test
            for ref, values in REFERENCE.get(name, {}).items():
                lines.append(f"| {ref} | " + " | ".join(f"{values[k]:.4f}" if k in values else "—" for k in metrics)
                             + " | | | | |")
        print("\n".join(lines))
        if tail:
            print_by_degree(tail, top_k)
        key = metrics[0]
        pairs = [(ROWS[args.ablate][0], ROWS[row][0]) for row in ABLATION]
        pairs.append((ROWS["kg-content"][0], ROWS["kg-content-shuffled"][0]))
        for label in [lb for lb in runs if lb.endswith(" + KG content")]:
            base = label.removesuffix(" + KG content")
            pairs += [(label, base + " + shuffled KG content"), (label, base)]
        for label in [lb for lb in runs if lb.endswith(" + fold-in")]:
            pairs += [(label, label + ", shuffled KG"), (label, "Random"), (label + " + text", label),
                      (label + ", text only", "Random")]
        if args.cold_items:
            pairs += [(ROWS["kg-content"][0], "Random")]
        for with_kg, other in pairs:
            if with_kg in runs and other in runs:
                a = np.array([r[key] for r in runs[with_kg]])
                b = np.array([r[key] for r in runs[other]])
                # per seed only where both rows ran once per seed (a content row of the real KG
                # runs once: it has no seed)
                paired = ("per seed " + ", ".join(f"{100 * (x / y - 1):+.1f}%" for x, y in zip(a, b))
                          if len(a) == len(b) else f"{len(a)} run(s) vs {len(b)}")
                print(f"\n{with_kg} vs {other}: {key} {a.mean():.4f} vs {b.mean():.4f} "
                      f"({100 * (a.mean() / b.mean() - 1):+.1f}%; {paired})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
