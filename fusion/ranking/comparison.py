"""The report every fusion run prints: what each part adds.

Rows: ``popularity`` (the number of training pairs of the product: the GNN split's
train part, the same definition and so the same figures as the popularity row of the
GNN stage's ``report.md``, :func:`kg.evaluation.popularity_scores`), ``gnn`` (user·item dot of the graph
encoder), ``text`` (cosine of the user's text profile -- or the query -- and the product
text), ``fused`` (the fusion model, ESMM) and ``fused, CVR on clicks`` (the same model
with the CVR head fit on clicked examples only -- the baseline ESMM fixes). Columns:
Recall@10 / NDCG@10 of recommendation (full ranking, the GNN split's test pairs),
nDCG@10 of search (held-out queries), AUC of CTR (click | shown), CVR (purchase |
click, on clicked examples) and CTCVR (purchase | shown) on the test examples. A
baseline scores every task with its one signal.
"""

from __future__ import annotations

import numpy as np
import torch

from fusion.ranking.train import FusionData, evaluate_fusion
from fusion.ranking.metrics import funnel_aucs, search_ndcg
from kg.evaluation import evaluate, popularity_scores

COLUMNS = ("recall@10", "ndcg@10", "search_ndcg@10", "ctr_auc", "cvr_auc", "ctcvr_auc")


def _signal_metrics(pair_score, data: FusionData, query_score=None) -> dict[str, float]:
    """Metrics of a baseline given ``pair_score(users [n], items [n]) -> [n]`` (users -1 =
    none) and optionally ``query_score(query rows [B]) -> [B, I]``."""
    ex = data.examples.select(2)
    ex = ex.select_mask(ex.scored())
    out: dict[str, float] = {}
    s = pair_score(torch.from_numpy(ex.user), torch.from_numpy(ex.item)).numpy()
    out.update(funnel_aucs(s, s, s, ex.click, ex.conversion))
    split, n = data.split, data.tables.num_items
    items = torch.arange(n)
    # ks (10, 20) as report.md: the same top-20 call breaks ties among equal scores the same way
    rec = evaluate(lambda u: pair_score(u.repeat_interleave(n), items.repeat(len(u))).view(len(u), n),
                   split.num_users, n, split.test, [split.train, split.valid], ks=(10, 20), batch_size=256)
    out.update({"recall@10": rec["recall@10"], "ndcg@10": rec["ndcg@10"]})
    rel = data.relevance
    if rel is not None and query_score is not None:
        qs = np.flatnonzero(rel.query_part == 2)
        out["search_ndcg@10"] = search_ndcg(lambda q: query_score(torch.from_numpy(q)), rel.query, rel.item,
                                            rel.grade, qs) if len(qs) else float("nan")
    return out


def baselines(data: FusionData) -> dict[str, dict[str, float]]:
    t = data.tables
    n = t.num_items
    pop = popularity_scores(data.split.train, n)(torch.zeros(1, dtype=torch.long))[0]
    results = {
        "popularity": _signal_metrics(lambda u, i: pop[i], data, lambda q: pop.expand(len(q), n)),
        "gnn": _signal_metrics(lambda u, i: (t.user_gnn[u.clamp(min=0)] * t.item_gnn[i]).sum(-1), data),
    }
    qv = data.query_vectors
    results["text"] = _signal_metrics(
        lambda u, i: (t.user_text[u.clamp(min=0)] * t.item_text[i]).sum(-1), data,
        (lambda q: qv[q] @ t.item_text.T) if qv is not None else None)
    return results


def compare(data: FusionData, fused, naive=None, candidates: int = 100) -> dict[str, dict[str, float]]:
    results = baselines(data)
    results["fused"] = evaluate_fusion(fused, data, "test", candidates=candidates)
    if naive is not None:
        results["fused, CVR on clicks"] = evaluate_fusion(naive, data, "test", candidates=candidates)
    return results


def markdown(results: dict[str, dict[str, float]], columns=COLUMNS) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, m in results.items():
        cells = []
        for c in columns:
            v = m.get(c, float("nan"))
            cells.append("—" if v != v else f"{v:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def count_test_users(split) -> int:
    """The users with a held-out test pair in ``split``."""
    return len(np.unique(np.asarray(split.test[0])))


def recall_se(recall: float, users: int) -> float:
    """One standard error of a Recall over ``users`` test users (binomial: under
    leave-last-out every test user has one held-out purchase)."""
    return float(np.sqrt(recall * (1 - recall) / max(users, 1)))


def recall_note(results: dict[str, dict[str, float]], split) -> str:
    """One line under the table: the test users and one standard error of each model's
    Recall@10 (:func:`recall_se`), so a difference can be read against it."""
    users = count_test_users(split)
    se = {name: recall_se(m["recall@10"], users) for name, m in results.items() if "recall@10" in m}
    return (f"{users:,} test users; one standard error of Recall@10: "
            + ", ".join(f"{name} {v:.4f}" for name, v in se.items()))
