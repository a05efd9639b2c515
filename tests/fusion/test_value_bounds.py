"""The value models stay inside what they were trained on: inputs are clipped to the
training range and a ZILN model's expected value is capped at its largest training target
(:class:`fusion.value.fitting.TabularModel`, :meth:`fusion.value.ziln.ZILN.mean`), and both
bounds travel with the saved models to every later prediction -- the serving tables that
``kgrec update`` writes (:func:`fusion.value.train.refresh_value`) included.

The case they guard against: a burst of purchases years after the training data turned a
customer with 27 orders of $10-150 into an expected spend of $134M (features such as the
purchases per day hundreds of training deviations out, fed through e^(mu + sigma^2/2)).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.tiny_run import make_tiny_run
from fusion.value.config import ValueConfig
from fusion.value.fitting import TabularModel, fit_tabular
from fusion.value.ltv import ltv_table
from fusion.value.potential import potential_table
from fusion.value.temporal import DAY
from fusion.value.train import load_activity, refresh_value, run_value_stage
from fusion.value.ziln import ZILN
from kg.build import BuildConfig
from kg.ingest import ingest
from kg.run_dir import RunDir
from kg.stores import StoreConfig, open_store
from loaders.dataset import Dataset, make_table

FAST = ValueConfig(epochs=40, patience=10, threads=1)


def test_ziln_mean_is_capped_per_member_at_the_largest_training_target():
    # [B=2, M=2, 3]: the second row's members have log-normal means e^(5 + 2) and e^(1 + 0.5 * 0.3^2)
    out = torch.tensor([[[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]],
                        [[2.0, 5.0, 1.5], [-1.0, 1.0, -1.0]]])
    p, sigma = torch.sigmoid(out[..., 0]), ZILN.sigma(out)
    lognormal = torch.exp(out[..., 1] + sigma ** 2 / 2)                        # [2, 2]
    assert torch.allclose(ZILN.mean(out), (p * lognormal).mean(dim=1))        # no cap: the plain mean
    cap = 20.0
    assert torch.allclose(ZILN.mean(out, cap), (p * lognormal.clamp(max=cap)).mean(dim=1))
    assert float(ZILN.mean(out, cap)[1]) < float(ZILN.mean(out)[1])          # the wide member is cut
    assert float(ZILN.mean(out, cap)[0]) == pytest.approx(float(ZILN.mean(out)[0]))  # the modest one is not
    wild = torch.tensor([[80.0, 500.0, 60.0]])                                # e^(500 + 1800): overflow
    assert float(ZILN.mean(wild, cap)) <= cap and torch.isfinite(ZILN.mean(wild)).all()


def _fitted(tmp_path) -> tuple[TabularModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.uniform(0, 2, 300), "b": rng.normal(size=300)})
    y = np.where(rng.random(300) < 0.5, np.exp(frame["a"] + rng.normal(scale=0.3, size=300)), 0.0)
    model = fit_tabular("ziln", frame, y, frame, y, ["a", "b"], hidden=8, layers=1, dropout=0.0, lr=1e-2,
                        weight_decay=0.0, batch_size=64, epochs=30, patience=5, seed=0)
    assert model.target_max == pytest.approx(y.max())
    assert np.allclose(model.low, frame.min()) and np.allclose(model.high, frame.max())
    return TabularModel.load(model.save(tmp_path / "m")), frame


def test_inputs_are_clipped_to_the_training_range_saved_with_the_model(tmp_path):
    model, frame = _fitted(tmp_path)
    assert model.target_max is not None and model.low is not None  # they survive save / load
    low, high = model.bounds()  # one range width beyond the training range on each side
    width = frame.max().to_numpy() - frame.min().to_numpy()
    assert np.allclose(low, frame.min().to_numpy() - width) and np.allclose(high, frame.max().to_numpy() + width)
    edge = pd.DataFrame({"a": [high[0], low[0]], "b": [high[1], low[1]]})
    far = pd.DataFrame({"a": [1e6, -1e6], "b": [50.0, -50.0]})
    assert torch.equal(model.outputs(far), model.outputs(edge))  # far outside reads as the nearest edge
    assert model.outside(far).all() and not model.outside(frame).any()
    near = frame.head(2) + width / 2  # within the margin: read as it is
    assert not model.outside(near).any() and not torch.equal(model.outputs(near), model.outputs(frame.head(2)))
    assert torch.equal(model.outputs(frame), model.outputs(frame.assign(a=frame["a"].to_numpy())))


def test_a_model_saved_before_the_bounds_loads_and_is_clipped_to_the_samuelson_bound(tmp_path):
    model, frame = _fitted(tmp_path)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in ("low", "high", "target_max"):  # what an older run's model.save wrote
        config.pop(key)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    old = TabularModel.load(tmp_path / "m")
    assert old.low is None and old.high is None and old.target_max is None
    n = old.info["rows"]
    low, high = old.bounds()
    # every one of n values lies within mean +- std * sqrt(n - 1): no training row is clipped
    assert np.allclose(high, old.mean + old.std * np.sqrt(n - 1))
    assert (frame.min().to_numpy() >= low).all() and (frame.max().to_numpy() <= high).all()
    assert torch.equal(old.outputs(frame), model.outputs(frame))
    assert torch.equal(old.outputs(pd.DataFrame({"a": [1e9], "b": [0.0]})),
                       old.outputs(pd.DataFrame({"a": [high[0]], "b": [0.0]})))


def _largest_per_horizon(run: RunDir, column: str) -> float:
    """The most one customer spent (``column='spend'``, by user) or one product sold
    (``'qty'``, by product) in one horizon after any cut-off of the trained value stage:
    every target its served models were fit on."""
    summary = json.loads(run.value_summary.read_text())
    w, h = summary["report"]["windows"], int(round(summary["horizon_days"] * DAY))
    activity, _ = load_activity(run)  # the run's own graph: the data the value stage trained on
    key = "u" if column == "spend" else "i"
    best = 0.0
    for cut in (*w["train"], w["valid"], w["test"]):
        window = activity.window(cut, cut + h)
        if len(window):
            best = max(best, float(window.groupby(key)[column].sum().max()))
    return best


def test_a_burst_of_purchases_years_later_cannot_blow_up_the_values_after_an_update(tmp_path):
    # the finding: kgrec update after 20,000 events 5 years on valued 27 purchases at $134M
    run, dataset = make_tiny_run(tmp_path / "tiny")
    run_value_stage(run.path, FAST)
    spend_max, units_max = _largest_per_horizon(run, "spend"), _largest_per_horizon(run, "qty")
    assert spend_max > 0 and units_max > 0
    trained = pd.read_parquet(run.value_users)
    assert trained["ltv"].max() <= spend_max  # normal data: within the bound already

    # users who had bought nothing and users new to the shop buy 100 products each, five
    # years on, within six hours: hundreds of purchases a day, where no training customer
    # made more than a few (unbounded, this tiny run valued each at about $3.4 billion)
    users = trained.loc[~trained["customer"], "user_id"].head(5).tolist() + [f"burst-{k}" for k in range(5)]
    items = dataset.items["item_id"].tolist()
    start = int(dataset.interactions["timestamp"].max()) + 5 * 365 * DAY
    rng = np.random.default_rng(1)
    rows = [{"user_id": u, "item_id": items[int(rng.integers(len(items)))], "event": "purchase",
             "timestamp": start + int(rng.integers(6 * 3600)), "value": 1.0}
            for u in users for _ in range(100)]
    rows += [{"user_id": u, "item_id": items[int(rng.integers(len(items)))], "event": "click",
              "timestamp": start + int(rng.integers(6 * 3600))} for u in users for _ in range(20)]
    out = RunDir(tmp_path / "fresh")
    with open_store(StoreConfig.from_location(run.store_location())) as store:
        ingest(store, Dataset(name="burst", interactions=make_table("interactions", rows)), BuildConfig(progress=False))
        refresh_value(run.path, store, out)

    fresh = pd.read_parquet(out.value_users).set_index("user_id")
    assert np.isfinite(fresh["ltv"]).all() and fresh["ltv"].ge(0).all()
    # E[spend] <= p_active * (the most one customer spent in a training horizon)
    assert (fresh["ltv"] <= fresh["p_active"] * spend_max * (1 + 1e-6)).all(), fresh.loc[users]
    assert fresh.loc[users, "customer"].all()  # valued by the model, not the cold-start path
    products = pd.read_parquet(out.value_items)
    assert np.isfinite(products["units"]).all() and (products["units"] <= units_max * (1 + 1e-6)).all()
    summary = json.loads(out.value_summary.read_text())
    assert summary["bounds"]["ltv"]["outside"] >= len(users)  # said, not silent
    assert summary["bounds"]["ltv"]["cap"] == pytest.approx(spend_max)
    # the saved models carry the bounds the refresh applied
    saved = json.loads((run.value_models / "ltv" / "config.json").read_text())
    assert saved["target_max"] == pytest.approx(spend_max) and len(saved["low"]) == len(saved["columns"])


def test_values_served_at_their_cap_are_said_in_one_line():
    """``kgrec value`` prints this line under its table: a capped value means "at least this
    much", and it says what helps (a retrain of the value stage)."""
    from fusion.value.results import capped_note

    note = capped_note({"ltv": {"rows": 2302, "outside": 40, "capped": 3, "cap": 4412.5},
                        "potential": {"rows": 1000, "outside": 0, "capped": 0, "cap": 81.0},
                        "loyalty": {"rows": 50, "outside": 1, "capped": 0, "cap": None}})
    assert note.startswith("note: values at their model's cap: 3 of 2,302 customers' expected spend at 4,412.50 "
                           "(the most one customer spent in one horizon of training)")
    assert "products'" not in note and "kgrec train --stage value" in note
    assert capped_note({}) == "" and capped_note({"ltv": {"rows": 9, "outside": 9, "capped": 0, "cap": 1.0}}) == ""
