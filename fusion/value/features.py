"""Feature tables of the value models at a cut-off: per user (RFM and engagement), per
product (sales, engagement, price, brand / category / linked-product sales) and per
(user, brand) pair (loyalty), each computed from the events at or before the cut-off
only, plus the embedding blocks (graph and text) reduced by PCA.

Every function takes an :class:`~fusion.value.temporal.Activity` already cut with
``activity.before(T)`` -- so a feature cannot see the target window -- and returns a
DataFrame indexed by user / product index (or ``u``, ``b`` columns for pairs) whose
columns are the model's inputs (counts, money and durations enter as ``log1p``).

Embedding blocks: a user's graph vector is the mean of the run's GNN item vectors over
the products they bought or engaged with before the cut-off (the fold-in of
:mod:`fusion.update`: the user's trained vector would carry their later purchases), their
text vector the mean text embedding of the products they bought. Products take only
their text vector: a GNN item vector is trained on interactions of every period, and its
norm grows with the product's later sales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fusion.value.temporal import DAY, ENGAGEMENTS, Activity

KIND_NAMES = ("shown", "viewed", "clicked", "cart")


def _count(index: pd.Series, n: int, weights=None) -> np.ndarray:
    return np.bincount(index.to_numpy(dtype=np.int64), weights=None if weights is None else np.asarray(weights),
                       minlength=n).astype(np.float64)[:n] if len(index) else np.zeros(n)


def _last(index: pd.Series, t: pd.Series, n: int, how: str) -> np.ndarray:
    """Per index, the max (``how='max'``) or min time, NaN where none."""
    out = np.full(n, np.nan)
    if len(index):
        g = pd.Series(t.to_numpy(dtype=np.float64)).groupby(index.to_numpy()).agg(how)
        out[g.index.to_numpy(dtype=np.int64)] = g.to_numpy()
    return out


def user_features(past: Activity, cutoff: int, horizon: int) -> pd.DataFrame:
    """RFM, tenure and engagement per user with any event at or before ``cutoff``."""
    n = past.num_users
    p, e = past.purchases, past.engagements
    recent = p[p["t"] > cutoff - horizon]
    older = p[(p["t"] > cutoff - 2 * horizon) & (p["t"] <= cutoff - horizon)]
    first_event = np.fmin(_last(p["u"], p["t"], n, "min"), _last(e["u"], e["t"], n, "min"))
    known = np.isfinite(first_event)
    n_buy = _count(p["u"], n)
    spend = _count(p["u"], n, p["spend"])
    first_buy = _last(p["u"], p["t"], n, "min")
    last_buy = _last(p["u"], p["t"], n, "max")
    has_buy = n_buy > 0
    tenure = (cutoff - first_event) / DAY
    f = {
        "n_purchases": np.log1p(n_buy),
        "purchase_days": np.log1p(_distinct(p["u"], p["t"] // DAY, n)),
        "spend_total": np.log1p(spend),
        "spend_mean": np.log1p(np.divide(spend, n_buy, out=np.zeros(n), where=has_buy)),
        "spend_max": np.log1p(_max(p["u"], p["spend"], n)),
        "recency_days": np.log1p(np.where(has_buy, (cutoff - last_buy) / DAY, tenure)),
        "first_purchase_days": np.log1p(np.where(has_buy, (cutoff - first_buy) / DAY, 0.0)),
        "tenure_days": np.log1p(np.nan_to_num(tenure)),
        "purchases_h1": np.log1p(_count(recent["u"], n)),
        "purchases_h2": np.log1p(_count(older["u"], n)),
        "spend_h1": np.log1p(_count(recent["u"], n, recent["spend"])),
        "spend_h2": np.log1p(_count(older["u"], n, older["spend"])),
        "rate_per_day": np.divide(n_buy, np.maximum((cutoff - np.nan_to_num(first_buy)) / DAY, 1.0),
                                  out=np.zeros(n), where=has_buy),
        "gap_days": np.log1p(np.divide(np.nan_to_num(last_buy - first_buy) / DAY, np.maximum(n_buy - 1, 1))),
        "distinct_items": np.log1p(_distinct(p["u"], p["i"], n)),
        "distinct_categories": np.log1p(_distinct(p["u"], pd.Series(past.top_category[p["i"].to_numpy()]), n)),
        "mean_log_price": _mean(p["u"], np.log1p(past.price[p["i"].to_numpy()]), n),
        "mean_quantity": _mean(p["u"], p["qty"].to_numpy(), n),
        "has_purchase": has_buy.astype(np.float64),
    }
    e_recent = e[e["t"] > cutoff - horizon]
    for k, name in enumerate(KIND_NAMES):
        mine = e_recent[e_recent["kind"] == k]
        f[f"{name}_h1"] = np.log1p(_count(mine["u"], n))
    # what the user looks at tells their price level long before they have bought much
    looked = e[e["kind"] != ENGAGEMENTS.index("shown")]
    f["clicked_log_price"] = _mean(looked["u"], np.log1p(past.price[looked["i"].to_numpy()]), n)
    n_eng = _count(e["u"], n)
    f["engagements_total"] = np.log1p(n_eng)
    last_eng = _last(e["u"], e["t"], n, "max")
    eng_recency = np.where(np.isfinite(last_eng), (cutoff - last_eng) / DAY, np.nan_to_num(tenure))
    f["engagement_recency_days"] = np.log1p(eng_recency)
    # silence measured in expected events (the quantity BG/NBD's P(alive) turns on): how many
    # purchases / engagements the user's own rate says should have happened since the last one
    days = np.maximum(np.nan_to_num(tenure), 1.0)
    f["purchases_missed"] = np.log1p(np.where(has_buy, (cutoff - np.nan_to_num(last_buy)) / DAY, 0.0)
                                     * f["rate_per_day"])
    f["engagements_missed"] = np.log1p(eng_recency * n_eng / days)
    f["spend_per_day"] = np.log1p(spend / days)
    frame = pd.DataFrame(f)
    return frame[known]


def item_features(past: Activity, cutoff: int, horizon: int) -> pd.DataFrame:
    """Sales, engagement, price and the sales of the product's brand, category and linked
    products, for every product."""
    n = past.num_items
    p, e = past.purchases, past.engagements
    recent = p[p["t"] > cutoff - horizon]
    older = p[(p["t"] > cutoff - 2 * horizon) & (p["t"] <= cutoff - horizon)]
    units = _count(p["i"], n, p["qty"])
    units_h1 = _count(recent["i"], n, recent["qty"])
    first_sale = _last(p["i"], p["t"], n, "min")
    last_sale = _last(p["i"], p["t"], n, "max")
    first_seen = np.fmin(first_sale, _last(e["i"], e["t"], n, "min"))
    buyers = _distinct(p["i"], p["u"], n)
    log_price = np.log1p(past.price)
    f = {
        "units_total": np.log1p(units),
        "units_h1": np.log1p(units_h1),
        "units_h2": np.log1p(_count(older["i"], n, older["qty"])),
        "sales_value_h1": np.log1p(_count(recent["i"], n, recent["spend"])),
        "buyers": np.log1p(buyers),
        "repeat_share": np.divide(_count(p["i"], n) - buyers, np.maximum(_count(p["i"], n), 1)),
        "has_sales": (units > 0).astype(np.float64),
        "days_since_first_sale": np.log1p(np.nan_to_num((cutoff - first_sale) / DAY)),
        "days_since_last_sale": np.log1p(np.nan_to_num((cutoff - last_sale) / DAY)),
        "seen": np.isfinite(first_seen).astype(np.float64),
        "days_since_first_seen": np.log1p(np.nan_to_num((cutoff - first_seen) / DAY)),
        "log_price": log_price,
        "has_price": past.has_price.astype(np.float64),
        "price_z_category": _zscore(log_price, past.category),
    }
    e_recent = e[e["t"] > cutoff - horizon]
    for k, name in enumerate(KIND_NAMES):
        mine = e_recent[e_recent["kind"] == k]
        f[f"{name}_h1"] = np.log1p(_count(mine["i"], n))
        f[f"{name}_total"] = np.log1p(_count(e[e["kind"] == k]["i"], n))
    # rates since the product was first seen: a new product's exposure tells its appeal
    seen_days = np.maximum(np.nan_to_num((cutoff - first_seen) / DAY), 1.0)
    f["units_per_day"] = np.log1p(units / seen_days)
    for k, name in enumerate(KIND_NAMES):
        f[f"{name}_per_day"] = np.log1p(np.expm1(f[f"{name}_total"]) / seen_days)
    for name, group in (("brand", past.brand), ("category", past.category), ("top", past.top_category)):
        f[f"{name}_units_h1"] = np.log1p(_group_mean(units_h1, group))
        f[f"{name}_units_total"] = np.log1p(_group_mean(units, group))
    src, dst = past.links
    f["linked_units_h1"] = np.log1p(_neighbour_mean(units_h1, src, dst, n))
    f["linked_units_total"] = np.log1p(_neighbour_mean(units, src, dst, n))
    f["links"] = np.log1p(np.bincount(src, minlength=n)[:n].astype(np.float64)) if len(src) else np.zeros(n)
    return pd.DataFrame(f)


def loyalty_pairs(past: Activity, cutoff: int, horizon: int) -> pd.DataFrame:
    """One row per (user ``u``, brand ``b``) the user bought before ``cutoff``, with the
    top category ``c`` of their latest purchase of it and the features of the pair;
    ``past_share`` is the baseline (the brand's share of the user's purchases in ``c``)."""
    p = past.purchases
    b = past.brand[p["i"].to_numpy()]
    c = past.top_category[p["i"].to_numpy()]
    bp = p.assign(b=b, c=c)[b >= 0]
    if not len(bp):
        return pd.DataFrame(columns=["u", "b", "c", "past_share"])
    g = bp.groupby(["u", "b"])
    pairs = g.agg(n=("t", "size"), last=("t", "max"), first=("t", "min")).reset_index()
    latest = bp.sort_values("t", kind="stable").groupby(["u", "b"])["c"].last()
    pairs["c"] = latest.reindex(pd.MultiIndex.from_frame(pairs[["u", "b"]])).to_numpy()
    in_cat = p.assign(c=c).groupby(["u", "c"]).size()
    n_uc = in_cat.reindex(pd.MultiIndex.from_frame(pairs[["u", "c"]])).fillna(0).to_numpy()
    brands_uc = bp.groupby(["u", "c"])["b"].nunique()
    n_brands = brands_uc.reindex(pd.MultiIndex.from_frame(pairs[["u", "c"]])).fillna(1).to_numpy()
    n_u = np.bincount(p["u"].to_numpy(), minlength=past.num_users)[pairs["u"].to_numpy()]
    per_buyer = bp.groupby(["b", "u"]).size()
    repeat = (per_buyer >= 2).groupby(level=0).mean()
    buyers = per_buyer.groupby(level=0).size()
    recent = bp[bp["t"] > cutoff - horizon]
    cat_h1 = recent.groupby("c").size()
    brand_cat_h1 = recent.groupby(["b", "c"]).size()
    share_h1 = (brand_cat_h1.reindex(pd.MultiIndex.from_frame(pairs[["b", "c"]])).fillna(0).to_numpy()
                / np.maximum(cat_h1.reindex(pairs["c"]).fillna(0).to_numpy(), 1))
    pairs["past_share"] = pairs["n"] / np.maximum(n_uc, 1)
    out = pd.DataFrame({
        "u": pairs["u"].to_numpy(), "b": pairs["b"].to_numpy(), "c": pairs["c"].to_numpy(),
        "past_share": pairs["past_share"].to_numpy(),
        "pair_purchases": np.log1p(pairs["n"].to_numpy()),
        "pair_recency_days": np.log1p((cutoff - pairs["last"].to_numpy()) / DAY),
        "pair_first_days": np.log1p((cutoff - pairs["first"].to_numpy()) / DAY),
        "category_purchases": np.log1p(n_uc),
        "category_brands": np.log1p(n_brands),
        "user_purchases": np.log1p(n_u),
        "brand_repeat_rate": repeat.reindex(pairs["b"]).fillna(0).to_numpy(),
        "brand_buyers": np.log1p(buyers.reindex(pairs["b"]).fillna(0).to_numpy()),
        "brand_share_h1": share_h1,
        "last_was_brand": _last_was(bp, pairs),
    })
    return out


def loyalty_targets(pairs: pd.DataFrame, future: pd.DataFrame, activity: Activity) -> np.ndarray:
    """Per pair: 1 when the user's first purchase in ``(T, T + H]`` in the pair's top
    category is of the pair's brand, 0 when it is of another brand, NaN when the user
    bought nothing in that category then (not a labelled pair)."""
    if not len(pairs):
        return np.zeros(0)
    f = future.assign(c=activity.top_category[future["i"].to_numpy()], b=activity.brand[future["i"].to_numpy()])
    first = f.sort_values("t", kind="stable").drop_duplicates(["u", "c"], keep="first").set_index(["u", "c"])["b"]
    nxt = first.reindex(pd.MultiIndex.from_frame(pairs[["u", "c"]])).to_numpy()
    out = np.where(np.isnan(nxt.astype(np.float64)), np.nan, (nxt == pairs["b"].to_numpy()).astype(np.float64))
    return out


def _last_was(bp: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """1 where the user's latest purchase in the pair's category is of the pair's brand."""
    latest = bp.sort_values("t", kind="stable").groupby(["u", "c"])["b"].last()
    got = latest.reindex(pd.MultiIndex.from_frame(pairs[["u", "c"]])).to_numpy()
    return (got == pairs["b"].to_numpy()).astype(np.float64)


def _distinct(index: pd.Series, values: pd.Series, n: int) -> np.ndarray:
    out = np.zeros(n)
    if len(index):
        g = pd.DataFrame({"k": index.to_numpy(), "v": np.asarray(values)}).groupby("k")["v"].nunique()
        out[g.index.to_numpy(dtype=np.int64)] = g.to_numpy()
    return out


def _max(index: pd.Series, values: pd.Series, n: int) -> np.ndarray:
    out = np.zeros(n)
    if len(index):
        g = pd.Series(np.asarray(values, dtype=np.float64)).groupby(index.to_numpy()).max()
        out[g.index.to_numpy(dtype=np.int64)] = g.to_numpy()
    return out


def _mean(index: pd.Series, values: np.ndarray, n: int) -> np.ndarray:
    total = _count(index, n, values)
    count = _count(index, n)
    return np.divide(total, count, out=np.zeros(n), where=count > 0)


def _zscore(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"x": x, "g": group})
    mu = frame.groupby("g")["x"].transform("mean").to_numpy()
    sd = frame.groupby("g")["x"].transform("std").fillna(0).to_numpy()
    return np.divide(x - mu, sd, out=np.zeros(len(x)), where=sd > 0)


def _group_mean(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per product, the mean of ``values`` over the products of its group (0 for no group)."""
    ok = group >= 0
    if not ok.any():
        return np.zeros(len(values))
    k = int(group.max()) + 1
    total = np.bincount(group[ok], weights=values[ok], minlength=k)
    count = np.bincount(group[ok], minlength=k)
    mean = np.divide(total, count, out=np.zeros(k), where=count > 0)
    return np.where(ok, mean[np.maximum(group, 0)], 0.0)


def _neighbour_mean(values: np.ndarray, src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    if not len(src):
        return np.zeros(n)
    total = np.bincount(src, weights=values[dst], minlength=n)[:n]
    count = np.bincount(src, minlength=n)[:n]
    return np.divide(total, count, out=np.zeros(n), where=count > 0)


# ----------------------------------------------------------------- embedding blocks

def user_vectors(past: Activity, item_vectors: np.ndarray, purchases_only: bool = False) -> np.ndarray:
    """[U, d]: per user the mean of ``item_vectors`` over the products they bought (and,
    unless ``purchases_only``, clicked, viewed or carted; impressions when nothing else),
    zeros for a user with none."""
    p, e = past.purchases, past.engagements
    u, i = [p["u"].to_numpy()], [p["i"].to_numpy()]
    if not purchases_only and len(e):
        active = e[e["kind"] != ENGAGEMENTS.index("shown")]
        u.append(active["u"].to_numpy())
        i.append(active["i"].to_numpy())
    u, i = np.concatenate(u).astype(np.int64), np.concatenate(i).astype(np.int64)
    if not purchases_only and len(e):
        shown = e[e["kind"] == ENGAGEMENTS.index("shown")]
        lonely = ~np.isin(shown["u"].to_numpy(), u)
        u = np.concatenate([u, shown["u"].to_numpy()[lonely]]).astype(np.int64)
        i = np.concatenate([i, shown["i"].to_numpy()[lonely]]).astype(np.int64)
    import torch

    n, d = past.num_users, item_vectors.shape[1]
    out = torch.zeros(n, d, dtype=torch.float64).index_add_(0, torch.from_numpy(u),
                                                           torch.from_numpy(np.asarray(item_vectors[i], np.float64)))
    count = np.bincount(u, minlength=n)[:n]
    return out.numpy() / np.maximum(count, 1)[:, None]


@dataclass
class Projection:
    """PCA of one embedding block, fit on training rows: ``(x - mean) @ components.T``."""

    mean: np.ndarray        # [d]
    components: np.ndarray  # [k, d]

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> Projection:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        k = max(0, min(k, x.shape[1], max(len(x) - 1, 0)))
        if k == 0:
            return cls(mean, np.zeros((0, x.shape[1])))
        import torch  # its linear algebra keeps to the threads the stage set (numpy's BLAS may not)

        xc = torch.from_numpy(x - mean)
        values, vectors = torch.linalg.eigh(xc.T @ xc)      # [d, d]: cheap however many rows
        order = torch.argsort(values, descending=True)[:k]
        return cls(mean, vectors[:, order].T.numpy())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.asarray(x, dtype=np.float64) - self.mean)
        return (x @ torch.from_numpy(self.components).T).numpy()

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Projection:
        comps = np.asarray(d["components"], dtype=np.float64)
        mean = np.asarray(d["mean"], dtype=np.float64)
        return cls(mean, comps.reshape(-1, len(mean)))


@dataclass
class Table:
    """One cut-off's rows for a model: ``rows`` (user / product index, or pair number),
    the feature ``frame`` (one row each), raw embedding ``blocks`` (name -> [n, d]),
    the ``target`` (None at serving time) and ``extra`` columns (ids, baselines)."""

    cutoff: int
    rows: np.ndarray
    frame: pd.DataFrame
    blocks: dict[str, np.ndarray]
    target: np.ndarray | None
    extra: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    def project(self, projections: dict[str, Projection]) -> pd.DataFrame:
        """``frame`` plus the projected blocks as columns ``<block>_<k>``."""
        out = self.frame.reset_index(drop=True).copy()
        for name, proj in projections.items():
            z = proj(self.blocks[name]) if len(self.rows) else np.zeros((0, len(proj.components)))
            for k in range(z.shape[1]):
                out[f"{name}_{k}"] = z[:, k]
        return out

    def select(self, mask: np.ndarray) -> Table:
        return Table(self.cutoff, self.rows[mask], self.frame[mask], {k: v[mask] for k, v in self.blocks.items()},
                     None if self.target is None else self.target[mask], self.extra[mask].reset_index(drop=True))


def fit_projections(tables: list[Table], dims: int) -> dict[str, Projection]:
    """A :class:`Projection` per embedding block, fit on the rows of ``tables``."""
    if not tables or dims <= 0:
        return {}
    return {name: Projection.fit(np.concatenate([t.blocks[name] for t in tables]), dims)
            for name in tables[0].blocks}


def stack(tables: list[Table], projections: dict[str, Projection]) -> tuple[pd.DataFrame, np.ndarray]:
    """(features with projected blocks, targets) of several tables, one after the other."""
    frames = [t.project(projections) for t in tables]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
            np.concatenate([t.target for t in tables]) if tables else np.zeros(0))
