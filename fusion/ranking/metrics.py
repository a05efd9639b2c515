"""Metrics of the fusion stage: AUC for the click/conversion heads, graded nDCG for search.

* :func:`auc` -- the probability that a random positive scores above a random negative
  (Mann-Whitney U with average ranks for ties); NaN when one class is missing.
* :func:`search_ndcg` -- for each query, the full ranking over all products against its
  graded judgements: :math:`\\mathrm{DCG@K} = \\sum_{r=1}^{K} (2^{g_r} - 1) / \\log_2(r + 1)`
  divided by the DCG of the ideal order of the judged grades (unjudged products have
  grade 0); the mean over queries with at least one positive grade.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch


def auc(scores, labels) -> float:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def funnel_aucs(ctr, cvr, ctcvr, click, conversion) -> dict[str, float]:
    """AUC of CTR (click), CVR (conversion among clicked) and CTCVR (conversion), each
    from its own score array [N] against the labels [N]."""
    ctr, cvr, ctcvr = (np.asarray(a) for a in (ctr, cvr, ctcvr))
    clicked = np.asarray(click) > 0
    return {"ctr_auc": auc(ctr, click), "cvr_auc": auc(cvr[clicked], np.asarray(conversion)[clicked]),
            "ctcvr_auc": auc(ctcvr, conversion)}


@torch.no_grad()
def search_ndcg(score_fn: Callable[[np.ndarray], torch.Tensor], query: np.ndarray, item: np.ndarray,
                grade: np.ndarray, queries: Sequence[int], k: int = 10, batch: int = 64) -> float:
    """Mean nDCG@k of ``score_fn(query indices [B]) -> scores [B, num_items]`` over
    ``queries`` (indices), judged by (query, item, grade) rows."""
    queries = [q for q in queries if (grade[query == q] > 0).any()]
    if not queries:
        return float("nan")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for start in range(0, len(queries), batch):
        qs = np.asarray(queries[start: start + batch])
        scores = score_fn(qs)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy()
        for row, q in enumerate(qs):
            m = query == q
            gains = dict(zip(item[m].tolist(), (2.0 ** grade[m] - 1).tolist()))
            dcg = sum(gains.get(int(i), 0.0) * d for i, d in zip(top[row], discount))
            ideal = np.sort(np.fromiter(gains.values(), float))[::-1][:k]
            total += dcg / float((ideal * discount[: len(ideal)]).sum())
    return total / len(queries)
