"""Customer value, product potential and brand loyalty: the metrics against the ZILN
reference definitions, the ZILN loss, the temporal windows and their errors, spend on
review-only data, and the product surface -- the value stage on a tiny run, the Engine's
typed results, the ranking objectives, ``kgrec value``, and a run version without value
tables after ``kgrec update``."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.cli import main
from fusion.engine import Engine
from fusion.ranking.scoring import check_weights, parse_weights
from fusion.tiny_run import make_tiny_run
from fusion.value.config import ValueConfig
from fusion.value.features import item_features, loyalty_pairs, user_features
from fusion.value.ltv import cold_start
from fusion.value.metrics import auc, decile_mape, decile_table, normalized_gini, spearman, top_decile_capture
from fusion.value.results import CustomerValue, ProductPotential
from fusion.value.temporal import DAY, Activity, activity_from_export, make_windows
from fusion.value.train import refresh_value, run_value_stage
from fusion.value.ziln import ZILN
from kg.errors import ConfigError, DataError, InvalidRequestError, RunFolderError, UnknownIdError
from kg.export import export_graph
from kg.stores import StoreConfig, open_store

FAST = ValueConfig(epochs=40, patience=10, threads=1)


# ------------------------------------------------------------------ metrics

def test_normalized_gini_is_one_for_the_perfect_ranking_and_zero_on_average_for_noise():
    rng = np.random.default_rng(0)
    y = rng.exponential(size=400) * (rng.random(400) < 0.4)
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < 0
    assert abs(np.mean([normalized_gini(y, rng.random(400)) for _ in range(50)])) < 0.05
    # the reference: raw gini = 2 * mean(cumulative share over the prediction's order) - 1
    pred = y + rng.normal(size=400)
    order = np.argsort(-pred, kind="stable")
    raw = 2 * (np.cumsum(y[order]) / y.sum()).mean() - 1
    perfect = 2 * (np.cumsum(np.sort(y)[::-1]) / y.sum()).mean() - 1
    assert normalized_gini(y, pred) == pytest.approx(raw / perfect)


def test_spearman_auc_deciles_and_capture():
    x = np.arange(100.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(100)))
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0 and auc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.5
    assert math.isnan(auc([1, 1], [0.2, 0.3]))
    table = decile_table(x, x)
    assert len(table) == 10 and (table["y_true"] == table["y_pred"]).all()
    assert decile_mape(x + 1, 2 * (x + 1)) == pytest.approx(1.0)
    y = np.zeros(100)
    y[:10] = 1.0
    assert top_decile_capture(y, -x) == 1.0 and top_decile_capture(y, x) == 0.0


# ------------------------------------------------------------------ ZILN

def test_ziln_loss_is_the_written_negative_log_likelihood_and_mean_its_expectation():
    out = torch.tensor([[0.3, 1.2, 0.4], [-1.0, 0.5, -0.2], [2.0, -0.3, 1.0]])
    y = torch.tensor([3.0, 0.0, 0.7])
    p = torch.sigmoid(out[:, 0])
    sigma = torch.nn.functional.softplus(out[:, 2])
    rows = []
    for k in range(3):
        if y[k] > 0:
            lognormal = (torch.log(y[k]) + torch.log(sigma[k]) + 0.5 * math.log(2 * math.pi)
                         + (torch.log(y[k]) - out[k, 1]) ** 2 / (2 * sigma[k] ** 2))
            rows.append(-torch.log(p[k]) + lognormal)
        else:
            rows.append(-torch.log(1 - p[k]))
    assert ZILN.loss(out, y) == pytest.approx(float(torch.stack(rows).mean()), rel=1e-5)
    assert torch.allclose(ZILN.mean(out), p * torch.exp(out[:, 1] + sigma ** 2 / 2))
    # the loss is lowest at the true distribution's parameters
    g = torch.Generator().manual_seed(0)
    y = torch.where(torch.rand(4000, generator=g) < 0.3, torch.exp(1.0 + 0.5 * torch.randn(4000, generator=g)),
                    torch.zeros(4000))
    best = torch.tensor([[math.log(0.3 / 0.7), 1.0, math.log(math.expm1(0.5))]]).repeat(4000, 1)
    assert ZILN.loss(best, y) < ZILN.loss(best + torch.tensor([0.5, 0.0, 0.0]), y)
    assert ZILN.loss(best, y) < ZILN.loss(best + torch.tensor([0.0, 0.3, 0.0]), y)


# ------------------------------------------------------------------ temporal set-up

def _activity(times, users=None, items=None, spend=None) -> Activity:
    times = np.asarray(times, dtype=np.int64)
    n = len(times)
    users = np.zeros(n, np.int64) if users is None else np.asarray(users)
    items = np.zeros(n, np.int64) if items is None else np.asarray(items)
    spend = np.ones(n) if spend is None else np.asarray(spend, dtype=float)
    purchases = pd.DataFrame({"u": users, "i": items, "t": times, "qty": 1.0, "spend": spend})
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    empty = pd.DataFrame({"u": [], "i": [], "t": [], "kind": []}, dtype=np.int64)
    return Activity(np.array([f"u{k}" for k in range(nu)], dtype=object),
                    np.array([f"i{k}" for k in range(ni)], dtype=object), purchases, empty, np.ones(ni),
                    np.ones(ni, bool), np.zeros(ni, np.int64), np.array(["B"], dtype=object), np.zeros(ni, np.int64),
                    np.zeros(ni, np.int64), np.array(["C"], dtype=object), np.array(["C"], dtype=object))


def test_default_windows_are_an_eighth_of_the_span_apart_and_end_at_the_last_event():
    start = 1_600_000_000
    times = start + np.arange(0, 400 * DAY, DAY // 2)
    w = make_windows(_activity(times))
    act = _activity(times)
    # an eighth of the span from the purchases' first percentile (robust to a few early ones)
    assert w.horizon == round((times[-1] - np.quantile(times, 0.01)) / 8 / DAY) * DAY == 49 * DAY
    assert w.test == w.serve - w.horizon and w.valid == w.test - w.horizon
    assert list(w.train) == [w.valid - k * w.horizon for k in (3, 2, 1)]
    assert w.serve == int(act.purchases["t"].max())


@pytest.mark.parametrize("options, message", [
    ({"horizon_days": 500}, "longer than the data's time span"),
    ({"test_cutoff": 1_600_000_000 + 390 * DAY}, "less than the horizon"),
    ({"test_cutoff": 1_600_000_000 + 500 * DAY}, "leaves no target window"),
    ({"horizon_days": 205}, "no history before it"),
    ({"horizon_days": 150}, "no training cut-off has purchases before it"),
])
def test_a_horizon_or_cutoff_that_does_not_fit_is_a_clear_error(options, message):
    act = _activity(1_600_000_000 + np.arange(0, 400 * DAY, DAY))
    with pytest.raises(ConfigError, match=message):
        make_windows(act, **options)


def test_features_never_see_the_target_window():
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 200 * DAY, 600)) + 1_600_000_000
    act = _activity(t, rng.integers(0, 30, 600), rng.integers(0, 12, 600), rng.exponential(20, 600))
    cut = int(t[300])
    changed = act.purchases.copy()
    later = changed["t"] > cut
    changed.loc[later, "spend"] *= 7
    changed.loc[later, "u"] = 0
    other = Activity(act.users, act.items, changed, act.engagements, act.price, act.has_price, act.brand,
                     act.brand_names, act.category, act.top_category, act.category_names, act.top_names)
    for build in (lambda a: user_features(a.before(cut), cut, 20 * DAY),
                  lambda a: item_features(a.before(cut), cut, 20 * DAY),
                  lambda a: loyalty_pairs(a.before(cut), cut, 20 * DAY)):
        pd.testing.assert_frame_equal(build(act), build(other))


def _export(users, items, events) -> SimpleNamespace:
    """A graph export (``data``, ``id_maps``) of ``events``: (relation, user, item, time) rows."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].num_nodes, data["product"].num_nodes = len(users), len(items)
    for rel in sorted({r for r, *_ in events}):
        rows = [(u, i, t) for r, u, i, t in events if r == rel]
        s = data["user", rel, "product"]
        s.edge_index = torch.tensor([[u for u, _, _ in rows], [i for _, i, _ in rows]], dtype=torch.long)
        s.time = torch.tensor([t for *_, t in rows], dtype=torch.long)
        s.value = torch.ones(len(rows))
    ids = {"user": np.array(users, dtype=object), "product": np.array(items, dtype=object)}
    return SimpleNamespace(data=data, id_maps=ids)


def _catalogue(items) -> pd.DataFrame:
    return pd.DataFrame({"item_id": items, "price": 2.0, "brand": "B", "categories": [["C"]] * len(items)})


def test_events_of_unknown_time_are_left_out_of_the_time_axis_and_counted():
    # 200 days of purchases and views, and every tenth event with timestamp 0 (= unknown):
    # taken as 1970 they made the horizon 2,484 days and the test window start in 2017
    rng = np.random.default_rng(3)
    start = 1_700_000_000
    events = [("purchased" if k % 2 else "viewed", int(rng.integers(20)), int(rng.integers(5)),
               0 if k % 10 == 0 else start + int(rng.integers(0, 200 * DAY))) for k in range(300)]
    users, items = [f"u{k}" for k in range(20)], [f"i{k}" for k in range(5)]
    act = activity_from_export(_export(users, items, events), _catalogue(items))
    timed = activity_from_export(_export(users, items, [e for e in events if e[3]]), _catalogue(items))
    assert (act.untimed, act.events, timed.untimed) == (30, 300, 0)
    assert act.purchases["t"].min() >= start and act.engagements["t"].min() >= start
    assert act.purchases.equals(timed.purchases) and act.engagements.equals(timed.engagements)
    assert make_windows(act) == make_windows(timed) and make_windows(act).horizon_days == 24
    assert act.untimed_note() == ("30 of 300 events have no time (timestamp 0 = unknown): "
                                  "not used by the value models.")
    # every event of unknown time: the stage says so, not "1970-01-01 to 1970-01-01"
    unknown = activity_from_export(_export(users, items, [(r, u, i, 0) for r, u, i, _ in events]), _catalogue(items))
    with pytest.raises(DataError, match="times of all 300 events are unknown") as err:
        make_windows(unknown)
    assert "1970" not in str(err.value)
    # purchases of unknown time only (views known): no purchase to learn from, said with the count
    views_only = [e if e[0] == "viewed" else (*e[:3], 0) for e in events]
    with pytest.raises(DataError, match="no purchases with a known time.*have no time"):
        make_windows(activity_from_export(_export(users, items, views_only), _catalogue(items)))


def test_the_value_stage_reports_the_events_it_left_out_for_their_unknown_time(tmp_path, capsys, monkeypatch):
    from kg.export import GraphExport

    run, _ = make_tiny_run(tmp_path)
    export = GraphExport.load(run.graph)
    store = export.data["user", "purchased", "product"]
    store.time[::10] = 0  # every tenth purchase of unknown time
    export.save(run.graph)
    run.write_manifest()
    report = run_value_stage(run.path, FAST)
    unknown = int((store.time == 0).sum())
    assert unknown > 0 and report["untimed"]["events"] == unknown
    assert report["windows"]["start"] > 0  # not 1970
    text = run.value_report.read_text()
    assert f"{unknown:,} of {report['untimed']['of']:,} events have no time" in text
    assert text.count("have no time") == 1
    from fusion.value.results import ValueTables

    assert ValueTables.load(run).untimed_note == report["untimed"]["note"]  # for `kgrec value` to say
    assert main(["value", "--run", str(run.path), "--by", "ltv", "--top", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith(report["untimed"]["note"])
    # a table with no rows (a shop without brands: no loyalty) is one line, not a DataFrame's repr
    monkeypatch.setattr(ValueTables, "table", lambda self, by: pd.DataFrame(columns=["brand", "customers"]))
    assert main(["value", "--run", str(run.path), "--by", "loyalty"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no brands to rank") and "Empty DataFrame" not in out


def test_a_skipped_value_stage_says_why_instead_of_advising_a_retrain_that_fails_alike(tmp_path, capsys):
    from fusion.value.results import ValueTables

    run, _ = make_tiny_run(tmp_path)
    with pytest.raises(ConfigError, match="longer than the data's time span"):
        run_value_stage(run.path, ValueConfig(horizon_days=100_000, threads=1))
    for read in (lambda: ValueTables.load(run), lambda: Engine.open(run.path).customer_value("u00")):
        with pytest.raises(RunFolderError, match="value stage was skipped .*longer than the data's time span") as e:
            read()
        assert "--stage value" not in str(e.value)
    assert main(["value", "--run", str(run.path), "--by", "ltv"]) != 0
    assert "was skipped" in capsys.readouterr().err
    run_value_stage(run.path, FAST)  # a value stage that finishes replaces the note
    assert ValueTables.load(run).customer("u00").horizon_days > 0


def test_a_review_is_the_purchase_of_review_only_data_and_an_unknown_price_the_median(tmp_path, tiny):
    # tiny: u1 bought p1 twice (quantity 1 and 2); drop its purchases to make it review-only
    ds = tiny
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))) as store:
        from kg.build import BuildConfig, build_graph
        from kg.catalogue import read_catalogue

        build_graph(ds, store, BuildConfig(progress=False))
        export, items = export_graph(store), read_catalogue(store).items
    act = activity_from_export(export, items)
    assert act.rule == "purchase" and act.purchases["qty"].tolist() == [1.0, 1.0, 2.0]
    assert act.purchases["spend"].tolist() == [9.5, 9.5, 19.0]  # p2 has no price: its category's median, 9.5
    ds.interactions = ds.interactions[ds.interactions["event"] != "purchase"].reset_index(drop=True)
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g2"))) as store:
        build_graph(ds, store, BuildConfig(progress=False))
        export, items = export_graph(store), read_catalogue(store).items
    act = activity_from_export(export, items)
    assert act.rule == "review" and len(act.purchases) == 1 and act.purchases["spend"].tolist() == [30.0]


# ------------------------------------------------------------------ the product surface on a tiny run

@pytest.fixture(scope="module")
def tiny_value(tmp_path_factory):
    run, dataset = make_tiny_run(tmp_path_factory.mktemp("value-tiny"))
    report = run_value_stage(run.path, FAST)
    return run, dataset, report


def test_the_value_stage_writes_its_tables_report_and_manifest(tiny_value):
    run, dataset, report = tiny_value
    for path in (run.value_users, run.value_items, run.value_loyalty, run.value_brands, run.value_summary,
                 run.value_report, run.value_models / "ltv" / "model.pt", run.value_models / "potential" / "config.json"):
        assert path.exists(), path
    assert run.verify() > 0 and any(k.startswith("value/") for k in run.manifest())
    assert set(report) >= {"ltv", "potential", "loyalty", "windows", "seconds"}
    assert report["ltv"]["ours"]["gini"] == report["ltv"]["ours"]["gini"]  # a number, not NaN
    users = pd.read_parquet(run.value_users)
    assert users["ltv"].ge(0).all() and users["p_active"].between(0, 1).all()
    assert len(pd.read_parquet(run.value_items)) == len(dataset.items)
    assert "normalized Gini" in run.value_report.read_text()


def test_engine_value_methods_return_typed_results_and_cold_start(tiny_value):
    run, dataset, _ = tiny_value
    engine = Engine.open(run.path)
    users = pd.read_parquet(run.value_users)
    known = users["user_id"].iloc[0]
    c = engine.customer_value(known)
    assert isinstance(c, CustomerValue) and not c.cold_start
    assert c.ltv == pytest.approx(float(users["ltv"].iloc[0])) and 0 <= c.p_active <= 1
    assert c.churn_risk == pytest.approx(1 - c.p_active)
    new = engine.customer_value("someone-new")
    assert new.cold_start and new.ltv >= 0 and new.horizon_days == c.horizon_days
    item = dataset.items["item_id"].iloc[0]
    p = engine.product_potential(item)
    assert isinstance(p, ProductPotential) and p.units >= 0 and 0 <= p.p_sell <= 1
    assert p.value == pytest.approx(p.units * float(dataset.items["price"].iloc[0]), rel=1e-4)
    with pytest.raises(UnknownIdError):
        engine.product_potential("no-such-product")
    pairs = pd.read_parquet(run.value_loyalty)
    who = pairs["user_id"].iloc[0]
    loyal = engine.brand_loyalty(who)
    assert loyal and [b.p_loyal for b in loyal] == sorted((b.p_loyal for b in loyal), reverse=True)
    assert engine.brand_loyalty("someone-new") == []
    for by, key in (("ltv", "ltv"), ("potential", "units"), ("loyalty", "repurchase_rate")):
        table = engine.value_table(by)
        assert isinstance(table, pd.DataFrame) and table[key].is_monotonic_decreasing
    with pytest.raises(InvalidRequestError, match="by"):
        engine.value_table("revenue")


def test_potential_and_loyalty_weights_rank(tiny_value):
    run, _, _ = tiny_value
    engine = Engine.open(run.path)
    assert check_weights(parse_weights("ctr=1,cvr=1,potential=1,loyalty=0.5"), {}) == {
        "ctr": 1.0, "cvr": 1.0, "potential": 1.0, "loyalty": 0.5}
    pairs = pd.read_parquet(run.value_loyalty)
    user = pairs["user_id"].iloc[0]
    plain = engine.recommend(user, k=5)
    assert "potential" not in plain[0].objectives
    only = engine.recommend(user, k=5, weights={"potential": 1})
    items = pd.read_parquet(run.value_items).set_index("item_id")
    got = [items.loc[r.item_id, "p_sell"] for r in only]
    assert got == sorted(got, reverse=True)  # ranked by P(sells) alone
    assert only[0].objectives["potential"] == pytest.approx(got[0], rel=1e-4)
    brands = set(pairs[pairs["user_id"] == user]["brand"])
    loyal = engine.recommend(user, k=5, weights={"loyalty": 1}, exclude_seen=False)
    catalogue = engine.catalogue
    top_brand = catalogue.brands[catalogue.index.get_indexer([loyal[0].item_id])[0]]
    assert top_brand in brands
    assert engine.recommend("someone-new", k=3, weights={"ctr": 1, "loyalty": 1})  # cold start: no error


def test_a_run_without_the_value_stage_says_so(tmp_path):
    run, _ = make_tiny_run(tmp_path)
    engine = Engine.open(run.path)
    with pytest.raises(InvalidRequestError, match="value stage"):
        engine.recommend("u00", weights={"ctr": 1, "potential": 1})
    with pytest.raises(RunFolderError, match="--stage value"):
        engine.customer_value("u00")
    assert engine.recommend("u00", k=2)  # the other objectives serve as before


def test_kgrec_value_prints_tables_and_errors_in_one_line(tiny_value, capsys):
    run, dataset, _ = tiny_value
    assert main(["value", "--run", str(run.path), "--by", "potential", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("top 3 products by expected units") and len(out.strip().splitlines()) == 5
    assert main(["value", "--run", str(run.path), "--by", "loyalty"]) == 0
    assert "repurchase_rate" in capsys.readouterr().out
    assert main(["value", "--run", str(run.path), "--user", "never-seen"]) == 0
    assert "a new customer's value" in capsys.readouterr().out
    assert main(["value", "--run", str(run.path), "--item", "no-such-product"]) == 2
    assert "unknown item id" in capsys.readouterr().err
    assert main(["train", "--stage", "value", "--run", str(run.path), "--value-set", "horizon_days=9999",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "longer than the data's time span" in err and len(err.splitlines()) == 1


def test_an_update_values_the_users_it_adds_and_a_retrained_value_stage_wins_until_the_next(tmp_path):
    from fusion.update import update_run
    from kg.build import BuildConfig
    from kg.ingest import ingest
    from loaders.dataset import Dataset, make_table

    run, dataset = make_tiny_run(tmp_path)
    run_value_stage(run.path, FAST)
    item = dataset.items["item_id"].iloc[0]
    delta = Dataset(name="delta", interactions=make_table("interactions", [
        {"user_id": "late-comer", "item_id": item, "event": "purchase", "timestamp": 1_700_000_000}]))
    with open_store(StoreConfig.from_location(run.store_location())) as store:
        ingest(store, delta, BuildConfig(progress=False))
        report = update_run(store, run.path)
    assert "value" in report.timings
    engine = Engine.open(run.path)  # verifies every file, the version's value tables too
    assert (run.versions / engine.version / "value" / "summary.json").exists()
    assert engine.knows_user("late-comer") and not engine.customer_value("late-comer").cold_start
    assert engine.customer_value("late-comer").as_of == "2023-11-14"  # the delta's event is the last one
    assert engine.recommend("late-comer", k=3, weights={"ctr": 1, "cvr": 1, "potential": 1})
    # the value stage re-run on the updated run (a periodic retrain of the value models):
    # its tables are as recent as the version's, so serving reads them; the trained run's
    # manifest vouches for its own files only, never for a version's
    with open_store(StoreConfig.from_location(run.store_location()), read_only=True) as store:
        run_value_stage(run.path, FAST, store=store)  # reads the live graph: the late-comer's purchase too
    assert not any(k.startswith(("versions/", "inbox/")) or k == "CURRENT" for k in run.manifest())
    from fusion.value.results import ValueTables, newest_tables
    from kg.run_dir import RunDir

    assert newest_tables(run.serving()).path == run.path
    assert Engine.open(run.path).value_table("ltv").equals(ValueTables.load(RunDir(run.path)).table("ltv"))
    assert not ValueTables.load(run).customer("late-comer").cold_start
    with open_store(StoreConfig.from_location(run.store_location())) as store:
        ingest(store, Dataset(name="delta2", interactions=make_table("interactions", [
            {"user_id": "later-still", "item_id": item, "event": "purchase", "timestamp": 1_700_000_100}])),
            BuildConfig(progress=False))
        update_run(store, run.path)
    engine = Engine.open(run.path)
    assert not engine.customer_value("later-still").cold_start
    assert newest_tables(run.serving()).path == run.versions / engine.version
    assert engine.customer_value("someone-else").cold_start


def test_refresh_value_applies_the_trained_models_to_the_graph_now(tmp_path):
    from kg.build import BuildConfig
    from kg.ingest import ingest
    from kg.run_dir import RunDir
    from loaders.dataset import Dataset, make_table

    run, dataset = make_tiny_run(tmp_path / "tiny")
    run_value_stage(run.path, FAST)
    item = dataset.items["item_id"].iloc[1]
    out = RunDir(tmp_path / "fresh")
    with open_store(StoreConfig.from_location(run.store_location())) as store:
        ingest(store, Dataset(name="delta", interactions=make_table("interactions", [
            {"user_id": "fresh-face", "item_id": item, "event": "purchase", "timestamp": 1_700_000_000}])),
            BuildConfig(progress=False))
        users = refresh_value(run.path, store, out)
    from fusion.value.results import ValueTables

    tables = ValueTables.load(out)
    assert users == len(tables.users) and not tables.customer("fresh-face").cold_start
    assert tables.summary["refreshed"] and tables.as_of == "2023-11-14"


def test_serving_imports_no_value_training_code():
    code = ("import sys, fusion.engine, fusion.value.results; "
            "print(sorted(m for m in sys.modules if m.startswith(('fusion.value.train', 'fusion.value.fitting', "
            "'fusion.value.baselines', 'pymc'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_value_config_round_trips_and_refuses_nonsense():
    c = ValueConfig(horizon_days=30, train_windows=2)
    assert ValueConfig.from_dict(c.to_dict()) == c
    for bad in ({"horizon_days": 0}, {"loyalty_floor": 1.5}, {"epochs": 0}):
        with pytest.raises(ConfigError):
            ValueConfig(**bad)
    with pytest.raises(ConfigError, match="unknown"):
        ValueConfig.from_dict({"horizon": 30})


# ------------------------------------------------------------------ cold start

def test_cold_start_counts_what_new_users_do_after_arriving_not_the_purchase_they_arrive_with():
    # a shop that records purchases only: every new user arrives by buying. Counting that
    # purchase made a visitor we know nothing about a sure buyer (P(active) 1) worth a first
    # order -- above every known customer of a shop where nobody comes back
    start, h = 1_600_000_000, 3 * DAY
    singles = _activity(start + np.arange(20) * DAY, users=np.arange(20), spend=np.full(20, 10.0))
    assert cold_start(singles, [start + 2 * DAY, start + 5 * DAY], h) == {"ltv": 0.0, "p_active": 0.0, "users": 6}
    # every second user buys again within the horizon (for 4, half a day later): that counts
    again = np.arange(0, 20, 2)
    act = _activity(np.r_[start + np.arange(20) * DAY, start + again * DAY + DAY // 2],
                    users=np.r_[np.arange(20), again], spend=np.r_[np.full(20, 10.0), np.full(10, 4.0)])
    cold = cold_start(act, [start + 2 * DAY, start + 5 * DAY], h)  # arrivals: users 3..8
    assert cold == {"ltv": pytest.approx(2.0), "p_active": pytest.approx(0.5), "users": 6}
    # where the arrival is a view, the purchase after it counts, as a first visit's should
    viewed = Activity(*[getattr(singles, f) for f in ("users", "items", "purchases")],
                      pd.DataFrame({"u": np.arange(20), "i": 0, "t": start + np.arange(20) * DAY - 60, "kind": 1}),
                      *[getattr(singles, f) for f in ("price", "has_price", "brand", "brand_names", "category",
                                                      "top_category", "category_names", "top_names")])
    assert cold_start(viewed, [start + 2 * DAY, start + 5 * DAY], h) == {"ltv": 10.0, "p_active": 1.0, "users": 6}
