"""Product potential: each product's sales over the horizon after a cut-off, new products
(no sale before the cut-off) included.

A :class:`~fusion.value.ziln.ZILN` network over the product's own sales and engagement
(:func:`fusion.value.features.item_features`), its price (and price within its category),
its knowledge-graph neighbours -- the recent sales per product of its brand, category and
top category and of the products linked to it (also bought / also viewed / bought
together) -- and its text embedding (PCA). A new product has no sales of its own, so its
prediction rests on those neighbours, its price, its text and any views or impressions it
got. Outputs: ``units`` = E[units sold in (T, T + H]], ``value`` = units x price, and
``p_sell`` = P(at least one sale) -- the ``potential`` ranking objective.

Baselines: the last period's units (``(T - H, T]``), and the category mean (the mean
last-period units of the products of the product's category, the natural guess for a new
one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusion.value.features import Table, item_features
from fusion.value.temporal import Activity


#: a product's own sales history: the columns the new-product model does without
SALES_COLUMNS = ("units_total", "units_h1", "units_h2", "sales_value_h1", "buyers", "repeat_share", "has_sales",
                 "days_since_first_sale", "days_since_last_sale", "units_per_day")


def potential_table(activity: Activity, cutoff: int, horizon: int, item_vectors: dict[str, np.ndarray],
                    target: bool = True) -> Table:
    """Every product at ``cutoff``: features, the text block (``item_vectors["text"]`` when
    given; GNN item vectors are not used, see :mod:`fusion.value.features`), the units sold in
    ``(cutoff, cutoff + horizon]`` and the two baselines (``extra``)."""
    past = activity.before(cutoff)
    frame = item_features(past, cutoff, horizon)
    rows = np.arange(activity.num_items)
    blocks = {"text": np.asarray(item_vectors["text"], dtype=np.float64)} if "text" in item_vectors else {}
    recent = past.purchases[past.purchases["t"] > cutoff - horizon]
    last = np.bincount(recent["i"].to_numpy(dtype=np.int64), weights=recent["qty"].to_numpy(),
                       minlength=activity.num_items) if len(recent) else np.zeros(activity.num_items)
    category_mean = pd.Series(last).groupby(activity.category).transform("mean").to_numpy()
    category_mean = np.where(activity.category >= 0, category_mean, last.mean() if len(last) else 0.0)
    y = None
    if target:
        fut = activity.window(cutoff, cutoff + horizon)
        y = np.bincount(fut["i"].to_numpy(dtype=np.int64), weights=fut["qty"].to_numpy(),
                        minlength=activity.num_items).astype(np.float64) if len(fut) else np.zeros(activity.num_items)
    extra = pd.DataFrame({"item_id": activity.items.astype(str), "last_period_units": last,
                          "category_mean": category_mean, "new": frame["has_sales"].to_numpy() == 0,
                          "price": activity.price})
    return Table(cutoff, rows, frame, blocks, y, extra)
