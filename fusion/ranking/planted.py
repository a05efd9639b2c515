"""Counterfactual quality on synthetic data: what each model's top-k is truly worth.

Offline metrics on logged purchases (Recall@K) reward whatever the shop happened to
show: a product the logging policy never displayed cannot be a held-out purchase, even
if the user would have bought it. The synthetic generator knows the truth -- each
user's planted P(click | shown) and P(purchase | click) for every product -- so a
top-k list can be scored by what it would earn if the shop showed it:

* ``clicks``    -- sum over the list of p_click (expected clicks);
* ``purchases`` -- sum of p_click x p_buy (expected purchases);
* ``value``     -- sum of p_click x p_buy x price x E[quantity] (expected order value);

each averaged over users. The lists: popularity, GNN dot product, text (user profile
cosine), and the Engine's fused ranking (``weights``; with an exposure model, also without
its exposure term), all with the user's known products excluded (the Engine's ``seen``:
train, valid and test pairs).

The other way round, :func:`planted_recall` puts the planted truth's own ranking
(p_click x p_buy) through the logged metric: the Recall@K a perfect click and purchase
model would reach on the logged test purchases -- over every product, and re-ranking the
GNN's candidates as the Engine does. It says how much of a gap on the logged metric is
the models' error and how much the metric's own (purchases need an impression first).

:func:`fit_to_planted` asks the question between the two: the fusion model's own inputs,
fit to the planted probabilities themselves (noise-free labels for every user) instead of
logged clicks and purchases -- how far better labels alone could take the fused ranker,
on the logged metric and on the planted one.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch.nn import functional as F

from fusion.ranking.model import FusionModel
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, WITHOUT_EXPOSURE
from fusion.ranking.train import scalar_stats
from kg.evaluation import evaluate

#: E[quantity] of a synthetic purchase (the generator draws 1, 2, 3 with these odds)
MEAN_QUANTITY = 0.75 * 1 + 0.18 * 2 + 0.07 * 3


def _top_k(scores: torch.Tensor, engine, users: np.ndarray, k: int) -> np.ndarray:
    """Product indices [B, k] of the best ``scores`` [B, I], the users' seen products excluded."""
    return torch.topk(engine.mask_seen(scores.clone(), users), k, dim=1).indices.numpy()


def fused_list(engine, users: np.ndarray, k: int = 10, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Product indices [B, k] of the Engine's recommendations (``weights``) for its user rows ``users``."""
    recs = engine.recommend_batch(list(engine.user_index[users]), k=k, weights=weights)
    return np.array([engine.catalogue.index.get_indexer([r.item_id for r in row]) for row in recs])


def model_lists(engine, users: np.ndarray, k: int = 10, weights: Mapping[str, float] | None = None
                ) -> dict[str, np.ndarray]:
    """Top-``k`` product indices [B, k] per model for the Engine's user rows ``users``;
    with an exposure model also ``fused, without exposure`` (weights ``ctr``, ``cvr``)."""
    t = engine.tables
    u = torch.from_numpy(users)
    lists = {
        "popularity": _top_k(engine.popularity.expand(len(users), -1), engine, users, k),
        "gnn": _top_k(t.user_gnn[u] @ t.item_gnn.T, engine, users, k),
        "text": _top_k(t.user_text[u] @ t.item_text.T, engine, users, k),
        "fused": fused_list(engine, users, k, weights),
    }
    if engine.scorer.exposure is not None:
        lists["fused, without exposure"] = fused_list(engine, users, k, WITHOUT_EXPOSURE)
    return lists


def planted_value(truth, engine, lists: dict[str, np.ndarray], users: np.ndarray) -> dict[str, dict[str, float]]:
    """Expected clicks / purchases / order value per user of each list (module docstring)."""
    tu = truth.user_index(engine.user_index[users])
    price = engine.catalogue.prices
    out = {}
    for name, items in lists.items():
        ti = truth.item_index(engine.catalogue.ids[items.reshape(-1)]).reshape(items.shape)
        uu = np.broadcast_to(tu[:, None], ti.shape)
        pc = truth.p_click(uu, ti)
        pb = truth.p_buy(uu, ti)
        value = pc * pb * np.nan_to_num(price[items]) * MEAN_QUANTITY
        out[name] = {"clicks": float(pc.sum(1).mean()), "purchases": float((pc * pb).sum(1).mean()),
                     "value": float(value.sum(1).mean())}
    return out


def planted_recall(truth, engine, split, user_ids, item_ids, k: int = 10) -> dict[str, float]:
    """Logged Recall@``k`` on ``split``'s test part (train and valid pairs masked) of the
    ranking by planted p_click x p_buy: over every product, and over each user's GNN
    top-``engine.candidates`` (the Engine's re-ranking) -- the ceiling of a perfect
    click / purchase model on the logged metric. ``split`` indexes ``user_ids`` and
    ``item_ids`` (the trained run's id maps); the Engine's rows are found by id (a later
    version may add and reorder rows)."""
    user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)
    user_row = torch.from_numpy(engine.user_index.get_indexer(user_ids))
    item_gnn = engine.tables.item_gnn[torch.from_numpy(engine.catalogue.index.get_indexer(item_ids))]
    ti = truth.item_index(item_ids)

    def planted(users: torch.Tensor) -> torch.Tensor:                            # [B, I]
        tu = truth.user_index(user_ids[users.numpy()])[:, None]
        return torch.from_numpy((truth.p_click(tu, ti[None, :]) * truth.p_buy(tu, ti[None, :])).astype(np.float32))

    def in_candidates(users: torch.Tensor) -> torch.Tensor:
        gnn = engine.tables.user_gnn[user_row[users]] @ item_gnn.T
        top = torch.topk(gnn, min(engine.candidates, len(item_ids)), dim=1).indices
        return torch.full_like(gnn, -torch.inf).scatter_(1, top, planted(users).gather(1, top))

    return {name: evaluate(fn, split.num_users, split.num_items, split.test, [split.train, split.valid],
                           ks=(k,), batch_size=256)[f"recall@{k}"]
            for name, fn in (("every product", planted), (f"the GNN's top-{engine.candidates}", in_candidates))}


def fit_to_planted(data, truth, user_ids, item_ids, config, epochs: int = 8, extra: int = 20,
                   k: int = 10) -> dict[str, float]:
    """Train a fusion model (``config``: a :class:`~fusion.ranking.config.FusionConfig`) on
    the planted truth instead of the logs, and score it. ``data``: the run's
    :class:`~fusion.ranking.train.FusionData` (its rows index ``user_ids`` / ``item_ids``).
    Rows: every user x (their GNN top-``config.candidates`` + ``extra`` random products);
    loss: BCE(sigma(z_ctr), p_click) + BCE(sigma(z_cvr), p_buy), soft targets, ``epochs``
    passes. Returns the logged ``recall@k`` / ``ndcg@k`` on the test part (train and valid
    pairs masked, as :func:`~fusion.ranking.train.evaluate_fusion` ranks) and ``purchases``: the expected
    purchases (planted p_click x p_buy) of its top-``k`` per user, every known pair
    excluded -- what a click / purchase model of these inputs reaches when its labels
    are perfect."""
    t, split = data.tables, data.split
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    tu, ti = truth.user_index(np.asarray(user_ids)), truth.item_index(np.asarray(item_ids))
    p_click = torch.from_numpy(truth.p_click(tu[:, None], ti[None, :]).astype(np.float32))    # [U, I]
    p_buy = torch.from_numpy(truth.p_buy(tu[:, None], ti[None, :]).astype(np.float32))        # [U, I]
    top = torch.topk(t.user_gnn @ t.item_gnn.T, min(config.candidates or t.num_items, t.num_items), dim=1).indices
    rows = torch.cat([top, torch.from_numpy(rng.integers(0, t.num_items, (t.num_users, extra)))], 1)
    users = torch.arange(t.num_users).repeat_interleave(rows.shape[1])
    items = rows.reshape(-1)
    model = FusionModel.for_tables(t, **config.model_kwargs())
    model.set_scalar_stats(*scalar_stats(t, data.examples.select(0), None, np.zeros(0, int), None, config, rng))
    scorer = Scorer(model, t, data.query_vectors)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    for _ in range(epochs):
        for b in torch.randperm(len(users)).split(config.batch_size * 2):
            u, i = users[b], items[b]
            logits = scorer.logits(u, i)
            loss = (F.binary_cross_entropy_with_logits(logits["ctr"], p_click[u, i])
                    + F.binary_cross_entropy_with_logits(logits["cvr"], p_buy[u, i]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    scores = scorer.rerank(torch.arange(t.num_users), RECOMMEND_WEIGHTS, config.candidates)          # [U, I]
    out = evaluate(lambda rows: scores[rows], split.num_users, split.num_items, split.test, [split.train, split.valid],
                   ks=(k,), batch_size=256, device=scorer.device)
    for part in (split.train, split.valid, split.test):  # every known pair out of the top-k below
        scores[torch.from_numpy(part[0]), torch.from_numpy(part[1])] = -torch.inf
    best = torch.topk(scores, k, dim=1).indices
    out["purchases"] = float((p_click * p_buy).gather(1, best).sum(1).mean())
    return {key: out[key] for key in (f"recall@{k}", f"ndcg@{k}", "purchases")}


def markdown(table: dict[str, dict[str, float]], k: int = 10) -> str:
    rows = [f"| {name} | {m['clicks']:.3f} | {m['purchases']:.4f} | {m['value']:.2f} |" for name, m in table.items()]
    return "\n".join([f"| model | expected clicks in top-{k} | expected purchases | expected order value |",
                      "|---|---:|---:|---:|", *rows])
