"""Customer lifetime value: each user's spend over the horizon after a cut-off.

A :class:`~fusion.value.ziln.ZILN` network reads the user's RFM features (recency,
frequency, monetary value, tenure; :func:`fusion.value.features.user_features`), their
graph vector (the mean GNN vector of the products they engaged with before the cut-off)
and their text vector (the mean text embedding of what they bought), both reduced by
PCA. It predicts ``ltv`` = E[spend in (T, T + H]] and ``p_active`` = P(any purchase in
(T, T + H]) -- 1 - p_active is the churn risk. Users with no event before the cut-off get
the cold-start value: the mean spend over one horizon of users who were new in the
training windows (and their share of buyers as p_active).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusion.value.features import Table, user_features, user_vectors
from fusion.value.temporal import Activity

#: columns of the LTV table that are not model inputs
ID_COLUMNS = ("user_id",)


def ltv_table(activity: Activity, cutoff: int, horizon: int, item_vectors: dict[str, np.ndarray],
              target: bool = True) -> Table:
    """The users with any event at or before ``cutoff``: features, embedding blocks
    (``item_vectors``: name -> [I, d], ``"gnn"`` averaged over engaged products,
    ``"text"`` over bought ones), the target spend in ``(cutoff, cutoff + horizon]`` and
    the last-period-spend baseline (``extra``)."""
    past = activity.before(cutoff)
    frame = user_features(past, cutoff, horizon)
    rows = frame.index.to_numpy(dtype=np.int64)
    blocks = {name: user_vectors(past, vec, purchases_only=(name == "text"))[rows]
              for name, vec in item_vectors.items()}
    recent = past.purchases[past.purchases["t"] > cutoff - horizon]
    last = np.bincount(recent["u"].to_numpy(dtype=np.int64), weights=recent["spend"].to_numpy(),
                       minlength=activity.num_users)[rows] if len(recent) else np.zeros(len(rows))
    y = None
    if target:
        fut = activity.window(cutoff, cutoff + horizon)
        y = np.bincount(fut["u"].to_numpy(dtype=np.int64), weights=fut["spend"].to_numpy(),
                        minlength=activity.num_users)[rows] if len(fut) else np.zeros(len(rows))
    extra = pd.DataFrame({"user_id": activity.users[rows].astype(str), "last_period_spend": last,
                          "customer": frame["has_purchase"].to_numpy() > 0})
    return Table(cutoff, rows, frame, blocks, y, extra)


def cold_start(activity: Activity, cutoffs: list[int], horizon: int) -> dict[str, float]:
    """Mean spend and share of buyers over one horizon of the users whose first event falls
    in ``(T, T + H]`` for the cut-offs ``T`` (the value of a user we know nothing about)."""
    p, e = activity.purchases, activity.engagements
    first = pd.concat([p[["u", "t"]], e[["u", "t"]]]).groupby("u")["t"].min()
    spend, active = [], []
    for cut in cutoffs:
        new = first[(first > cut) & (first <= cut + horizon)].index.to_numpy()
        if not len(new):
            continue
        fut = activity.window(cut, cut + horizon)
        s = fut[fut["u"].isin(new)].groupby("u")["spend"].sum().reindex(new).fillna(0).to_numpy()
        spend.append(s)
        active.append(s > 0)
    if not spend:
        return {"ltv": 0.0, "p_active": 0.0, "users": 0}
    s, a = np.concatenate(spend), np.concatenate(active)
    return {"ltv": float(s.mean()), "p_active": float(a.mean()), "users": int(len(s))}
