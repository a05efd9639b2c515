"""The temporal set-up the value models share: what happened (:class:`Activity`) and
when the models may look (:class:`Windows`).

**Purchases and spend.** A purchase is a ``PURCHASED`` event, its quantity the event's
``value``; spend = price x quantity. A source without purchases (Amazon reviews,
ratings) has a stand-in, the same events the fusion labels count as engagement with a
product (:mod:`fusion.ranking.examples`): every review or rating (one per user, product
and second) is a purchase of quantity 1 -- a review says the customer bought the
product, whatever the stars (the fusion labels' ``satisfied_rating`` is about liking it,
not about paying); a source with neither counts every engagement event. A product
without a price is valued at the median price of its category (else of the shop, else
1), so no purchase is worth nothing.

**Windows.** For a cut-off ``T`` and a horizon ``H``, features are computed from events
at or before ``T`` and targets from ``(T, T + H]``. The test cut-off is ``end - H``
(``end`` = the last event), validation ``end - 2H``, training ``end - 3H``, ``end - 4H``
… (``train_windows`` of them, each with history before it); serving predicts
``(end, end + H]`` from everything. So no target window overlaps the features of its own
cut-off, and the test window is never trained on. The default ``H`` is an eighth of the
time span of the purchases (from their first percentile to the last event, in whole
days, at least one day): three windows of targets then sit in the last 3/8 of the data
and the earliest training cut-off still has about half of it as history.

A horizon longer than the span, or a cut-off that leaves no whole target window (or no
history before it), is a :class:`kg.errors.ConfigError` before anything trains.

**Unknown times.** A timestamp of 0 means "unknown" (:mod:`loaders.dataset`). Such an
event has no place on the time axis -- taken as 1970 it would stretch the span, the
horizon and every window over decades and make its customer look decades silent -- so the
value models leave it out: :func:`activity_from_export` drops it and counts it
(:attr:`Activity.untimed`, said in the stage's report), and data whose events all lack a
time is a :class:`kg.errors.DataError` saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kg.errors import ConfigError, DataError
from loaders.dataset import CATEGORY_SEP

DAY = 86_400
#: engagement events besides purchases (graph relationship type, lower case)
ENGAGEMENTS = ("shown", "viewed", "clicked", "added_to_cart")
STAND_INS = ("reviewed", "rated")
LINKS = ("also_bought", "also_viewed", "bought_together")
#: the timestamp of an event whose time is unknown (:mod:`loaders.dataset`)
UNKNOWN_TIME = 0


@dataclass
class Activity:
    """Everything a value model reads, as arrays over the run's users and products.

    ``purchases``: columns ``u``, ``i`` (indices into ``users`` / ``items``), ``t`` (Unix
    seconds), ``qty``, ``spend``; sorted by ``t``. ``engagements``: ``u``, ``i``, ``t``,
    ``kind`` (index into :data:`ENGAGEMENTS`). ``links``: (src [L], dst [L]) product
    indices, both directions. ``untimed`` of the ``events`` read had an unknown time
    (timestamp 0) and are in neither frame (module docstring).
    """

    users: np.ndarray          # str [U]
    items: np.ndarray          # str [I]
    purchases: pd.DataFrame
    engagements: pd.DataFrame
    price: np.ndarray          # float [I], unknown prices filled (module docstring)
    has_price: np.ndarray      # bool [I]
    brand: np.ndarray          # int [I], -1 none
    brand_names: np.ndarray    # str [B]
    category: np.ndarray       # int [I]: the first category path, -1 none
    top_category: np.ndarray   # int [I]: its top level, -1 none
    category_names: np.ndarray
    top_names: np.ndarray
    links: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0, int), np.zeros(0, int)))
    rule: str = "purchase"     #: "purchase" | "review" | "engagement"
    untimed: int = 0           #: events left out for their unknown time (timestamp 0)
    events: int = 0            #: events read, the untimed ones included (0: not counted)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def event_times(self) -> np.ndarray:
        """Every event time (purchases and engagements)."""
        return np.concatenate([self.purchases["t"].to_numpy(), self.engagements["t"].to_numpy()])

    def last_time(self) -> int:
        """The last event's time (Unix seconds); a :class:`DataError` when no event has a known one."""
        times = self.event_times()
        if not len(times):
            raise DataError(self.no_time_message() or "value: there are no events: the value models have "
                            "nothing to learn from")
        return int(times.max())

    def no_time_message(self) -> str:
        """Why there is nothing on the time axis when every event read lacks a time ("" otherwise)."""
        if self.untimed and not len(self.purchases) and not len(self.engagements):
            return (f"value: the times of all {self.untimed:,} events are unknown (timestamp 0): the value "
                    "models need to know when things happened")
        return ""

    def untimed_note(self) -> str:
        """One sentence on the events left out for their unknown time ("" when none were)."""
        if not self.untimed:
            return ""
        of = f" of {self.events:,}" if self.events else ""
        return (f"{self.untimed:,}{of} events have no time (timestamp 0 = unknown): not used by the value "
                "models.")

    def before(self, cutoff: int) -> Activity:
        """The activity at or before ``cutoff`` (same users and products)."""
        p, e = self.purchases, self.engagements
        return Activity(self.users, self.items, p[p["t"] <= cutoff], e[e["t"] <= cutoff], self.price,
                        self.has_price, self.brand, self.brand_names, self.category, self.top_category,
                        self.category_names, self.top_names, self.links, self.rule, self.untimed, self.events)

    def window(self, start: int, stop: int) -> pd.DataFrame:
        """Purchases in ``(start, stop]``."""
        t = self.purchases["t"]
        return self.purchases[(t > start) & (t <= stop)]


def _codes(values) -> tuple[np.ndarray, np.ndarray]:
    """(codes [n] with -1 for "", sorted distinct non-empty names)."""
    arr = pd.Series(values, dtype=object).fillna("").astype(str)
    names = np.sort(arr[arr != ""].unique())
    codes = pd.Index(names).get_indexer(arr) if len(names) else np.full(len(arr), -1)
    return np.asarray(codes, dtype=np.int64), names.astype(object)


def _edges(data, rel: str) -> pd.DataFrame | None:
    key = ("user", rel, "product")
    if key not in data.edge_types:
        return None
    s = data[key]
    return pd.DataFrame({"u": s.edge_index[0].numpy(), "i": s.edge_index[1].numpy(),
                         "t": s.time.numpy().astype(np.int64), "v": s.value.numpy().astype(np.float64)})


def timed(frame: pd.DataFrame) -> pd.DataFrame:
    """The events of ``frame`` (column ``t``) whose time is known (not :data:`UNKNOWN_TIME`)."""
    return frame[frame["t"] != UNKNOWN_TIME]


def fill_prices(price: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Unknown (NaN or negative) prices -> the median known price of the category, else of the shop, else 1."""
    price = np.asarray(price, dtype=np.float64).copy()
    known = np.isfinite(price) & (price >= 0)
    frame = pd.DataFrame({"c": category, "p": np.where(known, price, np.nan)})
    by_cat = frame.groupby("c")["p"].transform("median").to_numpy()
    shop = float(np.nanmedian(price[known])) if known.any() else 1.0
    return np.where(known, price, np.where(np.isfinite(by_cat), by_cat, shop))


def activity_from_export(export, items: pd.DataFrame) -> Activity:
    """:class:`Activity` from a graph export (:class:`kg.export.GraphExport`) and the
    catalogue's ``items`` table (price, brand, categories)."""
    data = export.data
    users = np.asarray(export.id_maps["user"], dtype=object)
    products = np.asarray(export.id_maps["product"], dtype=object)
    rows = items.set_index("item_id").reindex(pd.Index(products, dtype=object))
    first = [c[0] if isinstance(c, (list, tuple, np.ndarray)) and len(c) else "" for c in rows["categories"]]
    category, category_names = _codes(first)
    top, top_names = _codes([str(c).split(CATEGORY_SEP)[0].strip() if c else "" for c in first])
    brand, brand_names = _codes(rows["brand"].to_numpy())
    raw_price = pd.to_numeric(rows["price"], errors="coerce").to_numpy(dtype=np.float64)
    price = fill_prices(raw_price, category)
    bought = _edges(data, "purchased")
    frames = [e.assign(kind=k) for k, e in ((k, _edges(data, r)) for k, r in enumerate(ENGAGEMENTS))
              if e is not None and len(e)]
    if bought is not None and len(bought):
        rule, buys = "purchase", bought
        buys["v"] = np.where(np.isfinite(buys["v"]) & (buys["v"] > 0), buys["v"], 1.0)
    else:
        stand = [e for e in (_edges(data, r) for r in STAND_INS) if e is not None and len(e)]
        rule = "review" if stand else "engagement"
        if not stand:
            stand = frames
        if not stand:
            raise DataError("the graph has no purchases, reviews, ratings or other user-product events: "
                            "there is no spend to model")
        buys = pd.concat(stand).assign(v=1.0)
    read = ([] if rule == "engagement" else [buys]) + frames  # every event read once
    events = sum(len(f) for f in read)
    untimed = sum(int((f["t"] == UNKNOWN_TIME).sum()) for f in read)
    buys, frames = timed(buys), [timed(f) for f in frames]
    if rule != "purchase":  # one stand-in purchase per user, product and second
        buys = buys.drop_duplicates(["u", "i", "t"])
    buys = buys.sort_values(["t", "u", "i"], kind="stable").reset_index(drop=True)
    purchases = pd.DataFrame({"u": buys["u"].to_numpy(), "i": buys["i"].to_numpy(), "t": buys["t"].to_numpy(),
                              "qty": buys["v"].to_numpy()})
    purchases["spend"] = purchases["qty"] * price[purchases["i"].to_numpy()]
    frames = [f for f in frames if len(f)]
    engagements = (pd.concat(frames)[["u", "i", "t", "kind"]].sort_values("t", kind="stable").reset_index(drop=True)
                   if frames else pd.DataFrame({"u": [], "i": [], "t": [], "kind": []}, dtype=np.int64))
    src, dst = [], []
    for rel in LINKS:
        key = ("product", rel, "product")
        if key in data.edge_types:
            ei = data[key].edge_index.numpy()
            src += [ei[0], ei[1]]
            dst += [ei[1], ei[0]]
    links = (np.concatenate(src), np.concatenate(dst)) if src else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Activity(users, products, purchases, engagements, price, np.isfinite(raw_price) & (raw_price >= 0),
                    brand, brand_names, category, top, category_names, top_names, links, rule, untimed, events)


@dataclass(frozen=True)
class Windows:
    """Cut-offs (Unix seconds) and the horizon (seconds) of one value run."""

    horizon: int
    train: tuple[int, ...]   #: training cut-offs, oldest first
    valid: int
    test: int
    serve: int               #: the last event: serving predicts (serve, serve + horizon]
    start: int               #: the first event

    @property
    def horizon_days(self) -> float:
        return self.horizon / DAY

    def to_dict(self) -> dict:
        return {"horizon_days": self.horizon_days, "train": list(self.train), "valid": self.valid,
                "test": self.test, "serve": self.serve, "start": self.start}


def default_horizon(purchase_times: np.ndarray, end: int) -> int:
    """An eighth of the span from the purchases' first percentile to ``end``, in whole
    days (at least one); seconds."""
    t = np.asarray(purchase_times, dtype=np.float64)
    if not len(t):
        raise DataError("no purchases: the value models have nothing to learn from")
    span = max(float(end) - float(np.quantile(t, 0.01)), 0.0)
    return int(max(1, round(span / 8 / DAY))) * DAY


def make_windows(activity: Activity, horizon_days: float | None = None, test_cutoff: int | None = None,
                 train_windows: int = 3, min_history_days: float = 0.0) -> Windows:
    """The cut-offs of a run (module docstring); a :class:`ConfigError` naming the
    problem when the horizon or a cut-off does not fit the data."""
    times = activity.event_times()
    if activity.no_time_message():
        raise DataError(activity.no_time_message())
    if not len(activity.purchases):
        known, note = (" with a known time", f" ({activity.untimed_note()})") if activity.untimed else ("", "")
        raise DataError(f"no purchases{known}: the value models have nothing to learn from{note}")
    start, end = int(times.min()), int(times.max())
    span = end - start
    horizon = int(round(horizon_days * DAY)) if horizon_days is not None else default_horizon(
        activity.purchases["t"].to_numpy(), end)
    days = f"{span / DAY:.1f} days"
    if horizon > span:
        raise ConfigError(f"value: horizon_days={horizon / DAY:g} is longer than the data's time span ({days}, "
                          f"{_date(start)} to {_date(end)})")
    test = int(test_cutoff) if test_cutoff is not None else end - horizon
    if test >= end:
        raise ConfigError(f"value: test_cutoff {_date(test)} leaves no target window: the last event is {_date(end)}")
    if test + horizon > end:
        raise ConfigError(f"value: test_cutoff {_date(test)} leaves {(end - test) / DAY:.1f} days of data after it, "
                          f"less than the horizon of {horizon / DAY:g} days")
    valid = test - horizon
    need = min_history_days * DAY
    if valid - need <= start:
        raise ConfigError(f"value: with a horizon of {horizon / DAY:g} days the validation cut-off {_date(valid)} has "
                          f"no history before it (the data spans {days}); choose horizon_days <= "
                          f"{max((test - start) / 2 / DAY, 0):.0f}")
    train = [valid - k * horizon for k in range(1, train_windows + 1)]
    train = [c for c in train if c - need > start and (activity.purchases["t"] <= c).any()]
    if not train:
        raise ConfigError(f"value: with a horizon of {horizon / DAY:g} days no training cut-off has purchases "
                          f"before it (the data spans {days}); choose a shorter horizon_days")
    return Windows(horizon, tuple(sorted(train)), valid, test, end, start)


def _date(t: int) -> str:
    return pd.Timestamp(int(t), unit="s").strftime("%Y-%m-%d")
