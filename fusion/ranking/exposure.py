r"""The exposure model: how likely the shop is to *show* a product to a user.

A logged purchase needs an impression first, so the purchases a shop logs follow

.. math::
    P(u \text{ buys } i) = P(i \text{ shown to } u)\cdot P(\text{click} \mid \text{shown})
        \cdot P(\text{purchase} \mid \text{click})

and the fusion model predicts the last two. This module estimates the first from the
logged impressions (sources with impressions only), as a mixture of what a shop's
display policy is made of -- popular products, products of the categories the user is
shown, anything at all:

.. math::
    P(i \mid u) = \lambda_0\, q_i + \lambda_1 \frac{1}{I}
        + \sum_{k} \lambda_{k+2}\, \frac{r^{(k)}_{u, g_k(i)}}{n^{(k)}_{g_k(i)}}

* ``q_i = (c_i + 1) / (N + I)``: the product's share of the ``N`` training impressions
  (``c_i`` of them);
* ``g_k(i)``: the product's group under grouping ``k`` -- the top level and the full path
  of its first category (:func:`category_groups`; at most ``max_groups`` groups each, the
  rarest pooled into one), ``n_g`` products in group ``g``;
* ``r_{u,g} = (c_{u,g} + \beta\,\bar r_g) / (c_u + \beta)``: the user's share of their
  impressions in group ``g``, shrunk towards the shop-wide share ``\bar r_g`` with
  ``\beta`` pseudo-impressions (a user with none -- unknown, or new -- gets ``\bar r``);
* ``\lambda`` (sums to 1): fit by EM to the *validation*-period impressions with the
  components counted on the training period (so the weights measure how well each
  component predicts later impressions, not how well it remembers); without validation
  impressions, to the training ones.

Only training-period impressions are counted (as the side features are,
:func:`fusion.ranking.features.side_features`): nothing of the test period, nor the
validation period's counts, reaches it. Shapes: ``q`` [I], ``share[k]`` [U + 1, G_k]
(the last row is ``\bar r``), ``group[k]`` [I] (a product without categories is in the
group ``""``; -1 only for a product new to a serving version whose category the model
never saw: its grouping term is 0), ``size[k]`` [G_k], ``weights`` [2 + K].

The ranking score adds ``w_exposure * log P(i | u)`` (:mod:`fusion.ranking.scoring`):
weight 1 ranks by the expected logged purchases. The default is 0.5: the fused CTR head
already carries part of the exposure (it is trained against unshown products too); on
three synthetic shops weights 0.5 and 0.75 lifted the logged Recall@10 about equally (by
0.009 on average, 0.25 and 1 by less), and at 0.5 the top-10s keep more of what they
would truly sell (README, *Training*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kg.run_dir import save_torch

PATH_SEP = " > "
#: the name of the pooled group of rare categories (not a category path: it holds a NUL)
POOLED = "\x00other"


def category_groups(categories) -> list[np.ndarray]:
    """Two groupings of products from their category lists: the top level of the first
    path, and the first path itself (names; ``""`` for a product without categories).
    ``categories``: one list (or array) of category paths per product."""
    first = np.array([str(c[0]) if isinstance(c, (list, tuple, np.ndarray)) and len(c) else "" for c in categories],
                     dtype=object)
    top = np.array([p.split(PATH_SEP)[0] for p in first], dtype=object)
    return [top, first]


@dataclass
class ExposureModel:
    """P(product | an impression of the user): see the module docstring."""

    user_ids: np.ndarray        # [U] the users of the share rows
    item_ids: np.ndarray        # [I]
    q: torch.Tensor             # [I]
    share: list[torch.Tensor]   # per grouping [U + 1, G_k]
    group: list[torch.Tensor]   # per grouping [I] int64, -1 = none
    size: list[torch.Tensor]    # per grouping [G_k]
    names: list[np.ndarray]     # per grouping [G_k] group names (the pooled group: POOLED)
    weights: torch.Tensor       # [2 + K]

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def components(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[n, 2 + K]: each mixture component's P(item | an impression of user) for rows
        (users [n], items [n]) -- product share, uniform, one column per grouping (0 for a
        product without a group); a user index outside ``[0, U)`` (-1: none) gets the
        shop-wide shares."""
        dev = self.q.device
        users, items = users.to(dev), items.to(dev)
        rows = torch.where((users >= 0) & (users < self.num_users), users, self.num_users)
        q = self.q[items]
        cols = [q, torch.full_like(q, 1.0 / len(self.q))]
        for share, group, size in zip(self.share, self.group, self.size):
            g = group[items]
            gc = g.clamp(min=0)
            cols.append(torch.where(g >= 0, share[rows, gc] / size[gc], torch.zeros_like(q)))
        return torch.stack(cols, 1)

    def log_prob(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """log P(items | an impression of users), [n]: the components mixed by ``weights``."""
        return (self.components(users, items) @ self.weights).log()

    def aligned(self, user_ids: np.ndarray, item_ids: np.ndarray, categories) -> ExposureModel:
        """The same model over other users and products (a serving version's): users by id
        (a new user gets the shop-wide shares); products by id, a new one with the
        smallest ``q`` and the group its category names (none if the model has no such
        group). ``categories``: the products' category lists, aligned with ``item_ids``."""
        upos = pd.Index(self.user_ids.astype(object)).get_indexer(pd.Index(np.asarray(user_ids, dtype=object)))
        rows = torch.from_numpy(np.append(np.where(upos >= 0, upos, self.num_users), self.num_users))
        ipos = pd.Index(self.item_ids.astype(object)).get_indexer(pd.Index(np.asarray(item_ids, dtype=object)))
        found = torch.from_numpy(ipos >= 0)
        old = torch.from_numpy(ipos).clamp(min=0)
        q = torch.where(found, self.q[old], self.q.min())
        groups = []
        for names, group, wanted in zip(self.names, self.group, category_groups(categories)):
            by_name = torch.from_numpy(pd.Index(names, dtype=object).get_indexer(pd.Index(wanted, dtype=object)))
            groups.append(torch.where(found, group[old], by_name))
        return ExposureModel(np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object), q,
                             [s[rows] for s in self.share], groups, self.size, self.names, self.weights)

    def save(self, path) -> None:
        save_torch({"user_ids": [str(x) for x in self.user_ids], "item_ids": [str(x) for x in self.item_ids],
                    "q": self.q, "share": self.share, "group": self.group, "size": self.size,
                    "names": [[str(n) for n in names] for names in self.names], "weights": self.weights}, path)

    @classmethod
    def load(cls, path) -> ExposureModel:
        d = torch.load(path, weights_only=True)
        return cls(np.asarray(d["user_ids"], dtype=object), np.asarray(d["item_ids"], dtype=object), d["q"],
                   d["share"], d["group"], d["size"], [np.asarray(n, dtype=object) for n in d["names"]],
                   d["weights"])


def _grouping(names: np.ndarray, shown: np.ndarray, max_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(group [I], group names [G]): the ``max_groups - 1`` groups with most impressions
    keep their own (ties by name), the others are pooled into one (name :data:`POOLED`)."""
    codes, uniques = pd.factorize(pd.Series(names, dtype=object))
    counts = np.bincount(codes, weights=shown, minlength=len(uniques))
    if len(uniques) <= max_groups:
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)
    order = np.lexsort((np.asarray(uniques, dtype=str), -counts))
    keep = order[: max_groups - 1]
    new = np.full(len(uniques), max_groups - 1, dtype=np.int64)
    new[keep] = np.arange(max_groups - 1)
    kept_names = np.asarray(uniques, dtype=object)[keep]
    return new[codes], np.append(kept_names, POOLED).astype(object)


def _counted(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, groups: list[np.ndarray],
             smoothing: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(q [I], share per grouping [U + 1, G]) counted on the impressions (users, items)."""
    c = np.bincount(items, minlength=num_items).astype(np.float64)
    q = torch.from_numpy((c + 1.0) / (c.sum() + num_items)).float()
    shares = []
    for group in groups:
        n_groups = int(group.max()) + 1 if len(group) else 0
        counts = np.zeros((num_users, n_groups))
        np.add.at(counts, (users, group[items]), 1.0)
        overall = counts.sum(0) / max(counts.sum(), 1e-12) if n_groups else counts.sum(0)
        share = (counts + smoothing * overall) / (counts.sum(1, keepdims=True) + smoothing)
        shares.append(torch.from_numpy(np.vstack([share, overall])).float())
    return q, shares


def _em_weights(p: torch.Tensor, iterations: int) -> torch.Tensor:
    """Mixture weights maximising ``sum log(p @ w)`` over the rows of ``p`` [n, C] (EM from
    equal weights)."""
    w = torch.full((p.shape[1],), 1.0 / p.shape[1], dtype=torch.float64)
    for _ in range(iterations):
        r = p * w
        w = (r / r.sum(1, keepdim=True)).mean(0)
    return w


def fit_exposure(examples, items: pd.DataFrame, item_ids: np.ndarray, user_ids: np.ndarray,
                 smoothing: float = 5.0, max_groups: int = 64, iterations: int = 100,
                 weights: torch.Tensor | None = None) -> ExposureModel | None:
    """The exposure model of an :class:`~fusion.ranking.examples.ExampleSet` with
    impressions (None for other sources, or without training impressions): components
    counted on the training-period impressions, mixture weights fit by EM on the
    validation-period ones (see the module docstring). ``items``: the catalogue
    (``item_id``, ``categories``); ``item_ids`` / ``user_ids``: the examples' id maps.
    ``weights``: mixture weights to keep instead (an update recounts the components over
    every impression now in the store and keeps the run's weights, fit on held-out ones)."""
    if examples.kind != "impressions":
        return None
    shown = ~examples.sampled
    train = shown & (examples.part == 0)
    if not train.any():
        return None
    held = shown & (examples.part == 1)
    if not held.any():
        held = train
    num_users, num_items = len(user_ids), len(item_ids)
    per_item = np.bincount(examples.item[train], minlength=num_items).astype(np.float64)
    groups, names = [], []
    categories = items.set_index("item_id")["categories"].reindex(pd.Index(np.asarray(item_ids, dtype=object)))
    for grouping in category_groups(categories):
        g, n = _grouping(grouping, per_item, max_groups)
        groups.append(g)
        names.append(n)
    u_train, i_train = examples.user[train], examples.item[train]
    q, share = _counted(u_train, i_train, num_users, num_items, groups, smoothing)
    size = [torch.from_numpy(np.maximum(np.bincount(g, minlength=len(n)), 1)).float() for g, n in zip(groups, names)]
    model = ExposureModel(np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object), q, share,
                          [torch.from_numpy(g) for g in groups], size, names, torch.zeros(2 + len(groups)))
    if weights is not None:
        model.weights = weights.clone()
        return model
    # the mixture weights: fit to the held-out impressions, the components fixed
    p = model.components(torch.from_numpy(examples.user[held]), torch.from_numpy(examples.item[held]))
    model.weights = _em_weights(p.double(), iterations).float()
    return model
