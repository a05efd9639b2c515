"""Per-user and per-product inputs of the fusion model, as aligned tensors.

:class:`FeatureTables` holds, for the ``U`` users and ``I`` products of a graph export
(row = the export's index):

* ``user_gnn`` [U, dg], ``item_gnn`` [I, dg] -- graph-encoder embeddings;
* ``item_text`` [I, dt] -- text-encoder embeddings of the product texts;
* ``user_text`` [U, dt] -- user text profiles (reviews + purchased products), zero rows
  for users without one;
* ``value_cap`` [I] (optional) -- the largest ``value`` logit serving gives each product
  (:func:`value_caps`);
* ``user_side`` [U, 3], ``item_side`` [I, 7] -- side features (:data:`USER_SIDE`,
  :data:`ITEM_SIDE`), standardised, computed from *training* examples only:

  ========================  ==========================================================
  price_log                 log(1 + price), 0 for unknown prices
  price_missing             1 when the price is unknown
  price_z                   log price against the mean of the product's category(s)
  popularity                log(1 + training conversions of the product)
  clicks                    log(1 + training clicks)
  ctr                       smoothed training click rate (clicks + 1) / (examples + 10)
  recency                   log(1 + days from the product's last training example to
                            the end of training)
  activity (user)           log(1 + the user's training examples)
  user_ctr (user)           smoothed click rate of the user
  has_profile (user)        1 when the user has a text profile
  ========================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from fusion.value.temporal import fill_prices
from kg.run_dir import save_torch

ITEM_SIDE = ("price_log", "price_missing", "price_z", "popularity", "clicks", "ctr", "recency")
USER_SIDE = ("activity", "user_ctr", "has_profile")


@dataclass
class FeatureTables:
    user_gnn: torch.Tensor   # [U, dg]
    item_gnn: torch.Tensor   # [I, dg]
    item_text: torch.Tensor  # [I, dt]
    user_text: torch.Tensor  # [U, dt]
    user_side: torch.Tensor  # [U, len(USER_SIDE)]
    item_side: torch.Tensor  # [I, len(ITEM_SIDE)]
    value_cap: torch.Tensor | None = None  # [I] (:func:`value_caps`; None: no cap, a run trained before it)

    @property
    def num_users(self) -> int:
        return len(self.user_gnn)

    @property
    def num_items(self) -> int:
        return len(self.item_gnn)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> FeatureTables:
        """The tables with ``fn`` applied to each one (an absent ``value_cap`` stays absent)."""
        return FeatureTables(*(None if (t := getattr(self, f)) is None else fn(t) for f in self.__dataclass_fields__))

    def to(self, device) -> FeatureTables:
        return self.map(lambda t: t.to(device))

    def save(self, path) -> None:
        save_torch({f: t for f in self.__dataclass_fields__ if (t := getattr(self, f)) is not None}, path)

    @classmethod
    def load(cls, path) -> FeatureTables:
        return cls(**torch.load(path, weights_only=True))


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def aligned(ids_wanted: np.ndarray, ids: np.ndarray, vectors: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Rows of ``vectors`` (one per ``ids``) reordered to ``ids_wanted``; missing rows are
    zero. Returns (FloatTensor [len(ids_wanted), d], found bool [len(ids_wanted)])."""
    pos = pd.Index(np.asarray(ids, dtype=object)).get_indexer(pd.Index(np.asarray(ids_wanted, dtype=object)))
    out = torch.zeros(len(ids_wanted), vectors.shape[1])
    found = pos >= 0
    out[torch.from_numpy(np.flatnonzero(found))] = vectors[torch.from_numpy(pos[found])].float()
    return out, found


def side_features(items: pd.DataFrame, product_ids: np.ndarray, num_users: int, examples
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(item_side [I, 7], user_side [U, 2]) -- the table in the module docstring, without
    ``has_profile``. ``items`` is the catalogue (``item_id``, ``price``, ``categories``),
    ``examples`` an :class:`fusion.ranking.examples.ExampleSet` (its train part is used)."""
    n = len(product_ids)
    catalogue = items.set_index("item_id").reindex(pd.Index(product_ids, dtype=object))
    price = catalogue["price"].to_numpy(dtype=np.float64)
    missing = np.isnan(price)
    logp = np.where(missing, 0.0, np.log1p(np.nan_to_num(price)))
    cat = catalogue["categories"].map(lambda c: c[0] if isinstance(c, list) and c else "").to_numpy()
    frame = pd.DataFrame({"cat": cat, "logp": np.where(missing, np.nan, logp)})
    mean = frame.groupby("cat")["logp"].transform("mean").to_numpy()
    std = frame.groupby("cat")["logp"].transform("std").fillna(0).to_numpy()
    z = np.nan_to_num((logp - mean) / np.where(std > 0, std, 1.0))
    z[missing] = 0.0
    train = examples.part == 0
    u, i = examples.user[train], examples.item[train]
    conv = np.bincount(i, examples.conversion[train], n)
    clicks = np.bincount(i, examples.click[train], n)
    shown = np.bincount(i, minlength=n)
    end = examples.time[train].max() if train.any() else 0
    last = np.full(n, examples.time[train].min() if train.any() else 0, dtype=np.int64)
    np.maximum.at(last, i, examples.time[train])
    recency = np.log1p(np.maximum(end - last, 0) / 86_400.0)
    item_side = np.stack([logp, missing.astype(float), z, np.log1p(conv), np.log1p(clicks),
                          (clicks + 1) / (shown + 10), recency], 1)
    u_shown = np.bincount(u, minlength=num_users)
    u_clicks = np.bincount(u, examples.click[train], num_users)
    user_side = np.stack([np.log1p(u_shown), (u_clicks + 1) / (u_shown + 10)], 1)
    return _standardise(item_side).astype(np.float32), _standardise(user_side).astype(np.float32)


def value_caps(items: pd.DataFrame, product_ids: np.ndarray, examples) -> torch.Tensor | None:
    r"""The largest ``value`` logit serving gives each product [I] (rows: ``product_ids``;
    ``items``: the catalogue, ``examples``: an :class:`fusion.ranking.examples.ExampleSet`,
    its train part used), None when no training purchase has a known value.

    The value head learns from purchases with a known order value only, so on a product
    no one has bought -- an unseen ``popularity`` and graph vector, often no price -- it
    extrapolates: products priced 20 to 24 came out at 2,000 to 8,000, and products without
    a price above every priced one, leading every request that weighs ``value``. So the
    predicted value of a product :math:`j` at price :math:`p_j` is capped at

    .. math::
        \hat v_{uj} \le p_j \cdot q_j, \qquad z_\text{cap} = \log(p_j\, q_j)

    (``expm1(softplus(z)) = v`` at ``z = log v``), where :math:`q_j` is the largest quantity
    of one order line in training (:math:`v / p` over the purchases with a known value)
    for a product bought with a known value in training -- an order line is worth at most
    that -- and the mean quantity for the others, whose value the model never saw: their
    expected order value. An unknown price :math:`p_j` is the median known price of the
    product's first category, else of the shop (:func:`fusion.value.temporal.fill_prices`,
    as the value stage values it)."""
    catalogue = items.set_index("item_id").reindex(pd.Index(np.asarray(product_ids, dtype=object), dtype=object))
    price = catalogue["price"].to_numpy(dtype=np.float64)
    known = np.isfinite(price) & (price > 0)
    bought = (examples.part == 0) & (examples.conversion > 0) & (examples.value > 0) & known[examples.item]
    if not bought.any():
        return None
    quantity = examples.value[bought].astype(np.float64) / price[examples.item[bought]]
    sold = np.zeros(len(price), bool)
    sold[examples.item[bought]] = True
    first = np.asarray([c[0] if isinstance(c, (list, tuple, np.ndarray)) and len(c) else ""
                        for c in catalogue["categories"]], dtype=object)
    cap = fill_prices(price, first) * np.where(sold, quantity.max(), quantity.mean())
    with np.errstate(divide="ignore"):  # a free product: value 0, logit -inf
        return torch.from_numpy(np.log(cap).astype(np.float32))


def build_tables(*, user_gnn: torch.Tensor, item_gnn: torch.Tensor, item_text: torch.Tensor,
                 user_text: torch.Tensor, has_profile: np.ndarray, item_side: np.ndarray,
                 user_side: np.ndarray, value_cap: torch.Tensor | None = None) -> FeatureTables:
    user_all = np.concatenate([user_side, has_profile[:, None].astype(np.float32)], 1)
    return FeatureTables(user_gnn.float(), item_gnn.float(), torch.nn.functional.normalize(item_text.float(), dim=-1),
                         user_text.float(), torch.from_numpy(user_all), torch.from_numpy(item_side), value_cap)
