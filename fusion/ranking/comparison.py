"""The report every fusion run prints: what each part adds.

Rows: ``popularity`` (the number of training pairs of the product: the GNN split's
train part, the same definition and so the same figures as the popularity row of the
GNN stage's ``report.md``, :func:`kg.evaluation.popularity_scores`), ``gnn`` (user·item dot of the graph
encoder), ``text`` (cosine of the user's text profile -- or the query -- and the product
text), ``fused`` (the fusion model, ESMM, ranked by the default weights; an ensemble's
members averaged), ``fused, one model`` (an ensemble's first member alone: what the
averaging adds), ``fused, without exposure`` (the fused model ranked by ``ctr`` and ``cvr``
alone; sources with impressions, :mod:`fusion.ranking.exposure`) and ``fused, CVR on clicks``
(one model with the CVR head fit on clicked examples only -- the baseline ESMM fixes --,
trained with the first member's seed: ``fused, one model`` is its like-for-like). Columns:
Recall@10 / NDCG@10 of recommendation (full ranking, the GNN split's test pairs),
nDCG@10 of search (held-out queries), AUC of CTR (click | shown), CVR (purchase |
click, on clicked examples) and CTCVR (purchase | shown) on the test examples. A
baseline scores every task with its one signal.
"""

from __future__ import annotations

import numpy as np
import torch

from fusion.ranking.ensemble import members_of
from fusion.ranking.metrics import funnel_aucs, search_ndcg
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, WITHOUT_EXPOSURE
from fusion.ranking.train import FusionData, evaluate_fusion, recommend_metrics
from kg.evaluation import evaluate, metric_cell, per_user, popularity_scores

COLUMNS = ("recall@10", "ndcg@10", "search_ndcg@10", "ctr_auc", "cvr_auc", "ctcvr_auc")
#: the fused row's paired standard error of (fused − GNN) Recall@10 (:func:`paired_recall`)
PAIRED_SE = "recall@10_minus_gnn_paired_se"


def _signal_metrics(pair_score, data: FusionData, query_score=None) -> dict[str, float]:
    """Metrics of a baseline given ``pair_score(users [n], items [n]) -> [n]`` (users -1 =
    none) and optionally ``query_score(query rows [B]) -> [B, I]``. Recall / NDCG are NaN
    ("—" in :func:`markdown`) without test pairs, as the fused rows' (:func:`kg.evaluation.evaluate`)."""
    ex = data.examples.select(2)
    ex = ex.select_mask(ex.scored())
    out: dict[str, float] = {}
    s = pair_score(torch.from_numpy(ex.user), torch.from_numpy(ex.item)).numpy()
    out.update(funnel_aucs(s, s, s, ex.click, ex.conversion))
    split = data.split
    # ks (10, 20) as report.md: the same top-20 call breaks ties among equal scores the same way
    rec = evaluate(_all_products(pair_score, data.tables.num_items), split.num_users, split.num_items, split.test,
                   [split.train, split.valid], ks=(10, 20), batch_size=256)
    out.update({"recall@10": rec["recall@10"], "ndcg@10": rec["ndcg@10"]})
    rel = data.relevance
    if rel is not None and query_score is not None:
        qs = np.flatnonzero(rel.query_part == 2)
        out["search_ndcg@10"] = search_ndcg(lambda q: query_score(torch.from_numpy(q)), rel.query, rel.item,
                                            rel.grade, qs) if len(qs) else float("nan")
    return out


def _all_products(pair_score, n: int):
    """``pair_score`` as a :data:`kg.evaluation.ScoreFn`: users [B] -> scores [B, n]."""
    items = torch.arange(n)
    return lambda u: pair_score(u.repeat_interleave(n), items.repeat(len(u))).view(len(u), n)


def _gnn_dot(tables):
    return lambda u, i: (tables.user_gnn[u.clamp(min=0)] * tables.item_gnn[i]).sum(-1)


def baselines(data: FusionData) -> dict[str, dict[str, float]]:
    t = data.tables
    n = t.num_items
    pop = popularity_scores(data.split.train, n)(torch.zeros(1, dtype=torch.long))[0]
    results = {
        "popularity": _signal_metrics(lambda u, i: pop[i], data, lambda q: pop.expand(len(q), n)),
        "gnn": _signal_metrics(_gnn_dot(t), data),
    }
    qv = data.query_vectors
    results["text"] = _signal_metrics(
        lambda u, i: (t.user_text[u.clamp(min=0)] * t.item_text[i]).sum(-1), data,
        (lambda q: qv[q] @ t.item_text.T) if qv is not None else None)
    return results


def compare(data: FusionData, fused, naive=None, candidates: int = 100) -> dict[str, dict[str, float]]:
    results = baselines(data)
    results["fused"] = evaluate_fusion(fused, data, "test", candidates=candidates)
    if count_test_users(data.split) > 1:
        results["fused"][PAIRED_SE] = paired_recall(data, fused, candidates)["paired_se"]
    members = members_of(fused)
    if len(members) > 1:
        results["fused, one model"] = evaluate_fusion(members[0], data, "test", candidates=candidates)
    if data.exposure is not None:  # what the exposure term adds: the same model, ranked without it
        # (the AUCs and search nDCG do not read the exposure: the fused row's figures)
        scorer = Scorer(fused, data.tables, data.query_vectors, data.exposure)
        same = {k: v for k, v in results["fused"].items() if k != PAIRED_SE}
        results["fused, without exposure"] = {
            **same, **recommend_metrics(scorer, data.split, "test", WITHOUT_EXPOSURE, candidates=candidates)}
    if naive is not None:
        results["fused, CVR on clicks"] = evaluate_fusion(naive, data, "test", candidates=candidates)
    return results


def markdown(results: dict[str, dict[str, float]], columns=COLUMNS) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, m in results.items():
        cells = [metric_cell(m.get(c, float("nan"))) for c in columns]
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
    Recall@10 (:func:`recall_se`), so a difference can be read against it, and -- when
    ``results`` come from :func:`compare` -- the fused ranker's difference from the GNN with
    its paired standard error (:func:`paired_recall`), the yardstick of that difference.
    Without test pairs: a line saying there is nothing to measure (the table's Recall / NDCG
    read "—"), as the GNN stage's report says."""
    users = count_test_users(split)
    if not users:
        return ("No test pairs: Recall@10, NDCG@10 and the AUCs have nothing to measure (the GNN stage's split "
                "held out no test pair; its report.md says why and what to give instead).")
    se = {name: recall_se(m["recall@10"], users) for name, m in results.items() if "recall@10" in m}
    note = (f"{users:,} test users; one standard error of Recall@10: "
            + ", ".join(f"{name} {metric_cell(v)}" for name, v in se.items()))
    fused, gnn = results.get("fused", {}), results.get("gnn", {})
    if PAIRED_SE in fused and "recall@10" in gnn:
        note += (f"; fused − GNN {fused['recall@10'] - gnn['recall@10']:+.4f}, paired standard error "
                 f"{fused[PAIRED_SE]:.4f}")
    return note


def paired_recall(data: FusionData, fused, candidates: int = 100) -> dict[str, float]:
    r"""The fused ranker against the GNN user by user on the test pairs: both Recall@10 (the
    figures of :func:`compare`), their difference and its *paired* standard error,

    .. math::
        d_u = \text{Recall@10}_\text{fused}(u) - \text{Recall@10}_\text{GNN}(u), \qquad
        \bar d \pm \operatorname{sd}(d) / \sqrt{n}

    over the ``n`` test users. Both rankers are scored on the same users, so the paired SE
    is the yardstick of their difference; it is smaller than the binomial SE of either
    figure (:func:`recall_se`) when the two tend to hit and miss the same users.
    Returns ``gnn``, ``fused``, ``difference``, ``paired_se``, ``users``."""
    split, t = data.split, data.tables
    args = (split.num_users, split.num_items, split.test, [split.train, split.valid])
    _, gnn = per_user(_all_products(_gnn_dot(t), t.num_items), *args, ks=(10, 20), batch_size=256)
    fused.eval()
    scorer = Scorer(fused, t, data.query_vectors, data.exposure)
    _, mine = per_user(lambda users: scorer.rerank(users, RECOMMEND_WEIGHTS, candidates), *args, ks=(10,),
                       batch_size=256, device=scorer.device)
    d = mine["recall@10"] - gnn["recall@10"]
    n = len(d)
    return {"gnn": float(gnn["recall@10"].mean()), "fused": float(mine["recall@10"].mean()),
            "difference": float(d.mean()), "paired_se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "users": n}
