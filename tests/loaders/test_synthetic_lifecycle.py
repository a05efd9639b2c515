"""The synthetic shop's lifecycle truth (joins, churn, spend levels, product launches):
each knob changes only what it plants, the events obey it, and :func:`planted_value`
predicts what the simulation then does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loaders.errors import ConfigError
from loaders.synthetic import SyntheticConfig, generate, planted_value

BASE = dict(n_users=500, n_items=200, n_interactions=40_000, n_queries=5, seed=5)
LIFE = SyntheticConfig(**BASE, join_spread=0.5, churn_rate=1.0, spend_sigma=0.8, new_item_share=0.25)
DAY = 86_400


@pytest.fixture(scope="module")
def shop():
    return generate(LIFE, return_truth=True)


def test_lifecycle_is_off_by_default_and_its_truth_is_trivial():
    config = SyntheticConfig(**BASE)
    assert not config.lifecycle and LIFE.lifecycle
    _, truth = generate(config, return_truth=True)
    assert (truth.user_join == 0).all() and np.isinf(truth.user_churn).all()
    assert (truth.user_spend == 1).all() and (truth.item_launch == 0).all()
    np.testing.assert_allclose(truth.expected_quantity(), 1.32)


def test_a_spend_level_changes_only_purchase_quantities():
    plain, spent = generate(SyntheticConfig(**BASE)), generate(SyntheticConfig(**BASE, spend_sigma=0.8))
    a, b = plain.interactions, spent.interactions
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    buy = a["event"] == "purchase"
    pd.testing.assert_series_equal(a["value"][~buy], b["value"][~buy])
    assert not a["value"][buy].equals(b["value"][buy])
    for name in ("items", "users", "judgements", "triples"):
        pd.testing.assert_frame_equal(getattr(plain, name), getattr(spent, name), obj=name)


def test_joins_and_churn_move_only_the_times_and_who_is_active(shop):
    ds, truth = shop
    inter = ds.interactions
    at = inter["timestamp"].to_numpy() - LIFE.start_timestamp
    u = truth.user_index(inter["user_id"])
    start, stop = truth.alive()
    shown = (inter["event"] == "impression").to_numpy()
    assert (at[shown] >= start[u[shown]] - 1).all()
    # impressions are 60 s apart on top of their session's time: a very active user may run on a day
    assert (at[shown] <= stop[u[shown]] + 2 * DAY).all()
    churned = truth.user_churn < 0.5 * truth.span
    assert churned.sum() > 50
    late = inter[shown & (at > 0.6 * truth.span)]
    assert not np.isin(truth.user_index(late["user_id"]), np.flatnonzero(churned)).any()


def test_no_product_is_shown_or_sold_before_its_launch(shop):
    ds, truth = shop
    inter = ds.interactions
    at = inter["timestamp"].to_numpy() - LIFE.start_timestamp
    launch = truth.item_launch[truth.item_index(inter["item_id"])]
    assert (truth.item_launch > 0).sum() > 30
    funnel = inter["event"].isin(["impression", "click", "purchase"]).to_numpy()
    assert (at[funnel] >= launch[funnel]).all()
    sold = inter[inter["event"] == "purchase"]["item_id"].unique()
    assert np.isin(truth.item_ids[truth.item_launch > 0], sold).mean() > 0.5  # new products do sell
    assert len(ds.validate().interactions) == len(inter)


def test_planted_value_predicts_the_simulated_window(shop):
    ds, truth = shop
    t0 = LIFE.start_timestamp + int(0.6 * truth.span)
    t1 = t0 + 60 * DAY
    users, items = planted_value(ds, t0, t1, truth)
    buys = ds.interactions[ds.interactions["event"] == "purchase"]
    window = buys[(buys["timestamp"] > t0) & (buys["timestamp"] <= t1)]
    assert abs(users["expected_purchases"].sum() - len(window)) < 0.15 * len(window)
    price = ds.items.set_index("item_id")["price"]
    spend = (window["value"] * price.reindex(window["item_id"]).to_numpy()).groupby(window["user_id"]).sum()
    actual = spend.reindex(users["user_id"]).fillna(0)
    assert np.corrcoef(actual, users["expected_spend"])[0, 1] > 0.6
    units = window.groupby("item_id")["value"].sum().reindex(items["item_id"]).fillna(0)
    assert np.corrcoef(units, items["expected_units"])[0, 1] > 0.8
    gone = users["churn"].to_numpy() <= t0
    assert (users["expected_purchases"][gone] == 0).all() and not users["alive"][gone].any()
    later = items["launch"].to_numpy() >= t1
    assert (items["expected_units"][later] == 0).all() and not items["launched"][later].any()
    assert (items["appeal"] > 0).all()


def test_planted_value_refuses_a_window_outside_the_span(shop):
    ds, truth = shop
    with pytest.raises(ConfigError, match="not inside the span"):
        planted_value(ds, LIFE.start_timestamp - DAY, LIFE.start_timestamp + DAY, truth)


@pytest.mark.parametrize("options", [{"join_spread": 1.5}, {"churn_rate": -1}, {"new_item_share": 2},
                                     {"spend_sigma": -0.1}, {"launch_from": -0.5}])
def test_bad_lifecycle_options_are_refused(options):
    with pytest.raises(ConfigError):
        SyntheticConfig(**options)
