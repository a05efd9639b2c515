"""The value models recover what the synthetic shop planted (each user's purchase rate,
spend level and churn; each product's launch and appeal; brand affinity), beat their
baselines, and the ``potential`` / ``loyalty`` ranking objectives do what they promise.

Real training code paths on small data: the shop is built into the embedded store, read
back through the graph export, and every model trains as the value stage does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion.value.baselines import clv_available
from fusion.value.config import ValueConfig
from fusion.value.metrics import auc, normalized_gini, spearman
from fusion.value.temporal import activity_from_export
from fusion.value.train import train_value
from kg.build import BuildConfig, build_graph
from kg.catalogue import read_catalogue
from kg.export import export_graph
from kg.stores import StoreConfig, open_store
from loaders.synthetic import SyntheticConfig, generate, planted_value

pytestmark = pytest.mark.slow

SHOP = SyntheticConfig(n_users=2000, n_items=600, n_interactions=130_000, n_queries=5, seed=11, join_spread=0.5,
                       churn_rate=1.0, spend_sigma=0.8, new_item_share=0.3, launch_from=0.3, brand_weight=0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    dataset = generate(SHOP)
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path_factory.mktemp("value-shop") / "g"))) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
        activity = activity_from_export(export_graph(store), read_catalogue(store).items)
    result = train_value(activity, None, ValueConfig(clv_baseline=clv_available(), threads=1))
    w = result.windows
    users, items = planted_value(dataset, w.test, w.test + w.horizon)
    return result, users.set_index("user_id"), items.set_index("item_id")


def test_lifetime_value_recovers_the_planted_expected_spend(trained):
    result, users, _ = trained
    test, pred = result.ltv.test, result.ltv.test_prediction
    customers = test.extra["customer"].to_numpy()
    planted = users.loc[test.extra["user_id"], "expected_spend"].to_numpy()[customers]
    ours, last = pred[customers], test.extra["last_period_spend"].to_numpy()[customers]
    print("LTV Spearman with the planted expected spend: ours", spearman(planted, ours), "last period",
          spearman(planted, last))
    assert spearman(planted, ours) >= 0.65
    assert spearman(planted, ours) > spearman(planted, last) + 0.05
    report = result.report["ltv"]
    assert report["ours"]["gini"] > report["last_period_spend"]["gini"] + 0.05
    assert report["ours"]["auc"] > report["last_period_spend"]["auc"] + 0.05
    # P(active) tells who churned: users past their planted churn get a low one
    alive = users.loc[test.extra["user_id"], "alive"].to_numpy()
    assert auc(alive[customers], ours) > 0.7


@pytest.mark.skipif(not clv_available(), reason="the clv extra (pymc-marketing) is not installed")
def test_ours_beats_bgnbd_gamma_gamma(trained):
    report = trained[0].report["ltv"]
    print({k: report[k] for k in ("ours", "bgnbd_gamma_gamma", "last_period_spend")})
    bg = report["bgnbd_gamma_gamma"]
    assert bg["gini"] > report["last_period_spend"]["gini"]  # a sound baseline
    assert report["ours"]["gini"] > bg["gini"] and report["ours"]["spearman"] > bg["spearman"]


def test_product_potential_recovers_planted_sales_new_products_included(trained):
    result, _, items = trained
    test, pred = result.potential.test, result.potential.test_prediction
    planted = items.loc[test.extra["item_id"], "expected_units"].to_numpy()
    new = test.extra["new"].to_numpy()
    last, cat = test.extra["last_period_units"].to_numpy(), test.extra["category_mean"].to_numpy()
    print("potential Spearman with planted units: ours", spearman(planted, pred), "last period",
          spearman(planted, last), "; new products (", new.sum(), "): ours", spearman(planted[new], pred[new]),
          "category mean", spearman(planted[new], cat[new]))
    assert spearman(planted, pred) >= 0.65 and spearman(planted, pred) > spearman(planted, last) + 0.05
    assert new.sum() >= 30
    assert spearman(planted[new], pred[new]) >= 0.4
    assert spearman(planted[new], pred[new]) > spearman(planted[new], cat[new]) + 0.1


def test_brand_loyalty_beats_the_past_share(trained):
    loyal = trained[0].report["loyalty"]
    print(loyal)
    assert loyal["pairs"] >= 200
    assert loyal["ours"]["auc"] > loyal["past_share"]["auc"] and loyal["ours"]["auc"] > 0.65
