"""Value models' quality: customer lifetime value, product potential and brand loyalty on
the synthetic shop (with its lifecycle truth planted) and on Amazon 2018 Gift Cards.

For each data set: build the graph (embedded store, a temporary folder), train the GNN
stage (LightGCN) for the graph vectors and embed the products with MiniLM (as the text
stage does, without fine-tuning) for the text vectors, then train the value models on the
temporal windows (:mod:`fusion.value.train`: horizon an eighth of the time span, three
training cut-offs, validation and test one horizon apart) and measure them on the test
window, each against its baselines:

* lifetime value, over the customers with a purchase before the test cut-off: normalized
  Gini of the gain curve, Spearman, decile MAPE, and the AUC of P(active) -- ours (ZILN),
  BG/NBD + Gamma-Gamma (PyMC-Marketing, MAP; ``pip install -e .[clv]``), last-period spend;
* product potential (units sold over the horizon): Spearman and top-decile capture -- ours,
  last-period sales, category mean -- for all products, for those seen before the cut-off
  (any event: the catalogue in play) and for new ones (no sale before the cut-off);
* brand loyalty: AUC of P(next purchase in the category is the brand) -- ours, past share;
* the seconds each model trained (and the BG/NBD + Gamma-Gamma fit).

On the synthetic shop the planted truth is known: the table also gives the Spearman of each
LTV with the *planted* expected spend, and of each potential with the planted expected units
(all products, and new products on sale at the cut-off). ``--out`` gets the decile chart,
``value_deciles.png``: mean predicted against mean actual spend per decile of predicted
LTV (the ZILN paper's calibration chart), ours and BG/NBD, one panel per data set.

    python bench/value_quality.py [--skip-gift-cards] [--out bench/out] [--threads 2]

Quality figures do not depend on the machine's load; the seconds do (the load average is
printed with them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.value.baselines import bgnbd_gamma_gamma, clv_available  # noqa: E402
from fusion.value.config import ValueConfig  # noqa: E402
from fusion.value.metrics import decile_table, spearman  # noqa: E402
from fusion.value.temporal import activity_from_export  # noqa: E402
from fusion.value.train import train_value  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.catalogue import read_catalogue  # noqa: E402
from kg.export import export_graph  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402

SHARED = Path(os.environ.get("KGREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
#: the synthetic shop with its lifecycle truth: users join and churn, spend levels differ,
#: 30% of the products launch during the year
SYNTHETIC = dict(n_users=3000, n_items=1000, n_interactions=200_000, n_queries=5, seed=3, join_spread=0.5,
                 churn_rate=1.0, spend_sigma=0.8, new_item_share=0.3, launch_from=0.3, brand_weight=0.5)


def vectors(store, root: Path, threads: int) -> tuple[dict[str, np.ndarray], dict[str, float], object]:
    """(item vectors {"gnn", "text"}, seconds of each, the activity) of the graph in ``store``."""
    import torch

    from fusion.ranking.features import aligned
    from fusion.text.encoder import TextEncoder
    from fusion.text.index import embed_items
    from kg.pipeline import GnnRunConfig, train_gnn
    from kg.train import TrainConfig

    export, items = export_graph(store), read_catalogue(store).items
    activity = activity_from_export(export, items)
    seconds = {}
    t = time.perf_counter()
    run = train_gnn(store, root / "run", GnnRunConfig(train=TrainConfig(model="lightgcn", epochs=60, lr=0.01,
                                                                        patience=5, eval_every=5, threads=threads)),
                    progress=False)
    seconds["gnn"] = time.perf_counter() - t
    z = np.load(root / "run" / "embeddings.npz", allow_pickle=False)
    gnn, _ = aligned(activity.items, z["item_ids"], torch.from_numpy(z["item"]))
    t = time.perf_counter()
    text = embed_items(TextEncoder.from_pretrained(), items)
    seconds["text"] = time.perf_counter() - t
    tv, _ = aligned(activity.items, text.ids, text.vectors)
    del run
    return {"gnn": gnn.numpy().astype(np.float64), "text": tv.numpy().astype(np.float64)}, seconds, activity


def evaluate(name: str, dataset, root: Path, threads: int, truth=None) -> dict:
    """Train and measure everything on one data set; prints its tables, returns what the chart needs."""
    with open_store(StoreConfig(kind="embedded", path=str(root / "graph"))) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
        vecs, seconds, activity = vectors(store, root, threads)
    result = train_value(activity, vecs, ValueConfig(threads=threads))
    w, rep = result.windows, result.report
    test, ours = result.ltv.test, result.ltv.test_prediction
    customers = test.extra["customer"].to_numpy()
    y = test.target
    bg = None
    if clv_available():
        bg = bgnbd_gamma_gamma(activity, w.test, w.horizon, test.rows)
        from fusion.value.metrics import value_metrics

        rep["ltv"]["bgnbd_gamma_gamma"] = value_metrics(y[customers], bg["ltv"].to_numpy()[customers],
                                                        bg["p_active"].to_numpy()[customers])
        rep["seconds"]["bgnbd_gamma_gamma"] = bg.attrs["seconds"]
        rep["cpu_seconds"]["bgnbd_gamma_gamma"] = bg.attrs["cpu_seconds"]
    planted_u = planted_i = None
    if truth is not None:
        from loaders.synthetic import planted_value

        planted_u, planted_i = planted_value(dataset, w.test, w.test + w.horizon)
        planted_u, planted_i = planted_u.set_index("user_id"), planted_i.set_index("item_id")
    day = lambda t: pd.Timestamp(int(t), unit="s").strftime("%Y-%m-%d")  # noqa: E731
    ltv = rep["ltv"]
    print(f"\n### {name}: horizon {w.horizon_days:g} days, test window {day(w.test)} .. {day(w.serve)}, "
          f"{len(activity.purchases):,} purchases ({activity.rule} events)\n")
    print(f"Lifetime value, {ltv['cohort']:,} customers ({ltv['active']:,} active in the test window):\n")
    head = "| model | normalized Gini | Spearman | decile MAPE | P(active) AUC |"
    print(head + (" Spearman with planted spend |" if planted_u is not None else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if planted_u is not None else ""))
    preds = {"ours (ZILN)": ours, "BG/NBD + Gamma-Gamma": None if bg is None else bg["ltv"].to_numpy(),
             "last-period spend": test.extra["last_period_spend"].to_numpy()}
    keys = {"ours (ZILN)": "ours", "BG/NBD + Gamma-Gamma": "bgnbd_gamma_gamma", "last-period spend": "last_period_spend"}
    for label, pred in preds.items():
        if pred is None:
            print(f"| {label} | not installed ({'pip install -e .[clv]'}) | | | |")
            continue
        m = ltv[keys[label]]
        extra = ""
        if planted_u is not None:
            planted = planted_u.loc[test.extra["user_id"], "expected_spend"].to_numpy()
            extra = f" {spearman(planted[customers], pred[customers]):.3f} |"
        print(f"| {label} | {m['gini']:.3f} | {m['spearman']:.3f} | {m['decile_mape']:.3f} | {m['auc']:.3f} |{extra}")
    pot = rep["potential"]
    ptest, punits = result.potential.test, result.potential.test_prediction
    print(f"\nProduct potential, units over the horizon: {pot['all']['products']:,} products "
          f"({pot['all']['selling']:,} selling), {pot['seen']['products']:,} seen before the cut-off "
          f"({pot['seen']['selling']:,} selling), {pot['new']['products']:,} new ({pot['new']['selling']:,} selling):\n")
    cols = ("| model | Spearman | top-decile capture | seen: Spearman | seen: top-decile capture | new: Spearman | "
            "new: top-decile capture |")
    planted_cols = " planted Spearman | new on sale: planted Spearman |" if planted_i is not None else ""
    print(cols + planted_cols)
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if planted_i is not None else ""))
    new = ptest.extra["new"].to_numpy()
    for label, key, pred in (("ours (ZILN)", "ours", punits),
                             ("last-period sales", "last_period_sales", ptest.extra["last_period_units"].to_numpy()),
                             ("category mean", "category_mean", ptest.extra["category_mean"].to_numpy())):
        a, n, v = pot["all"][key], pot["new"][key], pot["seen"][key]
        extra = ""
        if planted_i is not None:
            e = planted_i.loc[ptest.extra["item_id"]]
            units, on_sale = e["expected_units"].to_numpy(), new & e["launched"].to_numpy()
            extra = f" {spearman(units, pred):.3f} | {spearman(units[on_sale], pred[on_sale]):.3f} ({on_sale.sum()}) |"
        print(f"| {label} | {a['spearman']:.3f} | {a['top_decile_capture']:.3f} | {v['spearman']:.3f} | "
              f"{v['top_decile_capture']:.3f} | {n['spearman']:.3f} | {n['top_decile_capture']:.3f} |{extra}")
    loyal = rep["loyalty"]
    print(f"\nBrand loyalty, {loyal['pairs']:,} labelled (user, brand) pairs in the test window:\n")
    if "ours" in loyal:
        print(f"| model | AUC |\n|---|---:|\n| ours | {loyal['ours']['auc']:.3f} |\n"
              f"| past share | {loyal['past_share']['auc']:.3f} |")
    else:
        print(loyal.get("skipped", "no labelled pairs"))
    s, c = rep["seconds"], rep["cpu_seconds"]
    both = lambda k: f"{s[k]:.1f} ({c[k]:.1f} CPU)"  # noqa: E731
    print(f"\nTraining seconds, wall (CPU): LTV {both('ltv')}, potential {both('potential')}, loyalty {both('loyalty')}"
          + (f", BG/NBD + Gamma-Gamma fit {both('bgnbd_gamma_gamma')}" if "bgnbd_gamma_gamma" in s else "")
          + f" (the shared stages: GNN {seconds['gnn']:.1f}, MiniLM product embeddings {seconds['text']:.1f}); "
          f"load average {os.getloadavg()[0]:.1f}")
    return {"y": y[customers], "ours": ours[customers], "bg": None if bg is None else bg["ltv"].to_numpy()[customers]}


def chart(panels: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (name, d) in zip(axes[0], panels.items()):
        x = np.arange(10)
        for label, pred, shift in (("ours (ZILN)", d["ours"], -0.2), ("BG/NBD + Gamma-Gamma", d["bg"], 0.2)):
            if pred is None:
                continue
            t = decile_table(d["y"], pred)
            ax.bar(x + shift, t["y_pred"], width=0.4, alpha=0.5, label=f"{label}: predicted")
            ax.plot(x + shift, t["y_true"], "o-", label=f"{label}: actual")
        ax.set_xticks(x)
        ax.set_xlabel("decile of predicted lifetime value (0 = lowest)")
        ax.set_ylabel("mean spend over the horizon")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-gift-cards", action="store_true")
    p.add_argument("--out", default="bench/out")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from loaders import load
    from loaders.synthetic import SyntheticConfig, generate

    print(f"load average at start {os.getloadavg()[0]:.1f}; pymc-marketing "
          f"{'installed' if clv_available() else 'not installed'}")
    panels = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = SyntheticConfig(**SYNTHETIC)
        dataset = generate(config)
        panels["synthetic shop"] = evaluate(f"synthetic shop ({config.n_users:,} users, {config.n_items:,} products, "
                                            "lifecycle planted)", dataset, Path(tmp) / "synthetic", args.threads,
                                            truth=True)
        if not args.skip_gift_cards:
            gift = SHARED / "amazon2018-gift-cards"
            if gift.exists():
                panels["Amazon 2018 Gift Cards"] = evaluate("Amazon 2018 Gift Cards", load("amazon2018", gift),
                                                            Path(tmp) / "gift", args.threads)
            else:
                print(f"\n(Gift Cards skipped: {gift} is absent)")
    print(f"\ndecile chart: {chart(panels, Path(args.out) / 'value_deciles.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
