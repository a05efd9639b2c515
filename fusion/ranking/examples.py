"""Training examples for the fusion objectives, derived from the exported graph.

Every example is a (user, product) pair at a time with four labels: ``click``,
``conversion``, ``value`` (order value) and the part it belongs to (train / valid /
test). How the labels are derived depends on what events the source has:

**Sources with impressions** (``SHOWN`` relationships, e.g. the synthetic generator;
any shop that logs what it displayed):

* one example per impression ``(u, i, t)``;
* ``click = 1`` when a ``CLICKED`` (u, i) follows within ``funnel_window`` seconds and
  the impression is the latest one of (u, i) before that click (each click counts for
  one impression);
* ``conversion = 1`` when a ``PURCHASED`` (u, i) follows a counted click within
  ``funnel_window`` seconds (the latest click before it); ``value = price x quantity``
  (the purchase's ``value`` is the quantity; an unknown price gives value 0);
* clicks and purchases that follow no impression/click are counted in
  :attr:`ExampleSet.counts` (``unattributed_clicks`` / ``unattributed_purchases``), never
  dropped silently;
* plus ``unshown_negatives`` per converted example: products the user never interacted
  with, sampled uniformly, with all labels 0 (so the scores also rank the items the shop
  never displayed).

**Sources without impressions** (Amazon reviews, RecBole/KGAT, ratings, purchase logs):

* one positive example per distinct (u, i) pair with any engagement event
  (viewed / clicked / added to cart / purchased / rated / reviewed), at its earliest
  time, ``click = 1`` ("engaged");
* ``conversion = 1`` when the pair has a ``PURCHASED`` event; when the source has no
  purchases at all (review/rating sources), when its best rating is >= ``satisfied_rating``
  (a satisfied purchase); a source with neither gets conversion = click;
* ``value = price x quantity`` of converted pairs (quantity 1 for ratings);
* ``negatives_per_positive`` sampled negatives per positive pair: products the user never
  interacted with, uniformly, all labels 0, at the positive's time.

**Parts** follow the graph encoder's split, so no stage sees the other's test data:
an example whose pair is a valid/test pair of the GNN split is valid/test; so is any
later example of that user (strictly after the user's first valid/test example);
sampled negatives take their positive's part.

**Search relevance** examples come from judgements (``(:Query)-[:RELEVANT {grade}]->``):
target ``grade / max_grade``; queries are split into train / valid / test by a seeded hash
of the query text (:func:`query_parts`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from kg.config import checked_fields
from kg.errors import DataError

ENGAGEMENT_TYPES = ("viewed", "clicked", "added_to_cart", "purchased", "rated", "reviewed")
RATING_TYPES = ("rated", "reviewed")


@dataclass(frozen=True)
class ExampleConfig:
    """How examples are derived (see the module docstring)."""

    funnel_window: int = 86_400        #: seconds from impression to click and click to purchase
    unshown_negatives: int = 30        #: impression sources: sampled negatives per conversion
    negatives_per_positive: int = 4    #: sources without impressions: sampled negatives per positive
    satisfied_rating: float = 4.0      #: rating sources: conversion = best rating >= this
    query_valid_fraction: float = 0.1
    query_test_fraction: float = 0.2
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ExampleConfig:
        return cls(**checked_fields(cls, values))


@dataclass
class ExampleSet:
    """Examples as parallel arrays (length N); ``part``: 0 train, 1 valid, 2 test."""

    user: np.ndarray        # int64 [N] user index (export id map)
    item: np.ndarray        # int64 [N] product index
    time: np.ndarray        # int64 [N] Unix seconds
    click: np.ndarray       # float32 [N]
    conversion: np.ndarray  # float32 [N] (implies click)
    value: np.ndarray       # float32 [N] order value of converted examples, else 0
    part: np.ndarray        # int8 [N]
    kind: str               # "impressions" | "implicit"
    sampled: np.ndarray | None = None  # bool [N]: a sampled negative (not a logged event)
    counts: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user)

    def select(self, part: int) -> ExampleSet:
        return self.select_mask(self.part == part)

    def select_mask(self, m: np.ndarray) -> ExampleSet:
        return ExampleSet(self.user[m], self.item[m], self.time[m], self.click[m], self.conversion[m],
                          self.value[m], self.part[m], self.kind, self.sampled[m], {})

    def scored(self) -> np.ndarray:
        """Examples the AUCs are measured on: the logged impressions when the source has
        them (CTR/CVR are conditional on being shown), else every example."""
        return ~self.sampled if self.kind == "impressions" else np.ones(len(self), bool)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, p in (("train", 0), ("valid", 1), ("test", 2)):
            m = self.part == p
            out[name] = {"examples": int(m.sum()), "clicks": int(self.click[m].sum()),
                         "conversions": int(self.conversion[m].sum())}
        return out


def _edges(data, rel: str):
    """(users, items, time, value) of one interaction type, or None if absent."""
    key = ("user", rel, "product")
    if key not in data.edge_types:
        return None
    store = data[key]
    return (store.edge_index[0].numpy(), store.edge_index[1].numpy(), store.time.numpy(),
            store.value.numpy().astype(np.float64))


def _frame(edges) -> pd.DataFrame:
    u, i, t, v = edges
    return pd.DataFrame({"u": u, "i": i, "t": t, "v": v}).sort_values("t", kind="stable")


def _attribute(later: pd.DataFrame, earlier: pd.DataFrame, window: int) -> pd.DataFrame:
    """For each ``later`` event, the row number (column ``row``) of the latest ``earlier``
    event of the same pair at or before it within ``window`` seconds (-1 if none)."""
    earlier = earlier.assign(row=np.arange(len(earlier)))
    merged = pd.merge_asof(later.reset_index(drop=True), earlier[["u", "i", "t", "row"]], on="t",
                           by=["u", "i"], direction="backward", tolerance=window)
    merged["row"] = merged["row"].fillna(-1).astype(np.int64)
    return merged


def _pair_keys(users, items, num_items: int) -> np.ndarray:
    return np.asarray(users, dtype=np.int64) * num_items + np.asarray(items, dtype=np.int64)


def sample_unseen(users: np.ndarray, seen_keys: np.ndarray, num_items: int, per: int,
                  rng: np.random.Generator, draw=None, tries: int = 20
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per`` items per entry of ``users`` that the user has no pair with in ``seen_keys``
    (keys of :func:`_pair_keys`), drawn by ``draw(users) -> items`` (default: uniform over
    all items); collisions are redrawn up to ``tries`` times. Returns (users, items, ok): ``ok``
    is False where a collision remained (rare unless a user saw most of what ``draw``
    offers)."""
    users = np.repeat(users, per)
    if draw is None:
        def draw(u):
            return rng.integers(0, num_items, len(u))
    items = draw(users)
    seen = np.sort(seen_keys)

    def collides() -> np.ndarray:
        keys = _pair_keys(users, items, num_items)
        pos = np.searchsorted(seen, keys).clip(0, max(len(seen) - 1, 0))
        return seen[pos] == keys if len(seen) else np.zeros(len(keys), bool)

    for _ in range(tries):  # resample the collisions
        bad = collides()
        if not bad.any():
            break
        items[bad] = draw(users[bad])
    return users, items, ~collides()


def _parts(users, items, time, split, num_items: int) -> np.ndarray:
    """Part of each example (module docstring): the pair's GNN part, and every later
    example of a user from the user's first valid (test) example on."""
    keys = _pair_keys(users, items, num_items)
    part = np.zeros(len(users), dtype=np.int8)
    for code, pairs in ((1, split.valid), (2, split.test)):
        held = np.isin(keys, _pair_keys(pairs[0], pairs[1], num_items))
        if not held.any():
            continue
        cut = np.full(split.num_users, np.iinfo(np.int64).max)
        np.minimum.at(cut, users[held], time[held])
        part[(time > cut[users]) & (part < code)] = code  # strictly later: ties stay (day-granular sources)
        part[held] = code
    return part


def build_examples(data, split, prices: np.ndarray, config: ExampleConfig | None = None) -> ExampleSet:
    """Examples from an exported graph (``GraphExport.data``), its GNN ``split`` and the
    product ``prices`` (float [num_products], NaN = unknown)."""
    config = config or ExampleConfig()
    rng = np.random.default_rng(config.seed)
    num_items = split.num_items
    price = np.nan_to_num(np.asarray(prices, dtype=np.float64), nan=0.0)
    engaged = [e for e in (_edges(data, r) for r in ENGAGEMENT_TYPES + ("shown",)) if e is not None]
    if not engaged:
        raise DataError("the graph has no user-product interactions to derive examples from")
    seen_keys = np.unique(np.concatenate([_pair_keys(e[0], e[1], num_items) for e in engaged]))
    shown = _edges(data, "shown")
    counts: dict[str, object] = {}
    if shown is not None:
        imp = _frame(shown)
        n = len(imp)
        click = np.zeros(n, np.float32)
        conv = np.zeros(n, np.float32)
        value = np.zeros(n, np.float32)
        clicks = _edges(data, "clicked")
        if clicks is not None:
            c = _attribute(_frame(clicks), imp, config.funnel_window)
            hit = c["row"].to_numpy()
            click[hit[hit >= 0]] = 1
            counts["clicks"] = len(c)
            counts["unattributed_clicks"] = int((hit < 0).sum())
            buys = _edges(data, "purchased")
            if buys is not None:
                c = c[hit >= 0].assign(imp_row=hit[hit >= 0])
                b = _attribute(_frame(buys), c[["u", "i", "t", "imp_row"]], config.funnel_window)
                ok = b["row"].to_numpy() >= 0
                rows = c["imp_row"].to_numpy()[b["row"].to_numpy()[ok]]
                conv[rows] = 1
                np.add.at(value, rows, (b["v"].to_numpy()[ok] * price[b["i"].to_numpy()[ok]]).astype(np.float32))
                counts["purchases"] = len(b)
                counts["unattributed_purchases"] = int((~ok).sum())
        users, items, time = imp["u"].to_numpy(), imp["i"].to_numpy(), imp["t"].to_numpy()
        counts["impressions"] = n
        kind, per, base = "impressions", config.unshown_negatives, conv > 0
    else:
        pos = pd.concat([_frame(e) for e in engaged]).sort_values("t", kind="stable")
        pos = pos.drop_duplicates(["u", "i"], keep="first")
        users, items, time = pos["u"].to_numpy(), pos["i"].to_numpy(), pos["t"].to_numpy()
        keys = _pair_keys(users, items, num_items)
        click = np.ones(len(users), np.float32)
        buys = _edges(data, "purchased")
        ratings = [e for e in (_edges(data, r) for r in RATING_TYPES) if e is not None]
        qty = np.zeros(len(users))
        if buys is not None:
            b = pd.DataFrame({"k": _pair_keys(buys[0], buys[1], num_items), "v": buys[3]}).groupby("k")["v"].sum()
            qty = b.reindex(keys).fillna(0).to_numpy()
            counts["rule"] = "purchase"
        elif ratings:
            r = pd.concat([pd.DataFrame({"k": _pair_keys(e[0], e[1], num_items), "v": e[3]}) for e in ratings])
            best = r.groupby("k")["v"].max().reindex(keys).fillna(0).to_numpy()
            qty = (best >= config.satisfied_rating).astype(float)
            counts["rule"] = f"rating>={config.satisfied_rating:g}"
        else:
            qty = np.ones(len(users))
            counts["rule"] = "engagement"
        conv = (qty > 0).astype(np.float32)
        value = (qty * price[items]).astype(np.float32)
        counts["positives"] = len(users)
        kind, per, base = "implicit", config.negatives_per_positive, np.ones(len(users), bool)
    part = _parts(users, items, time, split, num_items)
    neg_src = np.flatnonzero(base)
    neg_u, neg_i, _ = sample_unseen(users[neg_src], seen_keys, num_items, per, rng) if per else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), None)
    m = len(neg_u)
    counts["sampled_negatives"] = m
    out = ExampleSet(
        np.concatenate([users, neg_u]).astype(np.int64), np.concatenate([items, neg_i]).astype(np.int64),
        np.concatenate([time, np.repeat(time[neg_src], per)]).astype(np.int64),
        np.concatenate([click, np.zeros(m, np.float32)]), np.concatenate([conv, np.zeros(m, np.float32)]),
        np.concatenate([value, np.zeros(m, np.float32)]),
        np.concatenate([part, np.repeat(part[neg_src], per)]).astype(np.int8), kind,
        np.concatenate([np.zeros(len(users), bool), np.ones(m, bool)]), counts)
    return out


def query_parts(queries, valid_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """0 train / 1 valid / 2 test per query text, from a seeded hash (stable across runs)."""
    def u01(text: str) -> float:
        h = hashlib.sha1(f"{seed}:{text}".encode("utf-8")).digest()
        return int.from_bytes(h[:8], "big") / 2 ** 64

    x = np.array([u01(str(q)) for q in queries])
    return np.where(x < test_fraction, 2, np.where(x < test_fraction + valid_fraction, 1, 0)).astype(np.int8)


@dataclass
class RelevanceSet:
    """Judged (query, product) pairs: ``query`` indexes :attr:`queries`."""

    queries: np.ndarray     # str [Q] distinct query texts
    query: np.ndarray       # int64 [N]
    item: np.ndarray        # int64 [N] product index
    grade: np.ndarray       # float32 [N] graded relevance
    target: np.ndarray      # float32 [N] grade / max grade, in [0, 1]
    query_part: np.ndarray  # int8 [Q]

    def __len__(self) -> int:
        return len(self.query)


def build_relevance(judgements: pd.DataFrame, item_index, config: ExampleConfig | None = None) -> RelevanceSet:
    """Relevance examples from a ``judgements`` table; ``item_index(ids)`` gives product
    indices (-1 unknown: such rows raise, naming the item)."""
    config = config or ExampleConfig()
    items = np.asarray(item_index(judgements["item_id"].to_numpy(dtype=object)), dtype=np.int64)
    if (items < 0).any():
        bad = judgements["item_id"].to_numpy()[items < 0][0]
        raise DataError(f"judgements: item_id {bad!r} is not a product of the graph")
    codes, queries = pd.factorize(judgements["query"].astype(str), sort=True)
    grade = judgements["relevance"].to_numpy(dtype=np.float32)
    top = max(float(grade.max()), 1.0) if len(grade) else 1.0
    return RelevanceSet(np.asarray(queries, dtype=object), codes.astype(np.int64), items, grade,
                        grade / top, query_parts(queries, config.query_valid_fraction,
                                                 config.query_test_fraction, config.seed))
