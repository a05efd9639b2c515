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
cosine), and the Engine's fused ranking (``weights``), all with the user's known
products excluded (the Engine's ``seen``: train, valid and test pairs).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

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
    """Top-``k`` product indices [B, k] per model for the Engine's user rows ``users``."""
    t = engine.tables
    u = torch.from_numpy(users)
    return {
        "popularity": _top_k(engine.popularity.expand(len(users), -1), engine, users, k),
        "gnn": _top_k(t.user_gnn[u] @ t.item_gnn.T, engine, users, k),
        "text": _top_k(t.user_text[u] @ t.item_text.T, engine, users, k),
        "fused": fused_list(engine, users, k, weights),
    }


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


def markdown(table: dict[str, dict[str, float]], k: int = 10) -> str:
    rows = [f"| {name} | {m['clicks']:.3f} | {m['purchases']:.4f} | {m['value']:.2f} |" for name, m in table.items()]
    return "\n".join([f"| model | expected clicks in top-{k} | expected purchases | expected order value |",
                      "|---|---:|---:|---:|", *rows])
