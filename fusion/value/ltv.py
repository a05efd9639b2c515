"""Customer lifetime value: each user's spend over the horizon after a cut-off.

A :class:`~fusion.value.ziln.ZILN` network reads the user's RFM features (recency,
frequency, monetary value, tenure; :func:`fusion.value.features.user_features`), their
graph vector (the mean GNN vector of the products they engaged with before the cut-off)
and their text vector (the mean text embedding of what they bought), both reduced by
PCA. It predicts ``ltv`` = E[spend in (T, T + H]] and ``p_active`` = P(any purchase in
(T, T + H]) -- 1 - p_active is the churn risk. Users with no event before the cut-off get
the cold-start value (:func:`cold_start`): the mean spend over one horizon *after their
first event* of the users who were new in the training windows (and their share of
buyers in that time as p_active).
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
    """The value of a user we know nothing about: over the users who arrived in ``(T, T + H]``
    for the cut-offs ``T``, the mean spend (``ltv``) and the share of buyers (``p_active``)
    in the horizon *after their arrival*, and how many such users there were (``users``).

    A user arrives with their first event, at time ``f`` (whatever they did in that second
    is the arrival); ``y`` is their spend in ``(f, f + H]``, and

        ltv = mean_u y_u,    p_active = mean_u 1[y_u > 0]

    over the arrivals of every cut-off (each user once: the windows ``(T, T + H]`` of
    cut-offs one horizon apart do not overlap; ``y`` reads the data up to ``T + 2H``, which
    the training and validation cut-offs have).

    Why after the arrival: the users we see arrive are the ones who did something, and in
    a shop that records only purchases (or reviews) that something is a purchase. Counting
    it would make every new user a buyer -- p_active = 1, ltv = a first order: a visitor we
    know nothing about valued above every known customer -- while the visitors who came and
    bought nothing are not in the data at all, so the share of visitors who buy at their
    first visit cannot be estimated there. What a user does after they first show up can,
    and it does not depend on what the arrival was. Where views or impressions are
    recorded the arrival is mostly one of those, and a purchase after it counts.
    """
    p, e = activity.purchases, activity.engagements
    first = pd.concat([p[["u", "t"]], e[["u", "t"]]]).groupby("u")["t"].min()
    u, t = p["u"].to_numpy(dtype=np.int64), p["t"].to_numpy(dtype=np.int64)
    arrived = first.reindex(u).to_numpy(dtype=np.int64) if len(p) else np.zeros(0, np.int64)
    later = (t > arrived) & (t <= arrived + horizon)
    after = pd.Series(p["spend"].to_numpy(dtype=np.float64)[later]).groupby(u[later]).sum()
    spend = [after.reindex(new).fillna(0.0).to_numpy() for new in
             (first[(first > cut) & (first <= cut + horizon)].index for cut in cutoffs) if len(new)]
    if not spend:
        return {"ltv": 0.0, "p_active": 0.0, "users": 0}
    s = np.concatenate(spend)
    return {"ltv": float(s.mean()), "p_active": float((s > 0).mean()), "users": int(len(s))}
