"""Fusion quality: what each part adds, on synthetic data and on Amazon 2018 Gift Cards.

For each data set: build the graph (embedded store, a temporary folder), train every
stage (KG-aware GNN, MiniLM fine-tuning, fusion with ESMM, and the CVR-on-clicks
baseline), and print the comparison table of :mod:`fusion.ranking.comparison` -- popularity,
GNN only, text only, fused -- with Recall@10/NDCG@10 (recommendation, the GNN split's
held-out purchases), nDCG@10 (search, held-out queries), and AUC of CTR, CVR (on clicked
test impressions) and CTCVR (purchase over all test impressions).

Gift Cards has reviews only: every reviewed pair is a "click", a conversion is a rating
>= 4, and negatives are sampled (see :mod:`fusion.ranking.examples`); it has no impressions, so
the AUCs are over positives and sampled negatives, and no judgements (no search column).

Counterfactual table (synthetic): offline Recall@K only credits products the shop's
logging policy happened to show; the generator's planted P(click) and P(purchase | click)
score every model's top-10 by what it would earn if shown (:mod:`fusion.ranking.planted`) --
expected clicks, purchases and order value per user, all 2,000 users.

The trade-off plot (synthetic, where the planted truth is known): for weights
``{"ctr": 1, "cvr": 1, "value": w}`` with ``w`` swept from 0 to 4 (and ``{"ctr": 1}``),
the Engine recommends a top-10 to each of 300 users; the *true* expected clicks
(sum of the planted p_click) and expected order value (sum of p_click x p_buy x price x
E[quantity]) of those lists are plotted against each other.

    python bench/fusion_quality.py [--skip-gift-cards] [--out bench/out]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.ranking.comparison import markdown  # noqa: E402
from fusion.demo import demo_config  # noqa: E402
from fusion.engine import Engine  # noqa: E402
from fusion.ranking.planted import fused_list, model_lists, planted_value  # noqa: E402
from fusion.ranking.planted import markdown as planted_markdown  # noqa: E402
from fusion.pipeline import train_all  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
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
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    from dataclasses import replace

    from loaders.synthetic import SyntheticConfig, generate, ground_truth

    config = demo_config()
    config = replace(config, text=replace(config.text, train=replace(config.text.train, max_steps=args.text_steps)))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_synthetic:
            synthetic = generate(SyntheticConfig(n_users=2000, n_items=500, n_interactions=100_000, n_queries=150))
            results, run_dir, seconds = run(synthetic, Path(tmp) / "synthetic", config)
            print(f"\n## synthetic (2,000 users, 500 products, 100k events, 150 queries) -- trained in {seconds:.0f} s\n")
            print(markdown(results))
            engine = Engine.open(run_dir)
            users = np.arange(len(engine.user_index))
            truth = ground_truth(synthetic)
            print("\n## planted truth: what each top-10 would earn if shown (synthetic, all users)\n")
            print(planted_markdown(planted_value(truth, engine, model_lists(engine, users, 10), users)))
            value = planted_value(truth, engine, {"fused, value weight 1": fused_list(
                engine, users, 10, {"ctr": 1, "cvr": 1, "value": 1})}, users)
            print(planted_markdown(value).splitlines()[-1])
            print(f"\n## trade-off (synthetic, 300 users) -> {Path(args.out) / 'fusion_tradeoff.png'}\n")
            print(tradeoff(engine, truth, Path(args.out)), flush=True)
        if not args.skip_gift_cards:
            from loaders import load

            gift = load("amazon2018", str(SHARED / "amazon2018-gift-cards"))
            gnn = replace(config.gnn, train=replace(config.gnn.train, model="lightgcn", lr=0.005))
            results, _, seconds = run(gift, Path(tmp) / "gift", replace(config, gnn=gnn))
            print(f"\n## Amazon 2018 Gift Cards (reviews only) -- trained in {seconds:.0f} s\n")
            print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
