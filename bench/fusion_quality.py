"""Fusion quality: what each part adds, on synthetic data and on Amazon 2018 Gift Cards.

For each data set: build the graph (embedded store, a temporary folder), train every
stage (KG-aware GNN, MiniLM fine-tuning, fusion with ESMM, and the CVR-on-clicks
baseline), and print the comparison table of :mod:`fusion.ranking.comparison` -- popularity,
GNN only, text only, fused (and, where the source logs impressions, fused without its
exposure term, :mod:`fusion.ranking.exposure`) -- with Recall@10/NDCG@10 (recommendation, the GNN split's
held-out purchases), nDCG@10 (search, held-out queries), and AUC of CTR, CVR (on clicked
test impressions) and CTCVR (purchase over all test impressions).

Gift Cards has reviews only: every reviewed pair is a "click", a conversion is a rating
>= 4, and negatives are sampled (see :mod:`fusion.ranking.examples`); it has no impressions, so
the AUCs are over positives and sampled negatives, and no judgements (no search column).

Counterfactual table (synthetic): offline Recall@K only credits products the shop's
logging policy happened to show; the generator's planted P(click) and P(purchase | click)
score every model's top-10 by what it would earn if shown (:mod:`fusion.ranking.planted`) --
expected clicks, purchases and order value per user, all 2,000 users -- and the planted
truth's own ranking is put through the logged metric (its Recall@10: the ceiling of a
perfect click / purchase model, over every product and over the GNN's candidates); between
the two, the fused model's own inputs fit to the planted probabilities themselves
(:func:`~fusion.ranking.planted.fit_to_planted`: perfect labels, every user) -- how far
better labels alone would take the fused ranker on the logged metric and on the planted one.

The trade-off plot (synthetic, where the planted truth is known): for weights
``{"ctr": 1, "cvr": 1, "value": w}`` (no exposure term: what the lists would earn if shown)
with ``w`` swept from 0 to 4 (and ``{"ctr": 1}``),
the Engine recommends a top-10 to each of 300 users; the *true* expected clicks
(sum of the planted p_click) and expected order value (sum of p_click x p_buy x price x
E[quantity]) of those lists are plotted against each other.

Seeds (``--seeds N``): the GNN and text stages are trained once, the fusion stage N
times (the default stage is an ensemble of ``FusionConfig.members`` = 5 models with seeds
0-4, cross-fitted: :class:`~fusion.ranking.ensemble.FusionEnsemble`; the k-th stage's
seeds are 5k .. 5k+4, :func:`~fusion.pipeline.fusion_seeds`); the tables show the first,
and a line per data set gives the fused Recall@10 / NDCG@10 of every stage with their
mean and standard deviation, and of all N stages' models averaged; under each
table, one standard error of every model's Recall@10 (binomial, over the test users:
each has one held-out purchase under leave-last-out) and the paired standard error of the
fused ranker's difference from the GNN.

Other shops (``--shop-seeds 7 11 ...``): one synthetic shop is one draw -- its 693 test
users put one standard error of about 0.015 on a Recall@10 -- so the GNN-versus-fused
comparison is repeated on shops of the same size drawn with other generator seeds, every
stage trained again on each; a table gives per shop the logged Recall@10 of the GNN and the
fused ranker, their difference beside one standard error (the GNN's, binomial) and the
paired standard error of the difference (user by user,
:func:`~fusion.ranking.comparison.paired_recall`), and the planted expected purchases of
their top-10s, with the mean difference over the shops (the bench's own shop, seed 0,
included) (:func:`across_shops`).

Input ablation (Gift Cards, ``--ablation``): the fusion stage retrained with one part
taken away at a time -- its text inputs, its side features, its GNN inputs (the GNN
still picks the 100 candidates), the candidate negatives -- or changed: fit on the
training period instead of the validation period (``train_on="auto"`` picks the
validation period on both data sets: at least 300 conversions there), re-rank all
products instead of the GNN's top-100; each for every seed, as mean +- standard
deviation of test Recall@10 and NDCG@10 (:func:`ablation`).

    python bench/fusion_quality.py [--seeds 3] [--ablation] [--shop-seeds 7 11] [--skip-gift-cards]
                                   [--skip-synthetic] [--out bench/out]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.ranking.comparison import count_test_users, markdown, PAIRED_SE, recall_note, recall_se  # noqa: E402
from fusion.demo import demo_config  # noqa: E402
from fusion.engine import Engine  # noqa: E402
from fusion.ranking.planted import fit_to_planted, fused_list, model_lists, planted_recall, planted_value  # noqa: E402
from fusion.ranking.planted import markdown as planted_markdown  # noqa: E402
from fusion.pipeline import fusion_seeds, load_fusion_data, train_all  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.export import GraphExport  # noqa: E402
from kg.run_dir import RunDir  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(dataset, root: Path, config) -> tuple[dict, Path, float]:
    db, run_dir = str(root / "graph"), root / "run"
    with open_store(StoreConfig(kind="embedded", path=db)) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
    start = time.perf_counter()
    with open_store(StoreConfig(kind="embedded", path=db), read_only=True) as store:
        out = train_all(store, run_dir, config)
    return out["fusion"], run_dir, time.perf_counter() - start


#: the input ablation: (row, FusionConfig changes)
ABLATION = (
    ("fused (every input)", {}),
    ("without text inputs", {"without": ("text",)}),
    ("without side features", {"without": ("side",)}),
    ("without GNN inputs (GNN candidates kept)", {"without": ("gnn",)}),
    ("side features only (GNN candidates)", {"without": ("gnn", "text")}),
    ("without candidate negatives", {"candidate_negatives": 0}),
    ("fit on the training period instead", {"train_on": "train"}),
    ("re-rank every product, not the GNN top-100", {"candidates": 0}),
)


def mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def seeds_line(name: str, seeds: tuple[list[dict], dict | None]) -> str:
    """The fused Recall@10 of every fusion stage (:func:`~fusion.pipeline.fusion_seeds`),
    their mean ± sd, and all their models averaged
    (:class:`~fusion.ranking.ensemble.FusionEnsemble`)."""
    per_seed, ensemble = seeds
    fused = [m["recall@10"] for m in per_seed]
    stages = f"{len(per_seed)} fusion stage{'s' if len(per_seed) != 1 else ''}"
    line = (f"{name}, fused over {stages} (seeds): Recall@10 "
            + " / ".join(f"{r:.4f}" for r in fused) + f" (mean ± sd {mean_sd(fused)}), NDCG@10 "
            + mean_sd([m["ndcg@10"] for m in per_seed]))
    if ensemble is not None:
        line += (f"; the {len(per_seed)} stages' models averaged: Recall@10 {ensemble['recall@10']:.4f}, "
                 f"NDCG@10 {ensemble['ndcg@10']:.4f}")
    return line


def ablation(run_dir: Path, config, seeds: int) -> str:
    """The input ablation table (module docstring) of a trained run folder, printed row by
    row as it is measured."""
    from dataclasses import replace

    from fusion.ranking.train import evaluate_fusion, train_fusion

    data = load_fusion_data(run_dir, config.fusion.examples)
    rows = ["| fused ranker | Recall@10 | NDCG@10 |", "|---|---:|---:|"]
    print("\n".join(rows), flush=True)
    for name, changes in ABLATION:
        metrics = []
        for seed in range(seeds):
            fc = replace(config.fusion, seed=seed, **changes)
            result = train_fusion(data, fc)
            metrics.append(evaluate_fusion(result.model, replace(data, tables=result.tables), "test",
                                           candidates=fc.candidates))
        rows.append(f"| {name} | {mean_sd([m['recall@10'] for m in metrics])} | "
                    f"{mean_sd([m['ndcg@10'] for m in metrics])} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


#: the synthetic shops' size (the demo's): users, products, events, judged queries
SHOP = {"n_users": 2000, "n_items": 500, "n_interactions": 100_000, "n_queries": 150}


def every_user_worth(truth, engine: Engine) -> dict[str, dict[str, float]]:
    """:func:`~fusion.ranking.planted.planted_value` of every model's top-10 for every user."""
    users = np.arange(len(engine.user_index))
    return planted_value(truth, engine, model_lists(engine, users, 10), users)


def shop_row(seed: int, results: dict, worth: dict, split) -> dict[str, float]:
    """The GNN and the fused ranker on one synthetic shop: logged test Recall@10 (``results``),
    one standard error of the GNN's (binomial) and the paired standard error of their
    difference (:func:`~fusion.ranking.comparison.paired_recall`), planted expected
    purchases of their top-10s (``worth``: :func:`~fusion.ranking.planted.planted_value` of
    every user's lists)."""
    n = count_test_users(split)
    gnn = results["gnn"]["recall@10"]
    return {"seed": seed, "test users": n, "gnn": gnn, "fused": results["fused"]["recall@10"],
            "se": recall_se(gnn, n), "paired se": results["fused"][PAIRED_SE],
            "gnn planted": worth["gnn"]["purchases"], "fused planted": worth["fused"]["purchases"]}


def shops_table(rows: list[dict[str, float]]) -> str:
    """A markdown row per :func:`shop_row`, then the mean ± sd of the fused − GNN differences,
    how many shops have the fused Recall@10 above the GNN's by more than one SE (the GNN's
    binomial SE, and the paired SE of the difference), and both Recall@10s pooled over every
    shop's test users (one binomial SE of the pooled GNN figure, and the pooled paired SE of
    the difference: :math:`\\sqrt{\\sum_s n_s^2 \\mathrm{SE}_s^2} / \\sum_s n_s`)."""
    lines = ["| generator seed | test users | GNN Recall@10 | fused Recall@10 | fused − GNN | one SE (GNN) "
             "| paired SE | GNN planted purchases | fused planted purchases |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['test users']} | {r['gnn']:.4f} | {r['fused']:.4f} | "
                     f"{r['fused'] - r['gnn']:+.4f} | {r['se']:.4f} | {r['paired se']:.4f} | "
                     f"{r['gnn planted']:.3f} | {r['fused planted']:.3f} |")
    d = [r["fused"] - r["gnn"] for r in rows]
    p = [r["fused planted"] - r["gnn planted"] for r in rows]
    above = [sum(x > r[k] for x, r in zip(d, rows)) for k in ("se", "paired se")]
    lines.append(f"\nover {len(rows)} shops, fused − GNN: logged Recall@10 {mean_sd(d)} (mean ± sd), "
                 f"planted expected purchases {mean_sd(p)}; shops where the fused Recall@10 is above the "
                 f"GNN's by more than one SE: {above[0]} of {len(rows)} (by more than one paired SE: {above[1]})")
    n = sum(r["test users"] for r in rows)
    gnn, fused = (sum(r[k] * r["test users"] for r in rows) / n for k in ("gnn", "fused"))
    paired = float(np.sqrt(sum((r["test users"] * r["paired se"]) ** 2 for r in rows))) / n
    lines.append(f"pooled over the {n:,} test users: GNN Recall@10 {gnn:.4f}, fused {fused:.4f} "
                 f"({fused - gnn:+.4f}; one SE {recall_se(gnn, n):.4f}, paired SE {paired:.4f})")
    return "\n".join(lines)


def across_shops(seeds, config, root: Path, first: dict[str, float] | None = None) -> str:
    """:func:`shops_table` of a synthetic shop per generator seed (:data:`SHOP`'s size),
    every stage trained on each; ``first``: a row already measured (the bench's own shop)."""
    from loaders.synthetic import SyntheticConfig, generate, ground_truth

    rows = [first] if first else []
    for seed in seeds:
        shop = SyntheticConfig(**SHOP, seed=seed)
        results, run_dir, seconds = run(generate(shop), root / f"shop-{seed}", config)
        worth = every_user_worth(ground_truth(shop), Engine.open(run_dir))
        rows.append(shop_row(seed, results, worth, RunDir(run_dir).load_split()))
        print(f"shop {seed}: trained in {seconds:.0f} s; GNN {rows[-1]['gnn']:.4f}, fused {rows[-1]['fused']:.4f}",
              flush=True)
    return shops_table(rows)


def tradeoff(engine: Engine, truth, out: Path, n_users: int = 300) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = np.arange(n_users)
    sweeps = [("ctr only", {"ctr": 1.0})] + [(f"value {w:g}", {"ctr": 1.0, "cvr": 1.0, "value": w})
                                               for w in (0, 0.25, 0.5, 1, 2, 4)]
    worth = planted_value(truth, engine, {name: fused_list(engine, users, 10, weights) for name, weights in sweeps},
                          users)
    points = [(name, m["clicks"], m["value"]) for name, m in worth.items()]
    rows = [f"| {name} | {clicks:.3f} | {value:.2f} |" for name, clicks, value in points]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p[1] for p in points[1:]], [p[2] for p in points[1:]], "o-", label="ctr·cvr·value^w")
    ax.plot([points[0][1]], [points[0][2]], "s", label="ctr only")
    for name, x, y in points:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("expected clicks in the top-10 (planted truth)")
    ax.set_ylabel("expected order value of the top-10")
    ax.set_title("kgrec: objective weights trade clicks for order value")
    ax.legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fusion_tradeoff.png", dpi=120)
    return "\n".join(["| weights | expected clicks / user | expected order value / user |", "|---|---:|---:|", *rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out", help="where the PNG goes")
    p.add_argument("--skip-gift-cards", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--text-steps", type=int, default=60, help="MiniLM fine-tuning steps per data set")
    p.add_argument("--seeds", type=int, default=1,
                   help="train the fusion stage N times, with seeds 0.., 5.., 10.. (GNN and text trained once)")
    p.add_argument("--ablation", action="store_true", help="Gift Cards: the fused ranker's input ablation")
    p.add_argument("--shop-seeds", type=int, nargs="*", default=[],
                   help="synthetic: also train and compare on shops drawn with these generator seeds")
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    from dataclasses import replace

    from loaders.synthetic import SyntheticConfig, generate, ground_truth

    config = demo_config()
    config = replace(config, text=replace(config.text, train=replace(config.text.train, max_steps=args.text_steps)))
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_synthetic:
            shop = SyntheticConfig(**SHOP)
            synthetic = generate(shop)
            results, run_dir, seconds = run(synthetic, Path(tmp) / "synthetic", config)
            print(f"\n## synthetic (2,000 users, 500 products, 100k events, 150 queries) -- trained in {seconds:.0f} s\n")
            print(markdown(results))
            split = RunDir(run_dir).load_split()
            print(recall_note(results, split))
            print(seeds_line("synthetic", fusion_seeds(run_dir, config, args.seeds, results["fused"])))
            engine = Engine.open(run_dir)
            users = np.arange(len(engine.user_index))
            truth = ground_truth(synthetic)
            print("\n## planted truth: what each top-10 would earn if shown (synthetic, all users)\n")
            worth = every_user_worth(truth, engine)
            print(planted_markdown(worth))
            value = planted_value(truth, engine, {"fused, value weight 1": fused_list(
                engine, users, 10, {"ctr": 1, "cvr": 1, "value": 1})}, users)
            print(planted_markdown(value).splitlines()[-1])
            ids, _ = GraphExport.read_id_maps(RunDir(run_dir).graph)
            ceiling = planted_recall(truth, engine, split, ids["user"], ids["product"])
            print("\nlogged Recall@10 (test) of the planted truth's own ranking (p_click x p_buy), the "
                  "ceiling of a perfect click / purchase model: "
                  + ", ".join(f"{name} {v:.4f}" for name, v in ceiling.items())
                  + f" (fused {results['fused']['recall@10']:.4f}, GNN {results['gnn']['recall@10']:.4f})")
            fit = fit_to_planted(load_fusion_data(run_dir, config.fusion.examples), truth, ids["user"],
                                 ids["product"], config.fusion)
            print("\nthe fused model's inputs fit to the planted p_click and p_buy themselves (perfect labels, "
                  f"every user): logged Recall@10 {fit['recall@10']:.4f}, NDCG@10 {fit['ndcg@10']:.4f}, expected "
                  f"purchases {fit['purchases']:.3f} (fused {worth['fused']['purchases']:.3f}, "
                  f"GNN {worth['gnn']['purchases']:.3f})")
            print(f"\n## trade-off (synthetic, 300 users) -> {Path(args.out) / 'fusion_tradeoff.png'}\n")
            print(tradeoff(engine, truth, Path(args.out)), flush=True)
            if args.shop_seeds:
                print(f"\n## the GNN and the fused ranker on {len(args.shop_seeds) + 1} synthetic shops "
                      "(generator seeds; every stage trained on each)\n", flush=True)
                first = shop_row(shop.seed, results, worth, split)
                print(across_shops(args.shop_seeds, config, Path(tmp), first))
        if not args.skip_gift_cards:
            from loaders import load

            gift = load("amazon2018", str(SHARED / "amazon2018-gift-cards"))
            gnn = replace(config.gnn, train=replace(config.gnn.train, model="lightgcn", lr=0.005))
            gift_config = replace(config, gnn=gnn)
            results, run_dir, seconds = run(gift, Path(tmp) / "gift", gift_config)
            print(f"\n## Amazon 2018 Gift Cards (reviews only) -- trained in {seconds:.0f} s\n")
            print(markdown(results))
            print(recall_note(results, RunDir(run_dir).load_split()))
            print(seeds_line("Gift Cards", fusion_seeds(run_dir, gift_config, args.seeds, results["fused"])))
            if args.ablation:
                print(f"\n## Gift Cards: the fused ranker's inputs, {max(args.seeds, 1)} fusion seeds each "
                      "(test, mean ± sd)\n", flush=True)
                ablation(run_dir, gift_config, max(args.seeds, 1))
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
