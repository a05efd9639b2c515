"""The evaluation harness: full ranking over all items, seen items excluded.

For every user with at least one held-out item, the model scores *all* items (or
the given ``candidates``, e.g. the items of a RecBole data set); items the user
interacted with in training (and validation, when evaluating on test) are removed; the top ``max(ks)`` are compared with the held-out set T_u:

.. math::
    \\text{Recall@K} = \\frac{|\\text{top}_K \\cap T_u|}{|T_u|}, \\qquad
    \\text{NDCG@K} = \\frac{\\sum_{i=1}^{K} \\mathbb{1}[r_i \\in T_u] / \\log_2(i+1)}
                         {\\sum_{i=1}^{\\min(K, |T_u|)} 1 / \\log_2(i+1)}

HitRate@K = 1 if any of the top K is held out; MRR@K = 1 / rank of the first hit
in the top K (0 if none). Each is the mean over evaluated users. These are the
definitions of the KGAT / KGIN / LightGCN reference code, so figures are
comparable with the published tables.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

#: user indices LongTensor [B] -> scores FloatTensor [B, num_items]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def _csr(users: np.ndarray, items: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.add.at(indptr, users + 1, 1)
    return np.cumsum(indptr), items[order]


def _rows(indptr: np.ndarray, cols: np.ndarray, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-in-batch, item) index pairs of the CSR rows ``batch``."""
    counts = indptr[batch + 1] - indptr[batch]
    rows = np.repeat(np.arange(len(batch)), counts)
    starts = np.repeat(indptr[batch], counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return torch.from_numpy(rows), torch.from_numpy(cols[starts + offsets])


@torch.no_grad()
def _top_k(score_fn: ScoreFn, num_users: int, num_items: int, t_ptr: np.ndarray,
           seen: Sequence[tuple[np.ndarray, np.ndarray]], kmax: int, batch_size: int,
           device: str | torch.device, candidates: np.ndarray | None):
    """Yields (users [B], top [B, kmax]) for the users with held-out items (CSR ``t_ptr``),
    in increasing order: each user's best ``kmax`` items, seen and non-candidate items excluded."""
    s_users = np.concatenate([np.asarray(p[0]) for p in seen]) if seen else np.zeros(0, np.int64)
    s_items = np.concatenate([np.asarray(p[1]) for p in seen]) if seen else np.zeros(0, np.int64)
    s_ptr, s_col = _csr(s_users, s_items, num_users)
    users = np.flatnonzero(np.diff(t_ptr) > 0)
    excluded = None
    if candidates is not None:
        excluded = torch.ones(num_items, dtype=torch.bool)
        excluded[torch.as_tensor(np.asarray(candidates, dtype=np.int64))] = False
        excluded = excluded.to(device) if excluded.any() else None
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = score_fn(torch.from_numpy(batch).to(device)).float()
        r, c = _rows(s_ptr, s_col, batch)
        scores[r.to(device), c.to(device)] = -torch.inf
        if excluded is not None:
            scores[:, excluded] = -torch.inf
        yield batch, torch.topk(scores, kmax, dim=1).indices.cpu()


def per_user(score_fn: ScoreFn, num_users: int, num_items: int,
             heldout: tuple[np.ndarray, np.ndarray], seen: Sequence[tuple[np.ndarray, np.ndarray]],
             ks: Sequence[int] = (10, 20), batch_size: int = 4096,
             device: str | torch.device = "cpu", candidates: np.ndarray | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every metric of :func:`evaluate` for each user with held-out items, so that two
    models can be compared user by user (a paired difference).

    Returns ``(users [n], metric name -> float64 [n])``, the users in increasing order.
    The arguments are those of :func:`evaluate`.
    """
    ks = sorted(ks)
    kmax = min(ks[-1], num_items)
    t_ptr, t_col = _csr(np.asarray(heldout[0]), np.asarray(heldout[1]), num_users)
    users = np.flatnonzero(np.diff(t_ptr) > 0)
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    ideal = torch.cumsum(discount, 0)
    values: dict[str, list[torch.Tensor]] = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "hit", "mrr")}
    for batch, top in _top_k(score_fn, num_users, num_items, t_ptr, seen, kmax, batch_size, device, candidates):
        truth = torch.zeros(len(batch), num_items, dtype=torch.bool)
        r, c = _rows(t_ptr, t_col, batch)
        truth[r, c] = True
        hits = torch.gather(truth, 1, top).double()  # [B, kmax]
        n_true = torch.from_numpy(np.diff(t_ptr)[batch]).double()
        for k in ks:
            h = hits[:, :k]
            found = h.sum(1)
            values[f"recall@{k}"].append(found / n_true)
            dcg = (h * discount[:k]).sum(1)
            values[f"ndcg@{k}"].append(dcg / ideal[(n_true.clamp(max=k) - 1).long()])
            values[f"hit@{k}"].append((found > 0).double())
            first = torch.where(h.any(1), h.argmax(1).double() + 1, torch.inf)
            values[f"mrr@{k}"].append(1.0 / first)
    return users, {name: torch.cat(chunks).numpy() if chunks else np.zeros(0) for name, chunks in values.items()}


def found_pairs(score_fn: ScoreFn, num_users: int, num_items: int,
                heldout: tuple[np.ndarray, np.ndarray], seen: Sequence[tuple[np.ndarray, np.ndarray]],
                k: int = 10, batch_size: int = 4096, device: str | torch.device = "cpu",
                candidates: np.ndarray | None = None) -> np.ndarray:
    """bool [N]: whether held-out pair ``n`` is in its user's top ``k`` (the ranking of
    :func:`evaluate`, the same arguments) -- so that the pairs can be grouped afterwards, e.g.
    by how well known their items are (:func:`by_item_degree`)."""
    u, i = (np.asarray(a, dtype=np.int64) for a in heldout)
    t_ptr, t_col = _csr(u, i, num_users)
    order = np.argsort(u, kind="stable")  # _csr's order: pair order[j] is CSR entry j
    found = np.zeros(len(u), dtype=bool)
    for batch, top in _top_k(score_fn, num_users, num_items, t_ptr, seen, min(k, num_items), batch_size, device,
                             candidates):
        in_top = torch.zeros(len(batch), num_items, dtype=torch.bool)
        in_top.scatter_(1, top, True)
        r, c = _rows(t_ptr, t_col, batch)
        entries = np.arange(t_ptr[batch[0]], t_ptr[batch[-1] + 1])  # the batch's CSR rows, in order
        found[order[entries]] = in_top[r, c].numpy()
    return found


def by_item_degree(found: np.ndarray, items: np.ndarray, degree: np.ndarray, groups: int = 5,
                   counted: np.ndarray | None = None) -> list[tuple[int, int, int, float]]:
    """The held-out pairs (``items`` [N], ``found`` [N] from :func:`found_pairs`) in
    ``groups`` groups of about equal size by their item's ``degree`` (its training pairs),
    least known first; a degree is never split between two groups. Returns per group
    (lowest degree, highest degree, pairs, share found): where in the long tail a model
    finds what users chose (a knowledge graph should help most where ratings are few).
    ``counted`` (bool [N]): the groups are still made from every pair, but the share is of
    the counted ones only (a ranker scored on a sample of the users; NaN where a group has
    none), so its table lines up with the full rankers'."""
    d = np.asarray(degree)[np.asarray(items, dtype=np.int64)]
    found = np.asarray(found, dtype=bool)
    counted = np.ones(len(d), bool) if counted is None else np.asarray(counted, bool)
    if not len(d):
        return []
    edges = np.unique(np.quantile(d, np.linspace(0, 1, groups + 1)[1:-1], method="higher"))
    group = np.searchsorted(edges, d, side="right")  # degrees below edges[0] -> 0, ...
    out = []
    for g in range(len(edges) + 1):
        m = group == g
        if m.any():
            c = m & counted
            out.append((int(d[m].min()), int(d[m].max()), int(m.sum()),
                        float(found[c].mean()) if c.any() else float("nan")))
    return out


def by_degree_table(groups: Sequence[tuple[int, int, int, float]], cells: dict[str, Sequence[str]]) -> str:
    """A markdown table of :func:`by_item_degree`'s ``groups`` (one column each, named by its
    degrees and pairs) and one row per ``cells`` entry (row name -> a cell per group)."""
    lines = ["| model | " + " | ".join(f"{lo}–{hi} ({n:,} pairs)" for lo, hi, n, _ in groups) + " |",
             "|---|" + "---:|" * len(groups)]
    return "\n".join(lines + [f"| {name} | " + " | ".join(row) + " |" for name, row in cells.items()])


def evaluate(score_fn: ScoreFn, num_users: int, num_items: int,
             heldout: tuple[np.ndarray, np.ndarray], seen: Sequence[tuple[np.ndarray, np.ndarray]],
             ks: Sequence[int] = (10, 20), batch_size: int = 4096,
             device: str | torch.device = "cpu", candidates: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of ``score_fn`` on the ``heldout`` (users, items) pairs.

    Args:
        score_fn: scores for a batch of user indices, FloatTensor [B, num_items].
        heldout: (users [N], items [N]) int arrays, the pairs to find.
        seen: pairs to exclude from the ranking (train; plus valid when testing).
        ks: cut-offs; metrics are named ``recall@10``, ``ndcg@10``, ``hit@10``, ``mrr@10``.
        candidates: the item indices that may be ranked (``None``: all); the others are
            excluded like seen items (RecBole's protocol ranks the data set's items only).
    Returns:
        dict metric name -> mean over users with held-out items (plus ``users``);
        :func:`per_user` gives the values user by user. Without held-out pairs every
        metric is NaN (``users`` 0): nothing was measured -- a 0.0 would read as a model
        that finds nothing, and report tables show NaN as "—" (:func:`metric_cell`).
    """
    users, values = per_user(score_fn, num_users, num_items, heldout, seen, ks, batch_size, device, candidates)
    n = len(users)
    out = {name: float(v.sum()) / n if n else float("nan") for name, v in values.items()}
    out["users"] = float(n)
    return out


def popularity_scores(train: tuple[np.ndarray, np.ndarray], num_items: int) -> ScoreFn:
    """The popularity baseline: every user gets items ranked by training degree."""
    degree = torch.from_numpy(np.bincount(np.asarray(train[1]), minlength=num_items).astype(np.float32))
    return lambda users: degree.expand(len(users), num_items).clone()


def metric_cell(value: float) -> str:
    """A metric as a report shows it: 4 decimals, or "—" for NaN (nothing measured, e.g.
    :func:`evaluate` without held-out pairs), so a missing figure never reads as a score."""
    return "—" if value != value else f"{value:.4f}"


def markdown_table(results: dict[str, dict[str, float]], metrics: Sequence[str] | None = None) -> str:
    """One row per model, one column per metric (:func:`metric_cell`: 4 decimals, "—" where
    the metric is NaN or missing)."""
    if not results:
        return ""
    metrics = list(metrics or [m for m in next(iter(results.values())) if "@" in m])
    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, values in results.items():
        lines.append(f"| {name} | " + " | ".join(metric_cell(values.get(m, float("nan"))) for m in metrics) + " |")
    return "\n".join(lines)
