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

**Parts** follow the graph encoder's split, so no stage sees the other's test data
(:class:`Periods`): an event whose pair is a valid/test pair of the GNN split belongs to
the validation/test period; so does any later event of that user (strictly after the
user's first valid/test pair, timed as the split times it: by its first positive
event). An example's part is its event's period,
and **nothing of a later period changes an earlier period's examples**: clicks and
purchases count only for an impression (implicit sources: a pair) of their own period;
sampled negatives take their positive's part and are drawn per part, from that part's
own random stream, avoiding the pairs the user has events with up to that part (so a
training negative may be a product the user buys later, as it would be on the day). A draw
that still hits such a pair after :func:`sample_unseen`'s redraws is dropped, never kept with
labels 0: a user who engaged with (nearly) every product -- a shop of a few products -- gets
fewer negatives or none (counted in ``negatives_without_unseen_product``).

**Search relevance** examples come from judgements (``(:Query)-[:RELEVANT {grade}]->``):
target ``grade / max_grade``; queries are split into train / valid / test by a seeded hash
of the query text (:func:`query_parts`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from kg.arrays import contains, distinct
from kg.config import checked_fields
from kg.errors import DataError

ENGAGEMENT_TYPES = ("viewed", "clicked", "added_to_cart", "purchased", "rated", "reviewed")
RATING_TYPES = ("rated", "reviewed")


@dataclass(frozen=True)
class ExampleConfig:
    """How examples are derived (see the module docstring)."""

    funnel_window: int = 86_400        #: seconds from impression to click and click to purchase
    unshown_negatives: int = 30        #: impression sources: sampled negatives per conversion (at most)
    negatives_per_positive: int = 4    #: sources without impressions: sampled negatives per positive (at most)
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
    event of the same pair and period (column ``p``) at or before it within ``window``
    seconds (-1 if none)."""
    earlier = earlier.assign(row=np.arange(len(earlier)))
    merged = pd.merge_asof(later.reset_index(drop=True), earlier[["u", "i", "p", "t", "row"]], on="t",
                           by=["u", "i", "p"], direction="backward", tolerance=window)
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
        return contains(_pair_keys(users, items, num_items), seen, within_sorted=True)

    for _ in range(tries):  # resample the collisions
        bad = collides()
        if not bad.any():
            break
        items[bad] = draw(users[bad])
    return users, items, ~collides()


@dataclass(frozen=True)
class Periods:
    """Each user's held-out periods, from the GNN split: an event belongs to the
    validation (test) period when its pair is a valid (test) pair of the split, or when
    it is strictly later than the user's first valid (test) pair -- the time the split
    knows that pair by, its first positive event (ties stay earlier: day-granular
    sources). :meth:`part` gives 0 train, 1 valid, 2 test."""

    num_items: int
    held: tuple[np.ndarray, np.ndarray]  # sorted pair keys of the valid, test pairs
    cut: tuple[np.ndarray, np.ndarray]   # int64 [U]: time of the first valid, test pair (max int: none)

    def part(self, users, items, time) -> np.ndarray:
        """int8 [N] period of the events (users [N], items [N], time [N])."""
        users, time = np.asarray(users, dtype=np.int64), np.asarray(time, dtype=np.int64)
        keys = _pair_keys(users, items, self.num_items)
        part = np.zeros(len(users), dtype=np.int8)
        for code, held, cut in ((1, self.held[0], self.cut[0]), (2, self.held[1], self.cut[1])):
            part[(time > cut[users]) | contains(keys, held, within_sorted=True)] = code
        return part


def held_out_periods(data, split, positive_types: tuple[str, ...] | None = None) -> Periods:
    """The :class:`Periods` of an exported graph (``GraphExport.data``) under ``split``.
    A held-out pair's time is its first event of the split's ``positive_types``
    (:func:`kg.split.positives`), or, for a pair without one, its first event of any type."""
    from kg.split import positives

    n = split.num_items
    events = [e for e in (_edges(data, r) for r in ENGAGEMENT_TYPES + ("shown",)) if e is not None]
    try:
        pu, pi, pt, _ = positives(data, positive_types)
        firsts = [(_pair_keys(pu, pi, n), np.asarray(pt, dtype=np.int64))]
    except DataError:  # no events of those types: every pair by its first event
        firsts = []
    firsts.append((np.concatenate([_pair_keys(e[0], e[1], n) for e in events]) if events else np.zeros(0, np.int64),
                   np.concatenate([e[2] for e in events]).astype(np.int64) if events else np.zeros(0, np.int64)))
    helds, cuts = [], []
    for pairs in (split.valid, split.test):
        held = distinct(_pair_keys(pairs[0], pairs[1], n))
        when = np.full(len(held), np.iinfo(np.int64).max)
        for keys, time in firsts:  # positive time first; any-type time for pairs still without one
            m = contains(keys, held, within_sorted=True)
            first = pd.Series(time[m]).groupby(keys[m]).min()
            pos = np.searchsorted(held, first.index.to_numpy())
            unset = when[pos] == np.iinfo(np.int64).max
            when[pos[unset]] = first.to_numpy()[unset]
        cut = np.full(split.num_users, np.iinfo(np.int64).max)
        np.minimum.at(cut, held // n, when)
        helds.append(held)
        cuts.append(cut)
    return Periods(n, (helds[0], helds[1]), (cuts[0], cuts[1]))


def product_prices(items: pd.DataFrame, products) -> np.ndarray:
    """The catalogue's ``price`` per product in the order of ``products`` (the graph's
    product ids), float, NaN where the catalogue has no price or no row: what
    :func:`build_examples` takes."""
    return items.set_index("item_id")["price"].reindex(pd.Index(products, dtype=object)).to_numpy(dtype=np.float64)


def build_examples(data, split, prices: np.ndarray, config: ExampleConfig | None = None,
                   positive_types: tuple[str, ...] | None = None) -> ExampleSet:
    """Examples from an exported graph (``GraphExport.data``), its GNN ``split`` (made
    from ``positive_types``, :class:`Periods`) and the product ``prices`` (float
    [num_products], NaN = unknown)."""
    config = config or ExampleConfig()
    num_items = split.num_items
    price = np.nan_to_num(np.asarray(prices, dtype=np.float64), nan=0.0)
    engaged = [e for e in (_edges(data, r) for r in ENGAGEMENT_TYPES + ("shown",)) if e is not None]
    if not engaged:
        raise DataError("the graph has no user-product interactions to derive examples from")
    periods = held_out_periods(data, split, positive_types)

    def frame(edges) -> pd.DataFrame:  # events sorted by time, with their period
        f = _frame(edges)
        return f.assign(p=periods.part(f["u"].to_numpy(), f["i"].to_numpy(), f["t"].to_numpy()))

    shown = _edges(data, "shown")
    counts: dict[str, object] = {}
    if shown is not None:
        imp = frame(shown)
        n = len(imp)
        click = np.zeros(n, np.float32)
        conv = np.zeros(n, np.float32)
        value = np.zeros(n, np.float32)
        clicks = _edges(data, "clicked")
        if clicks is not None:
            c = _attribute(frame(clicks), imp, config.funnel_window)
            hit = c["row"].to_numpy()
            click[hit[hit >= 0]] = 1
            counts["clicks"] = len(c)
            counts["unattributed_clicks"] = int((hit < 0).sum())
            buys = _edges(data, "purchased")
            if buys is not None:
                c = c[hit >= 0].assign(imp_row=hit[hit >= 0])
                b = _attribute(frame(buys), c[["u", "i", "p", "t", "imp_row"]], config.funnel_window)
                ok = b["row"].to_numpy() >= 0
                rows = c["imp_row"].to_numpy()[b["row"].to_numpy()[ok]]
                conv[rows] = 1
                np.add.at(value, rows, (b["v"].to_numpy()[ok] * price[b["i"].to_numpy()[ok]]).astype(np.float32))
                counts["purchases"] = len(b)
                counts["unattributed_purchases"] = int((~ok).sum())
        users, items, time, part = (imp[k].to_numpy() for k in ("u", "i", "t", "p"))
        counts["impressions"] = n
        kind, per, base = "impressions", config.unshown_negatives, conv > 0
    else:
        pos = pd.concat([frame(e) for e in engaged]).sort_values("t", kind="stable")
        pos = pos.drop_duplicates(["u", "i"], keep="first")
        users, items, time, part = (pos[k].to_numpy() for k in ("u", "i", "t", "p"))
        # labels come from events of the example's own period (a later purchase of a pair
        # first seen in training is no training label): keys of (pair, period)
        keys = _pair_keys(users, items, num_items) * 3 + part

        def keyed(e) -> pd.DataFrame:
            f = frame(e)
            return pd.DataFrame({"k": _pair_keys(f["u"], f["i"], num_items) * 3 + f["p"].to_numpy(), "v": f["v"]})

        click = np.ones(len(users), np.float32)
        buys = _edges(data, "purchased")
        ratings = [e for e in (_edges(data, r) for r in RATING_TYPES) if e is not None]
        qty = np.zeros(len(users))
        if buys is not None:
            qty = keyed(buys).groupby("k")["v"].sum().reindex(keys).fillna(0).to_numpy()
            counts["rule"] = "purchase"
        elif ratings:
            r = pd.concat([keyed(e) for e in ratings])
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
    # sampled negatives, period by period: a period's negatives avoid the pairs the user
    # has events with up to that period, drawn from that period's own random stream -- so
    # nothing of a later period changes an earlier period's examples
    event_keys = [(_pair_keys(e[0], e[1], num_items), periods.part(e[0], e[1], e[2])) for e in engaged]
    # (``ok``): a draw still on an engaged pair after the redraws is dropped, never kept with labels
    # 0 -- a user who engaged with (nearly) every product (a shop of a few products) gets fewer or none
    neg = [], [], []  # (source rows, users, items)
    dropped = 0
    for code in (0, 1, 2):
        src = np.flatnonzero(base & (part == code))
        if not per or not len(src):
            continue
        seen = distinct(np.concatenate([k[p <= code] for k, p in event_keys]))
        u, i, ok = sample_unseen(users[src], seen, num_items, per, np.random.default_rng([config.seed, code]))
        neg[0].append(np.repeat(src, per)[ok])
        neg[1].append(u[ok])
        neg[2].append(i[ok])
        dropped += int((~ok).sum())
    src, neg_u, neg_i = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in neg)
    m = len(neg_u)
    counts["sampled_negatives"] = m
    counts["negatives_without_unseen_product"] = dropped
    out = ExampleSet(
        np.concatenate([users, neg_u]).astype(np.int64), np.concatenate([items, neg_i]).astype(np.int64),
        np.concatenate([time, time[src]]).astype(np.int64),
        np.concatenate([click, np.zeros(m, np.float32)]), np.concatenate([conv, np.zeros(m, np.float32)]),
        np.concatenate([value, np.zeros(m, np.float32)]),
        np.concatenate([part, part[src]]).astype(np.int8), kind,
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
