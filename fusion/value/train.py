"""The value stage: train customer lifetime value, product potential and brand loyalty on
the temporal windows, measure them on the test window against their baselines, and write
the serving tables (predictions for the horizon after the data's last event).

:func:`train_value` does the work on an :class:`~fusion.value.temporal.Activity`;
:func:`run_value_stage` reads it from a run folder (the GNN stage's graph export, the text
stage's catalogue, and the GNN and text item vectors when they are there) and writes
``value/`` (:mod:`kg.run_dir`): ``users.parquet``, ``items.parquet``, ``loyalty.parquet``,
``brands.parquet`` (what :class:`fusion.value.results.ValueTables` serves), ``models/``
(each :class:`~fusion.value.fitting.TabularModel` and the PCA projections),
``summary.json`` (windows, cold start, the test report, training seconds, the serving
``bounds``) and ``report.md``.

Each model is fit on the training cut-offs with early stopping on the validation one, and
measured on the test one; with ``refit`` (default) the served model is then refit for the
same number of epochs on every window, the newest included.

**Bounds.** Every model reads its inputs clipped to the range of its training rows, and
the ZILN models' expected value is capped at their largest training target
(:class:`~fusion.value.fitting.TabularModel`, :meth:`~fusion.value.ziln.ZILN.mean`): a
customer's ``ltv`` never exceeds the most one customer spent in one horizon of the
training windows, a product's ``units`` the most one product sold in one. Both are saved
with the models, so the serving tables written after ``kgrec update``
(:func:`refresh_value`) keep them however far the data has moved. ``summary.json``'s
``bounds`` says, per model, how many served rows had an input outside the range
(``outside``) and how many expected values were cut at the cap (``capped``, ``cap``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from fusion.value.baselines import bgnbd_gamma_gamma
from fusion.value.config import ValueConfig
from fusion.value.features import Projection, Table, fit_projections, stack
from fusion.value.fitting import TabularModel, fit_tabular
from fusion.value.loyalty import brand_rates, loyalty_table
from fusion.value.ltv import cold_start, ltv_table
from fusion.value.metrics import auc, spearman, top_decile_capture, value_metrics
from fusion.value.potential import SALES_COLUMNS, potential_table
from fusion.value.results import record_skip
from fusion.value.temporal import DAY, Activity, Windows, activity_from_export, make_windows
from fusion.value.ziln import ZILN
from kg.config import torch_threads
from kg.errors import ConfigError, DataError
from kg.run_dir import RunDir, save_parquet, write_json, write_text


@dataclass
class FittedModel:
    """One value model as served: the network, its projections, and its test report."""

    model: TabularModel
    projections: dict[str, Projection]
    report: dict[str, Any] = field(default_factory=dict)
    test: Table | None = None                 #: the test table (bench / tests)
    test_prediction: np.ndarray | None = None  # the model's test prediction (ZILN mean / p_loyal)

    def save(self, folder: Path) -> None:
        self.model.save(folder)
        write_text(folder / "projections.json", json.dumps({k: p.to_dict() for k, p in self.projections.items()}))

    @classmethod
    def load(cls, folder: str | Path) -> FittedModel:
        folder = Path(folder)
        proj = json.loads((folder / "projections.json").read_text())
        return cls(TabularModel.load(folder), {k: Projection.from_dict(v) for k, v in proj.items()})

    def outputs(self, table: Table) -> torch.Tensor:
        return self.model.outputs(table.project(self.projections))


@dataclass
class ValueResult:
    """What :func:`train_value` returns: the windows, the three models, the serving tables
    and the report."""

    windows: Windows
    ltv: FittedModel
    potential: FittedModel
    potential_new: FittedModel | None  #: the model of new products (None: too few to train one)
    loyalty: FittedModel | None
    users: pd.DataFrame
    items: pd.DataFrame
    pairs: pd.DataFrame
    brands: pd.DataFrame
    cold_start: dict[str, float]
    report: dict[str, Any]
    threads: int = 0  #: torch CPU threads it trained with (``config.threads`` resolved)
    #: per model, the :func:`bounds_entry` of the serving tables
    bounds: dict[str, dict[str, Any]] = field(default_factory=dict)


def _fit(kind: str, train: list[Table], valid: Table, everything: list[Table], config: ValueConfig,
         blocks: bool = True, drop: tuple[str, ...] = ()) -> tuple[FittedModel, FittedModel]:
    """(the model fit on ``train`` with early stopping on ``valid``, the served one: refit on
    ``everything`` for as many epochs, or the same model without ``refit``)."""
    dims = config.embedding_dims if blocks else 0
    projections = fit_projections(train, dims)
    x_train, y_train = stack(train, projections)
    x_valid, y_valid = stack([valid], projections)
    columns = [c for c in x_train.columns if c not in drop]
    common = dict(hidden=config.hidden, layers=config.layers, dropout=config.dropout, lr=config.lr,
                  members=config.members if kind == "ziln" else 1,
                  weight_decay=config.weight_decay, batch_size=config.batch_size, epochs=config.epochs,
                  patience=config.patience, seed=config.seed)
    model = fit_tabular(kind, x_train, y_train, x_valid, y_valid, columns, **common)
    fitted = FittedModel(model, projections)
    if not config.refit:
        return fitted, fitted
    all_proj = fit_projections(everything, dims)
    x_all, y_all = stack(everything, all_proj)
    served = fit_tabular(kind, x_all, y_all, None, None, columns, fixed_epochs=model.info["epochs"],
                         **common)
    return fitted, FittedModel(served, all_proj)


def _ziln_predict(fitted: FittedModel, table: Table, bounds: dict[str, Any] | None = None,
                  counted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E[y], P(y > 0)) of a ZILN model per row of ``table``, E[y] capped at the model's
    largest training target (:meth:`ZILN.mean`); ``bounds``: a :func:`bounds_entry` the
    rows (those of the bool mask ``counted`` [n], default all) are counted into."""
    if not len(table):
        return np.zeros(0), np.zeros(0)
    frame = table.project(fitted.projections)
    out = fitted.model.outputs(frame)
    cap = fitted.model.target_max
    mean = ZILN.mean(out, cap)
    if bounds is not None:
        rows = np.ones(len(table), bool) if counted is None else counted
        capped = (ZILN.mean(out) > mean).numpy() if cap is not None else np.zeros(len(table), bool)
        _count_bounds(bounds, fitted, frame[rows], capped[rows])
    return mean.numpy().astype(np.float64), ZILN.p_positive(out).numpy().astype(np.float64)


def bounds_entry() -> dict[str, Any]:
    """An empty count of the rows a model served: ``rows``, ``outside`` (an input outside the
    training range, clipped), ``capped`` (the expected value cut at ``cap``, ZILN models)."""
    return {"rows": 0, "outside": 0, "capped": 0, "cap": None}


def _count_bounds(entry: dict[str, Any], fitted: FittedModel, frame: pd.DataFrame, capped: np.ndarray) -> None:
    entry["rows"] += len(frame)
    entry["outside"] += int(fitted.model.outside(frame).sum()) if len(frame) else 0
    entry["capped"] += int(np.count_nonzero(capped))
    if fitted.model.target_max is not None:
        entry["cap"] = fitted.model.target_max


def _potential_predict(model: FittedModel, new_model: FittedModel | None, table: Table,
                       bounds: dict[str, dict[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(units, p_sell) per product of ``table``: new products from ``new_model`` when there
    is one; ``bounds``: per model name (``potential``, ``potential_new``) the
    :func:`bounds_entry` its rows are counted into."""
    new = table.extra["new"].to_numpy()
    by_new = new_model is not None and new.any()
    # each product counted under the model that values it
    units, p = _ziln_predict(model, table, None if bounds is None else bounds.setdefault("potential", bounds_entry()),
                             ~new if by_new else None)
    if by_new:
        entry = None if bounds is None else bounds.setdefault("potential_new", bounds_entry())
        units[new], p[new] = _ziln_predict(new_model, table.select(new), entry)
    return units, p


def _loyalty_predict(fitted: FittedModel | None, table: Table, bounds: dict[str, dict[str, Any]] | None = None
                     ) -> np.ndarray:
    """p_loyal per pair of ``table``: the classifier's, or the past share without one."""
    if fitted is None or not len(table):
        return table.extra["past_share"].to_numpy(dtype=np.float64)
    frame = table.project(fitted.projections)
    if bounds is not None:
        _count_bounds(bounds.setdefault("loyalty", bounds_entry()), fitted, frame, np.zeros(len(frame), bool))
    return torch.sigmoid(fitted.model.outputs(frame)).numpy().astype(np.float64)


def train_value(activity: Activity, item_vectors: dict[str, np.ndarray] | None = None,
                config: ValueConfig | None = None, *, progress: bool = False,
                log: Callable[[str], None] | None = None) -> ValueResult:
    """Train and measure the three value models on ``activity`` (see the module docstring);
    ``item_vectors``: optional ``{"gnn": [I, dg], "text": [I, dt]}`` item embeddings."""
    config = config or ValueConfig()
    with torch_threads(config.threads) as threads:  # the caller's setting is restored afterwards
        result = _train_value(activity, item_vectors or {}, config, log or (print if progress else (lambda _msg: None)))
    result.threads = threads
    return result


def _train_value(activity: Activity, item_vectors: dict[str, np.ndarray], config: ValueConfig,
                 say: Callable[[str], None]) -> ValueResult:
    w = make_windows(activity, config.horizon_days, config.test_cutoff, config.train_windows,
                     config.min_history_days)
    h = w.horizon
    say(f"value: horizon {w.horizon_days:g} days; training cut-offs {len(w.train)}, validation and test one "
        f"horizon apart; {len(activity.purchases):,} purchases ({activity.rule})")
    report: dict[str, Any] = {"windows": w.to_dict(), "rule": activity.rule, "seconds": {}, "cpu_seconds": {}}
    bounds: dict[str, dict[str, Any]] = {"ltv": bounds_entry()}  # of the serving tables
    if activity.untimed:  # left out of the time axis (fusion.value.temporal); said once, in the report
        report["untimed"] = {"events": activity.untimed, "of": activity.events, "note": activity.untimed_note()}

    # ------------------------------------------------------------ lifetime value
    t0, c0 = time.perf_counter(), time.process_time()
    tables = {c: ltv_table(activity, c, h, item_vectors) for c in (*w.train, w.valid, w.test)}
    trained, served = _fit("ziln", [tables[c] for c in w.train], tables[w.valid], list(tables.values()), config)
    report["seconds"]["ltv"] = round(time.perf_counter() - t0, 2)
    report["cpu_seconds"]["ltv"] = round(time.process_time() - c0, 2)
    test = tables[w.test]
    mean, p = _ziln_predict(trained, test)
    cust = test.extra["customer"].to_numpy()
    y = test.target
    ltv_report = {"cohort": int(cust.sum()), "active": int((y[cust] > 0).sum()),
                  "ours": value_metrics(y[cust], mean[cust], p[cust]),
                  "last_period_spend": value_metrics(y[cust], test.extra["last_period_spend"].to_numpy()[cust])}
    if config.clv_baseline:
        bg = bgnbd_gamma_gamma(activity, w.test, h, test.rows)
        ltv_report["bgnbd_gamma_gamma"] = value_metrics(y[cust], bg["ltv"].to_numpy()[cust],
                                                        bg["p_active"].to_numpy()[cust])
        report["seconds"]["bgnbd_gamma_gamma"] = round(bg.attrs["seconds"], 2)
    trained.test, trained.test_prediction = test, mean
    report["ltv"] = ltv_report
    serve = ltv_table(activity, w.serve, h, item_vectors, target=False)
    s_mean, s_p = _ziln_predict(served, serve, bounds["ltv"])
    users = pd.DataFrame({"user_id": serve.extra["user_id"], "ltv": s_mean, "p_active": s_p,
                          "customer": serve.extra["customer"],
                          "last_period_spend": serve.extra["last_period_spend"]})
    cold = cold_start(activity, [*w.train, w.valid], h)
    say(f"value: lifetime value {report['seconds']['ltv']:.1f} s; test ({ltv_report['cohort']:,} customers): "
        f"Gini {ltv_report['ours']['gini']:.3f}, Spearman {ltv_report['ours']['spearman']:.3f}")

    # ------------------------------------------------------------ product potential
    t0, c0 = time.perf_counter(), time.process_time()
    tables = {c: potential_table(activity, c, h, item_vectors) for c in (*w.train, w.valid, w.test)}
    p_trained, p_served = _fit("ziln", [tables[c] for c in w.train], tables[w.valid], list(tables.values()), config)
    # new products (no sale before the cut-off) have a model of their own: where there are
    # sales they decide everything, and what tells new products apart gets lost
    # (trained on every product, without the columns of its own sales history: what the
    # catalogue, the neighbours and the exposure say a product sells)
    n_trained, n_served = _fit("ziln", [tables[c] for c in w.train], tables[w.valid], list(tables.values()),
                               config, drop=SALES_COLUMNS)
    report["seconds"]["potential"] = round(time.perf_counter() - t0, 2)
    report["cpu_seconds"]["potential"] = round(time.process_time() - c0, 2)
    test = tables[w.test]
    units = _potential_predict(p_trained, n_trained, test)[0]
    pot: dict[str, Any] = {}
    new = test.extra["new"].to_numpy()
    # "seen": products with any event before the cut-off -- the catalogue in play; a product
    # never seen in years ties at zero with most others, which rank correlations reward
    seen = test.frame["seen"].to_numpy() > 0
    for part, m in (("all", np.ones(len(test), bool)), ("seen", seen), ("new", new)):
        yt = test.target[m]
        pot[part] = {"products": int(m.sum()), "selling": int((yt > 0).sum())}
        for name, pred in (("ours", units), ("last_period_sales", test.extra["last_period_units"].to_numpy()),
                           ("category_mean", test.extra["category_mean"].to_numpy())):
            pot[part][name] = {"spearman": spearman(yt, pred[m]), "top_decile_capture": top_decile_capture(yt, pred[m]),
                               "auc": auc(yt > 0, pred[m])}
    p_trained.test, p_trained.test_prediction = test, units
    report["potential"] = pot
    serve = potential_table(activity, w.serve, h, item_vectors, target=False)
    s_units, s_p = _potential_predict(p_served, n_served, serve, bounds)
    items = pd.DataFrame({"item_id": serve.extra["item_id"], "units": s_units, "value": s_units * activity.price,
                          "p_sell": s_p, "new": serve.extra["new"], "last_period_units": serve.extra["last_period_units"]})
    say(f"value: product potential {report['seconds']['potential']:.1f} s; test Spearman "
        f"{pot['all']['ours']['spearman']:.3f} (new products {pot['new']['ours']['spearman']:.3f})")

    # ------------------------------------------------------------ brand loyalty
    t0, c0 = time.perf_counter(), time.process_time()
    tables = {c: loyalty_table(activity, c, h) for c in (*w.train, w.valid, w.test)}
    l_trained = l_served = None
    loyal: dict[str, Any] = {"pairs": int(len(tables[w.test]))}
    enough = [tables[c] for c in w.train if len(tables[c])]
    if enough and len(np.unique(np.concatenate([t.target for t in enough]))) == 2 and len(tables[w.valid]):
        l_trained, l_served = _fit("classifier", enough, tables[w.valid],
                                   [t for t in tables.values() if len(t)], config, blocks=False)
        test = tables[w.test]
        if len(test):
            pred = torch.sigmoid(l_trained.outputs(test)).numpy().astype(np.float64)
            loyal["ours"] = {"auc": auc(test.target > 0, pred)}
            loyal["past_share"] = {"auc": auc(test.target > 0, test.extra["past_share"].to_numpy())}
            loyal["loyal_share"] = float(test.target.mean())
            l_trained.test, l_trained.test_prediction = test, pred
    else:
        loyal["skipped"] = "too few labelled (user, brand) pairs in the training windows"
    report["seconds"]["loyalty"] = round(time.perf_counter() - t0, 2)
    report["cpu_seconds"]["loyalty"] = round(time.process_time() - c0, 2)
    report["loyalty"] = loyal
    serve = loyalty_table(activity, w.serve, h, target=False)
    s_loyal = _loyalty_predict(l_served, serve, bounds)  # no model: the past share is the best guess there is
    pairs = pd.DataFrame({"user_id": serve.extra["user_id"], "brand": serve.extra["brand"], "p_loyal": s_loyal,
                          "past_share": serve.extra["past_share"]})
    say(f"value: brand loyalty {report['seconds']['loyalty']:.1f} s; test AUC "
        f"{loyal.get('ours', {}).get('auc', float('nan')):.3f} (past share "
        f"{loyal.get('past_share', {}).get('auc', float('nan')):.3f})")
    return ValueResult(w, _with_test(served, trained), _with_test(p_served, p_trained), n_served,
                       _with_test(l_served, l_trained) if l_served is not None else None,
                       users, items, pairs, brand_rates(pairs), cold, report, bounds=bounds)


def _with_test(served: FittedModel, trained: FittedModel) -> FittedModel:
    """The served model carrying the trained one's test table and prediction (for reports)."""
    served.test, served.test_prediction = trained.test, trained.test_prediction
    return served


# ------------------------------------------------------------------ the run folder stage

def load_activity(run: RunDir, store=None, *, export=None, items: pd.DataFrame | None = None
                  ) -> tuple[Activity, dict[str, np.ndarray]]:
    """The activity (from ``store`` when given -- or its ``export`` and ``items`` read
    already --, else the run's graph export and catalogue) and the item vectors the run has."""
    from fusion.ranking.features import aligned
    from fusion.text.index import Embeddings
    from kg.export import GraphExport

    if store is not None or export is not None:
        from kg.catalogue import read_items
        from kg.export import export_graph

        export = export if export is not None else export_graph(store)
        items = items if items is not None else read_items(store)
    else:
        run.need(run.graph, "gnn")
        run.need(run.catalogue_items, "text")
        with run.reading(run.graph, "gnn"):
            export = GraphExport.load(run.graph)
        with run.reading(run.catalogue_items, "text"):
            items = pd.read_parquet(run.catalogue_items)
    activity = activity_from_export(export, items)
    vectors: dict[str, np.ndarray] = {}
    if run.embeddings.exists():
        with run.reading(run.embeddings, "gnn"):
            gnn = np.load(run.embeddings, allow_pickle=False)
            vec, found = aligned(activity.items, gnn["item_ids"], torch.from_numpy(gnn["item"]))
        if found.any():
            vectors["gnn"] = vec.numpy().astype(np.float64)
    if run.text_items.exists():
        with run.reading(run.text_items, "text"):
            text = Embeddings.load(run.text_items)
            vec, found = aligned(activity.items, text.ids, text.vectors)
        if found.any():
            vectors["text"] = vec.numpy().astype(np.float64)
    return activity, vectors


def report_markdown(report: dict[str, Any], bounds: dict[str, dict[str, Any]] | None = None) -> str:
    """The test report as Markdown tables (what ``report.md`` holds); ``bounds``: the
    serving tables' (:attr:`ValueResult.bounds`), a sentence each."""
    w = report["windows"]
    day = lambda t: pd.Timestamp(int(t), unit="s").strftime("%Y-%m-%d")  # noqa: E731
    lines = [f"Horizon {w['horizon_days']:g} days; test window {day(w['test'])} .. {day(w['serve'])}; "
             f"purchases = {report['rule']} events."]
    if "untimed" in report:
        lines.append(report["untimed"]["note"])
    lines.append("")
    ltv = report["ltv"]
    lines += [f"Lifetime value ({ltv['cohort']:,} customers, {ltv['active']:,} of them active in the test window):", "",
              "| model | normalized Gini | Spearman | decile MAPE | P(active) AUC |", "|---|---:|---:|---:|---:|"]
    for name in ("ours", "bgnbd_gamma_gamma", "last_period_spend"):
        if name in ltv:
            m = ltv[name]
            lines.append(f"| {name.replace('_', ' ')} | {m['gini']:.3f} | {m['spearman']:.3f} | "
                         f"{m['decile_mape']:.3f} | {m['auc']:.3f} |")
    pot = report["potential"]
    lines += ["", "Product potential (Spearman / top-decile capture of the units sold; seen = any event "
              "before the cut-off, new = no sale before it):", "",
              "| model | " + " | ".join(f"{part} ({pot[part]['products']:,}, {pot[part]['selling']:,} selling)"
                                       for part in ("all", "seen", "new")) + " |", "|---|---:|---:|---:|"]
    for name in ("ours", "last_period_sales", "category_mean"):
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(
            f"{pot[part][name]['spearman']:.3f} / {pot[part][name]['top_decile_capture']:.3f}"
            for part in ("all", "seen", "new")) + " |")
    loyal = report["loyalty"]
    lines += ["", f"Brand loyalty ({loyal['pairs']:,} labelled (user, brand) pairs in the test window):", ""]
    if "ours" in loyal:
        lines += ["| model | AUC |", "|---|---:|", f"| ours | {loyal['ours']['auc']:.3f} |",
                  f"| past share | {loyal['past_share']['auc']:.3f} |"]
    else:
        lines.append(loyal.get("skipped", "no labelled pairs in the test window"))
    if bounds:
        lines += ["", "Serving tables: inputs outside the training range are clipped to it, expected values "
                  "capped at the largest training target:"]
        for name, b in bounds.items():
            cap = f"; {b['capped']:,} capped at {b['cap']:,.2f}" if b.get("cap") is not None else ""
            lines.append(f"* {name}: {b['outside']:,} of {b['rows']:,} rows had an input outside the range{cap}.")
    s = report["seconds"]
    lines += ["", "Training seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()) + "."]
    return "\n".join(lines)


def refresh_value(run_dir: str | Path, store, out: RunDir, *, export=None, items: pd.DataFrame | None = None) -> int:
    """Write fresh value tables into ``out`` (e.g. a new run version being written) with the
    run's trained value models applied to everything in ``store`` now -- no training: the
    hook for :func:`fusion.update.update_run`, so the users and products an update folds in
    get their own values. ``export`` / ``items``: the store's graph export and items table
    when the caller has read them already. Returns the number of users valued.

    The models keep the bounds they were trained with (module docstring): the data may have
    moved far from the training windows since (a burst of events years later), their
    inputs are clipped to the training range and the expected values capped as at training
    time; ``summary.json``'s ``bounds`` counts the rows concerned. Models saved before the
    bounds existed are clipped to the Samuelson bound of their saved standardisation
    (:class:`~fusion.value.fitting.TabularModel`) and capped at e^30 only."""
    run = RunDir(run_dir)
    run.need(run.value_summary, "value")
    summary = json.loads(run.value_summary.read_text())
    models = {name: FittedModel.load(run.value_models / name) for name in ("ltv", "potential", "potential_new", "loyalty")
              if (run.value_models / name / "config.json").exists()}
    activity, vectors = load_activity(run, store, export=export, items=items)
    h = int(round(float(summary["horizon_days"]) * DAY))
    serve = activity.last_time()
    bounds: dict[str, dict[str, Any]] = {"ltv": bounds_entry()}
    users_t = ltv_table(activity, serve, h, vectors, target=False)
    ltv, p_active = _ziln_predict(models["ltv"], users_t, bounds["ltv"])
    items_t = potential_table(activity, serve, h, vectors, target=False)
    units, p_sell = _potential_predict(models["potential"], models.get("potential_new"), items_t, bounds)
    pairs_t = loyalty_table(activity, serve, h, target=False)
    loyal = _loyalty_predict(models.get("loyalty"), pairs_t, bounds)
    pairs = pd.DataFrame({"user_id": pairs_t.extra["user_id"], "brand": pairs_t.extra["brand"], "p_loyal": loyal,
                          "past_share": pairs_t.extra["past_share"]})
    save_parquet(pd.DataFrame({"user_id": users_t.extra["user_id"], "ltv": ltv, "p_active": p_active,
                               "customer": users_t.extra["customer"],
                               "last_period_spend": users_t.extra["last_period_spend"]}), out.value_users)
    save_parquet(pd.DataFrame({"item_id": items_t.extra["item_id"], "units": units, "value": units * activity.price,
                               "p_sell": p_sell, "new": items_t.extra["new"],
                               "last_period_units": items_t.extra["last_period_units"]}), out.value_items)
    save_parquet(pairs, out.value_loyalty)
    save_parquet(brand_rates(pairs), out.value_brands)
    write_json(out.value_summary, {**summary, "as_of": serve, "refreshed": True, "bounds": bounds})
    return len(users_t)


def run_value_stage(run_dir: str | Path, config: ValueConfig | None = None, *, store=None,
                    progress: bool = False) -> dict:
    """Train the value models and write ``value/`` (module docstring); returns the report.
    Data the models do not fit (no time span, a horizon longer than it, no purchases ...)
    raises the :class:`ConfigError` / :class:`DataError` saying why, after noting it in
    ``run.json`` (:func:`fusion.value.results.record_skip`) so that reading the missing
    tables later says the stage was skipped and why.

    The events and the catalogue come from ``store`` when one is given (a connected
    GraphStore: what ``kgrec train`` passes, so a value stage re-run after ``kgrec update``
    sees the events ingested since), else from the run folder's graph export and catalogue.
    The item vectors are always the run's (products it never embedded get none)."""
    run = RunDir(run_dir)
    config = config or ValueConfig()
    run.verify(("gnn", "text"))
    try:
        activity, vectors = load_activity(run, store)
        result = train_value(activity, vectors, config, progress=progress)
    except (ConfigError, DataError) as exc:  # data the value models do not fit: recorded, then raised
        record_skip(run, str(exc))
        raise
    save_parquet(result.users, run.value_users)
    save_parquet(result.items, run.value_items)
    save_parquet(result.pairs, run.value_loyalty)
    save_parquet(result.brands, run.value_brands)
    result.ltv.save(run.value_models / "ltv")
    result.potential.save(run.value_models / "potential")
    if result.potential_new is not None:
        result.potential_new.save(run.value_models / "potential_new")
    if result.loyalty is not None:
        result.loyalty.save(run.value_models / "loyalty")
    write_json(run.value_summary, {"as_of": int(result.windows.serve), "horizon_days": result.windows.horizon_days,
                                   "cold_start": result.cold_start, "loyalty_floor": config.loyalty_floor,
                                   "report": result.report, "bounds": result.bounds})
    write_text(run.value_report, report_markdown(result.report, result.bounds) + "\n")
    run.record_ran_with("value", threads=result.threads)
    run.write_manifest()
    return result.report
