"""Brand loyalty: for each user and each brand they bought, the probability that their next
purchase in that brand's category goes to that brand again; per brand, its repurchase rate.

Rows are the (user, brand) pairs with a purchase before the cut-off
(:func:`fusion.value.features.loyalty_pairs`: how often and how lately the user bought the
brand, its share of the user's purchases in the category, how many brands they buy there,
the brand's repeat-buyer rate and recent market share). The label
(:func:`fusion.value.features.loyalty_targets`) is whether the user's first purchase in
that category within ``(T, T + H]`` is of the brand; pairs without such a purchase are not
labelled (they train and score nothing). A :class:`~fusion.value.classifier.Classifier`
predicts it: ``p_loyal``. The baseline is the past share itself.

The ``loyalty`` ranking objective of a (user, product) is ``p_loyal`` of the user and the
product's brand when the user bought that brand before, else a floor
(``ValueConfig.loyalty_floor``), the same for every product -- so it promotes the user's
brands, and for a user without history it is a constant that changes no ranking.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusion.value.features import Table, loyalty_pairs, loyalty_targets
from fusion.value.temporal import Activity

#: pair columns that are not model inputs
KEYS = ("u", "b", "c")


def loyalty_table(activity: Activity, cutoff: int, horizon: int, target: bool = True) -> Table:
    """The (user, brand) pairs at ``cutoff`` with their features and (with ``target``) the
    label; unlabelled pairs are dropped when ``target`` is set."""
    past = activity.before(cutoff)
    pairs = loyalty_pairs(past, cutoff, horizon)
    y = loyalty_targets(pairs, activity.window(cutoff, cutoff + horizon), activity) if target else None
    frame = pairs.drop(columns=list(KEYS)).reset_index(drop=True)
    u = pairs["u"].to_numpy(dtype=np.int64) if len(pairs) else np.zeros(0, np.int64)
    b = pairs["b"].to_numpy(dtype=np.int64) if len(pairs) else np.zeros(0, np.int64)
    extra = pd.DataFrame({"user_id": activity.users[u].astype(str), "brand": activity.brand_names[b].astype(str),
                          "u": u, "b": b, "past_share": frame["past_share"].to_numpy() if len(pairs) else []})
    table = Table(cutoff, np.arange(len(pairs)), frame, {}, y, extra)
    if target:
        table = table.select(np.isfinite(y))
    return table


def brand_rates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per brand: customers (pairs), the mean predicted ``p_loyal`` (its repurchase rate)
    and the mean past share, from a serving pairs table (``brand``, ``p_loyal``,
    ``past_share``)."""
    if not len(pairs):
        return pd.DataFrame(columns=["brand", "customers", "repurchase_rate", "past_share"])
    g = pairs.groupby("brand")
    return (pd.DataFrame({"customers": g.size(), "repurchase_rate": g["p_loyal"].mean(),
                          "past_share": g["past_share"].mean()})
            .reset_index().sort_values(["repurchase_rate", "brand"], ascending=[False, True], ignore_index=True))
