"""The value stage's tables as serving reads them, and the typed answers of the Engine's
value methods (:meth:`fusion.engine.Engine.customer_value`, ``product_potential``,
``brand_loyalty``, ``value_table``). No training code: this is what serving imports.

A run's value tables describe the horizon after the data's last event when the value
stage ran (``as_of``). ``kgrec update`` writes fresh ones into each run version it makes
(:func:`fusion.value.train.refresh_value`: the trained value models applied to the graph
as it is then, no training), so the users and products it adds get their own values. Of a
version's tables and the trained run's, serving reads the later ones (``as_of``; the
trained run's on a tie: a value stage retrained after an update wins until the next
update). Users and products that arrived after ``as_of`` are answered by the cold-start
path -- a new user gets the value of a new customer, a new product the mean potential of
the products that had not sold yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kg.errors import InvalidRequestError, RunFolderError, UnknownIdError
from kg.run_dir import RAN_WITH, RunDir, RunVersion

BY = ("ltv", "potential", "loyalty")


@dataclass(frozen=True)
class CustomerValue:
    """A customer's expected value over the next ``horizon_days`` after ``as_of``:
    ``ltv`` (expected spend, currency), ``p_active`` (P(any purchase); ``churn_risk`` =
    1 - p_active); ``cold_start`` when the user had no history (a new customer's value)."""

    user_id: str
    ltv: float
    p_active: float
    horizon_days: float
    as_of: str
    cold_start: bool = False

    @property
    def churn_risk(self) -> float:
        return 1.0 - self.p_active


@dataclass(frozen=True)
class ProductPotential:
    """A product's expected sales over the next ``horizon_days``: ``units``, ``value`` (units
    x price), ``p_sell`` (P(at least one sale)); ``new``: it had not sold before ``as_of``;
    ``cold_start``: the product arrived after the value stage ran (the mean of new ones)."""

    item_id: str
    units: float
    value: float
    p_sell: float
    new: bool
    horizon_days: float
    as_of: str
    cold_start: bool = False


@dataclass(frozen=True)
class BrandLoyalty:
    """P(the user's next purchase in the brand's category is this brand again), and the
    brand's past share of their purchases there."""

    brand: str
    p_loyal: float
    past_share: float


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


#: what each value model's cap bounds (``summary.json``'s ``bounds``, :func:`capped_note`)
CAPPED_WHAT = {"ltv": ("customers' expected spend", "the most one customer spent in one horizon of training"),
               "potential": ("products' expected units", "the most one product sold in one horizon of training"),
               "potential_new": ("new products' expected units", "the most one new product sold in one horizon "
                                                                 "of training")}


def capped_note(bounds: dict) -> str:
    """One sentence naming, per value model, how many served values were cut at its cap
    (:meth:`fusion.value.ziln.ZILN.mean`), "" when none was: such a value says "at least
    this much" -- inputs far outside anything the model was trained on (a burst of events
    long after the training windows), where retraining the value stage helps."""
    parts = [f"{int(b['capped']):,} of {int(b['rows']):,} {CAPPED_WHAT[name][0]} at {float(b['cap']):,.2f} "
             f"({CAPPED_WHAT[name][1]})"
             for name, b in bounds.items() if name in CAPPED_WHAT and int(b.get("capped") or 0) and b.get("cap")]
    return ("note: values at their model's cap: " + "; ".join(parts) + " -- retrain the value stage "
            "(kgrec train --stage value) when the data has moved far from the training windows") if parts else ""


class ValueTables:
    """The ``value/`` tables of a run (or run version), read once."""

    def __init__(self, users: pd.DataFrame, items: pd.DataFrame, pairs: pd.DataFrame, brands: pd.DataFrame,
                 summary: dict) -> None:
        self.users = users.reset_index(drop=True)
        self.items = items.reset_index(drop=True)
        self.pairs = pairs.reset_index(drop=True)
        self.brands = brands.reset_index(drop=True)
        self.summary = summary
        self.horizon_days = float(summary["horizon_days"])
        self.as_of = pd.Timestamp(int(summary["as_of"]), unit="s").strftime("%Y-%m-%d")
        self.cold = summary.get("cold_start", {})
        #: the events the value models left out for their unknown time, in a sentence ("" none)
        self.untimed_note = str(summary.get("report", {}).get("untimed", {}).get("note", ""))
        #: the values served at their model's cap (fusion.value.train's ``bounds``), in a sentence ("" none)
        self.capped_note = capped_note(summary.get("bounds", {}))
        self.loyalty_floor = float(summary.get("loyalty_floor", 0.05))
        self.user_pos = pd.Index(self.users["user_id"].astype(str))
        self.item_pos = pd.Index(self.items["item_id"].astype(str))
        new = self.items[self.items["new"]]
        pool = new if len(new) else self.items
        self.new_product = {k: float(pool[k].mean()) if len(pool) else 0.0 for k in ("units", "value", "p_sell")}

    @classmethod
    def load(cls, run: RunDir) -> ValueTables:
        """Read ``value/`` of ``run`` (a :class:`~kg.run_dir.RunDir` or a version of one); a
        missing stage is a :class:`~kg.errors.RunFolderError` naming it (or, when the stage
        was skipped for data it does not fit, saying why: :func:`record_skip`), an
        unreadable file an :class:`~kg.errors.IntegrityError`."""
        if isinstance(run, RunVersion):
            run = newest_tables(run)
        paths = (run.value_users, run.value_items, run.value_loyalty, run.value_brands, run.value_summary)
        skipped = None if all(path.exists() for path in paths) else skip_reason(run)
        if skipped:  # the stage did not fit the data: say why, not "run the value stage first"
            raise RunFolderError(f"{run.path} has no value tables: its value stage was skipped ({skipped})")
        for path in paths:
            run.need(path, "value")
        frames = []
        for path in paths[:4]:
            with run.reading(path, "value"):
                frames.append(pd.read_parquet(path))
        with run.reading(run.value_summary, "value"):
            summary = json.loads(run.value_summary.read_text())
        return cls(*frames, summary)

    # ------------------------------------------------------------------ lookups
    def customer(self, user_id: str) -> CustomerValue:
        """The user's value; a user without history gets the cold-start value (never an error)."""
        pos = self.user_pos.get_indexer([str(user_id)])[0]
        if pos < 0:
            return CustomerValue(str(user_id), float(self.cold.get("ltv", 0.0)), float(self.cold.get("p_active", 0.0)),
                                 self.horizon_days, self.as_of, cold_start=True)
        row = self.users.iloc[pos]
        return CustomerValue(str(user_id), float(row["ltv"]), float(row["p_active"]), self.horizon_days, self.as_of)

    def product(self, item_id: str, known: bool = False) -> ProductPotential:
        """The product's potential; a product the tables lack is an :class:`UnknownIdError`
        unless ``known`` (the serving catalogue has it: it arrived later, cold start)."""
        pos = self.item_pos.get_indexer([str(item_id)])[0]
        if pos < 0:
            if not known:
                raise UnknownIdError(f"unknown item id {item_id!r}: not a product of this run")
            c = self.new_product
            return ProductPotential(str(item_id), c["units"], c["value"], c["p_sell"], True, self.horizon_days,
                                    self.as_of, cold_start=True)
        r = self.items.iloc[pos]
        return ProductPotential(str(item_id), float(r["units"]), float(r["value"]), float(r["p_sell"]),
                                bool(r["new"]), self.horizon_days, self.as_of)

    def loyalty(self, user_id: str) -> list[BrandLoyalty]:
        """The user's brands, most loyal first ([] for a user without any)."""
        mine = self.pairs[self.pairs["user_id"] == str(user_id)].sort_values(["p_loyal", "brand"],
                                                                            ascending=[False, True])
        return [BrandLoyalty(str(b), float(p), float(s))
                for b, p, s in zip(mine["brand"], mine["p_loyal"], mine["past_share"])]

    def table(self, by: str = "ltv") -> pd.DataFrame:
        """The whole table, best first: ``ltv`` (users by expected spend), ``potential``
        (products by expected units), ``loyalty`` (brands by repurchase rate)."""
        if by == "ltv":
            return self.users.sort_values(["ltv", "user_id"], ascending=[False, True], ignore_index=True)
        if by == "potential":
            return self.items.sort_values(["units", "item_id"], ascending=[False, True], ignore_index=True)
        if by == "loyalty":
            return self.brands.copy()
        raise InvalidRequestError(f"value table: by must be one of {', '.join(BY)}, not {by!r}", "by")

    # ------------------------------------------------------------------ ranking objectives
    def potential_logits(self, item_ids: np.ndarray) -> torch.Tensor:
        """logit P(sells in the horizon) per product of ``item_ids`` [I] (a product the
        tables lack: the mean of the new ones)."""
        pos = self.item_pos.get_indexer(pd.Index(np.asarray(item_ids, dtype=object).astype(str)))
        p = np.where(pos >= 0, self.items["p_sell"].to_numpy()[np.maximum(pos, 0)], self.new_product["p_sell"])
        return torch.from_numpy(_logit(p)).float()

    def loyalty_lookup(self, user_ids: np.ndarray, brands: np.ndarray) -> LoyaltyLookup:
        """A :class:`LoyaltyLookup` over user rows (``user_ids`` [U]) and product rows
        (``brands`` [I], "" = no brand)."""
        users = pd.Index(np.asarray(user_ids, dtype=object).astype(str))
        brand_codes, brand_names = pd.factorize(pd.Series(np.asarray(brands, dtype=object)).fillna("").astype(str))
        names = pd.Index(brand_names)
        u = users.get_indexer(pd.Index(self.pairs["user_id"].astype(str)))
        b = names.get_indexer(pd.Index(self.pairs["brand"].astype(str)))
        ok = (u >= 0) & (b >= 0)
        nb = max(len(names), 1)
        keys = u[ok].astype(np.int64) * nb + b[ok]
        order = np.argsort(keys, kind="stable")
        item_brand = np.where(np.asarray(brands, dtype=object) == "", -1, brand_codes)
        return LoyaltyLookup(keys[order], _logit(self.pairs["p_loyal"].to_numpy()[ok][order]),
                             item_brand.astype(np.int64), nb, math.log(self.loyalty_floor / (1 - self.loyalty_floor)))


@dataclass
class LoyaltyLookup:
    """logit of the ``loyalty`` objective of (user row, product row) pairs: ``p_loyal`` of
    the user and the product's brand, else the floor."""

    keys: np.ndarray        # int64 [P] sorted user_row * num_brands + brand
    logits: np.ndarray      # float [P]
    item_brand: np.ndarray  # int64 [I], -1 none
    num_brands: int
    floor: float

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = users.numpy().astype(np.int64)
        b = self.item_brand[items.numpy()]
        out = np.full(len(u), self.floor)
        if len(self.keys):
            key = u * self.num_brands + b
            pos = np.searchsorted(self.keys, key).clip(0, len(self.keys) - 1)
            hit = (u >= 0) & (b >= 0) & (self.keys[pos] == key)
            out[hit] = self.logits[pos[hit]]
        return torch.from_numpy(out).float()


def record_skip(run: RunDir, reason: str) -> None:
    """Note in ``run.json`` (the value stage's ``ran_with`` entry, which the next value stage
    that finishes replaces) that the value stage did not fit the data and why: a later read
    of the missing tables says so instead of advising a retrain that fails the same way."""
    run.record_ran_with("value", skipped=str(reason))


def skip_reason(run: RunDir) -> str | None:
    """Why the value stage of ``run`` was skipped the last time it ran (None: it was not)."""
    entry = run.config().get(RAN_WITH, {}).get("value")
    return str(entry["skipped"]) if isinstance(entry, dict) and entry.get("skipped") else None


def newest_tables(run: RunVersion) -> RunDir:
    """Of the version's own value tables and the trained run's, the later ones (``as_of``;
    the trained run's on a tie, or when the version has none)."""
    mine = RunDir(run.version_path)
    trained = RunDir(run.path)
    if not mine.value_summary.exists():
        return run
    if not trained.value_summary.exists():
        return mine

    def as_of(where: RunDir) -> float:
        with where.reading(where.value_summary, "value"):
            return float(json.loads(where.value_summary.read_text()).get("as_of", 0))

    return trained if as_of(trained) >= as_of(mine) else mine
