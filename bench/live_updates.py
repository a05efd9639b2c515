"""Prequential replay: does a run kept fresh by updates follow the shop, and at what cost?

A time-ordered source is cut at 70% of its time span: the first part is built into a
store and trained on (all stages). The rest is fed in 6 increments of equal time; after
each (and before the first) the *next* increment's positive interactions -- the products
each user buys (or rates / reviews) next that they had not seen -- are scored with the
Engine's top-10 (Recall@10, NDCG@10; users new to the shop count too, answered by cold
start where a model does not know them) for:

* (a) **stale**: the first run, never updated;
* (b) **fold-in**: :func:`fusion.update.update_run` after every increment (no training);
* (c) **fold-in + warm start**: the same with ``warm_start=--warm-epochs`` (the graph encoder
  fine-tuned from its weights on the new pairs and a replay of old ones, kept only if it
  beats the fold-in on a held-out slice of the new pairs: :func:`fusion.update.fine_tune_graph`);
* (d) **full retrain**: every stage trained again from scratch on all data so far.

Printed: the metrics per step and model, seconds per update, the mean NDCG@10 of (c)
relative to (d) and its time relative to (d); the time to re-embed one user (the fold-in
itself, and a whole ``update_run`` after one event); for the products first listed in an
increment, how many appear in ``similar``, in ``search`` for their title and in some user's
top-50 after one update; which candidate each warm start kept; the load average (the
seconds depend on what else runs). A PNG (``--out``) plots NDCG@10 and seconds per step.

With ``--new-users F`` customers arrive too (:func:`cut`) and the NDCG@10 of those new to the
shop is printed apart: what folding a new customer in buys over the stale model's cold start.

Products first seen in an increment enter the catalogue with it, with their catalogue row,
links and entities (on a real shop a product is listed before it sells). Training settings are the same for every model (``--epochs``,
the text encoder used as it is: fine-tuning is not what this measures).

    python bench/live_updates.py                          # synthetic shop and ml-100k-kg
    python bench/live_updates.py --data synthetic --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.engine import Engine  # noqa: E402
from fusion.pipeline import RunConfig, TextStageConfig, train_all  # noqa: E402
from fusion.ranking.config import FusionConfig  # noqa: E402
from fusion.text.finetune import TextTrainConfig  # noqa: E402
from fusion.value.config import ValueConfig  # noqa: E402
from fusion.update import update_run  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.ingest import ingest  # noqa: E402
from kg.pipeline import GnnRunConfig  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402
from kg.train import TrainConfig  # noqa: E402
from loaders import Dataset, load  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QUIET = BuildConfig(progress=False)
POSITIVE = ("purchase", "rating", "review")


def cut(dataset: Dataset, steps: int = 6, start: float = 0.7, new_users: float | None = None,
        seed: int = 0) -> tuple[Dataset, list[Dataset], set[str]]:
    """(the first ``start`` of the time span, ``steps`` deltas of equal time after it, the
    customers new to the shop during the replay).

    ``new_users=None``: every customer in the source's users table is in the first part (a
    customer first active later is a user of the graph without events), so none is new.
    ``new_users=f``: a customer arrives with their first event -- one first active later
    with that increment (their users-table row with it) -- and a random ``f`` of those
    active in the first part arrive with the first increment, their history up to the cut
    with them (a customer who registers and whose past orders are imported): new to the
    trained run, so the stale model answers them by cold start and an update folds them in."""
    inter = dataset.interactions
    lo, hi = int(inter["timestamp"].min()), int(inter["timestamp"].max())
    edges = [lo + (hi - lo) * (start + (1 - start) * k / steps) for k in range(steps + 1)]
    edges[-1] = hi + 1

    moved: set[str] = set()
    arrivals: set[str] = set()
    first = inter.groupby("user_id")["timestamp"].min()
    if new_users is not None:
        active = np.array(sorted(first.index[first < edges[0]]), dtype=object)
        moved = set(np.random.default_rng(seed).choice(active, int(round(new_users * len(active))), replace=False))
        arrivals = set(first.index[first >= edges[0]]) | moved
        first = first.where(~first.index.isin(moved), edges[0])

    def window(frame: pd.DataFrame, a: float, b: float) -> pd.DataFrame:
        # a moved customer's events up to the cut arrive with the first increment: shown to
        # the store then (their times kept), never scored as that increment's purchases
        t = np.where(frame["user_id"].isin(moved) & (frame["timestamp"] < edges[0]), edges[0], frame["timestamp"])
        return frame[(t >= a) & (t < b)].reset_index(drop=True)

    def users_in(a: float, b: float) -> pd.DataFrame:  # the users-table rows of customers arriving in [a, b)
        if new_users is None:
            return dataset.users if a == lo else dataset.users.iloc[:0]
        ids = first.index[(first >= a) & (first < b)]
        return dataset.users[dataset.users["user_id"].isin(ids)].reset_index(drop=True)

    first_sale = inter.groupby("item_id")["timestamp"].min()
    base_items = set(first_sale.index[first_sale < edges[0]]) | set(dataset.items["item_id"]) - set(first_sale.index)
    items = dataset.items
    base = replace(dataset, interactions=window(inter, lo, edges[0]), reviews=window(dataset.reviews, lo, edges[0]),
                   users=users_in(lo, edges[0]),
                   items=items[items["item_id"].isin(base_items)].reset_index(drop=True),
                   item_links=dataset.item_links[dataset.item_links["src_item"].isin(base_items)
                                                 & dataset.item_links["dst_item"].isin(base_items)].reset_index(drop=True),
                   item_entities=dataset.item_entities[dataset.item_entities["item_id"].isin(base_items)].reset_index(drop=True),
                   judgements=dataset.judgements[dataset.judgements["item_id"].isin(base_items)].reset_index(drop=True))
    deltas, known = [], set(base_items)
    for a, b in zip(edges[:-1], edges[1:]):
        ev = window(inter, a, b)
        new = set(ev["item_id"]) - known
        known |= new
        deltas.append(Dataset(name=f"delta-{len(deltas) + 1}", interactions=ev, reviews=window(dataset.reviews, a, b),
                              users=users_in(a, b), meta={"since": a},
                              items=items[items["item_id"].isin(new)].reset_index(drop=True),
                              item_links=dataset.item_links[dataset.item_links["src_item"].isin(new)
                                                            & dataset.item_links["dst_item"].isin(known)].reset_index(drop=True),
                              item_entities=dataset.item_entities[dataset.item_entities["item_id"].isin(new)]
                              .reset_index(drop=True)))
    return base, deltas, arrivals


def positive_pairs(dataset: Dataset) -> set[tuple[str, str]]:
    """The (user, product) pairs with a positive event: what the Engine counts as seen."""
    pos = dataset.interactions[dataset.interactions["event"].isin(POSITIVE)]
    return set(zip(pos["user_id"], pos["item_id"]))


def targets(delta: Dataset, seen: set[tuple[str, str]]) -> dict[str, set[str]]:
    """Per user the products they engage with positively in ``delta``'s time window (not the
    history a new customer brings with them) and had not before."""
    inter = delta.interactions
    pos = inter[inter["event"].isin(POSITIVE) & (inter["timestamp"] >= delta.meta.get("since", -np.inf))]
    out: dict[str, set[str]] = {}
    for u, i in zip(pos["user_id"], pos["item_id"]):
        if (u, i) not in seen:
            out.setdefault(u, set()).add(i)
    return out


def score(engine: Engine, truth: dict[str, set[str]], k: int = 10) -> tuple[float, float]:
    users = sorted(truth)
    lists = engine.recommend_batch(users, k=k)
    recall, ndcg = [], []
    disc = 1 / np.log2(np.arange(2, k + 2))
    for u, recs in zip(users, lists):
        hits = np.array([r.item_id in truth[u] for r in recs] + [False] * (k - len(recs)))
        recall.append(hits.sum() / min(len(truth[u]), k))
        ndcg.append(float((hits * disc).sum() / disc[: min(len(truth[u]), k)].sum()))
    return float(np.mean(recall)), float(np.mean(ndcg))


def run_config(args) -> RunConfig:
    gnn = GnnRunConfig(train=TrainConfig(model=args.model, epochs=args.epochs, lr=0.01, batch_size=2048, patience=5,
                                         eval_every=5, threads=args.threads))
    # every stage on --threads: with "auto" (the cores free now) two replays at once would
    # train different first runs
    return RunConfig(gnn=gnn, text=TextStageConfig(finetune=False, train=TextTrainConfig(threads=args.threads)),
                     fusion=FusionConfig(epochs=args.fusion_epochs, threads=args.threads), baselines=False,
                     value=ValueConfig(threads=args.threads))


def replay(name: str, dataset: Dataset, root: Path, args) -> dict:
    base, deltas, arrivals = cut(dataset, args.steps, new_users=args.new_users)
    db = str(root / f"{name}-graph")
    with open_store(StoreConfig(path=db)) as store:
        build_graph(base, store, QUIET)
    config = run_config(args)
    t = time.perf_counter()
    with open_store(StoreConfig(path=db), read_only=True) as store:
        train_all(store, root / f"{name}-a", config)
    first_train = time.perf_counter() - t
    for tag in ("b", "c"):
        shutil.copytree(root / f"{name}-a", root / f"{name}-{tag}")
    seen = positive_pairs(base)
    rows, product_check, one_user = [], None, None
    current_d = root / f"{name}-a"
    for step in range(args.steps):
        truth = targets(deltas[step], seen)
        newcomers = {u: items for u, items in truth.items() if u in arrivals}
        metrics, metrics_new = {}, {}
        for tag, run in (("a", root / f"{name}-a"), ("b", root / f"{name}-b"), ("c", root / f"{name}-c"),
                         ("d", current_d)):
            with Engine.open(run) as engine:
                metrics[tag] = score(engine, truth)
                metrics_new[tag] = score(engine, newcomers) if newcomers else (float("nan"),) * 2
        rows.append({"step": step, "users": len(truth), **{f"{t}_recall": m[0] for t, m in metrics.items()},
                     **{f"{t}_ndcg": m[1] for t, m in metrics.items()}, "new_users": len(newcomers),
                     **{f"{t}_new_ndcg": m[1] for t, m in metrics_new.items()}})
        print(f"# {name} step {step}: " + ", ".join(f"{t} ndcg {m[1]:.4f}" for t, m in metrics.items()),
              file=sys.stderr, flush=True)
        if step == args.steps - 1:
            break
        delta = deltas[step]
        seen |= positive_pairs(delta)
        with open_store(StoreConfig(path=db)) as store:
            ingest(store, delta, QUIET)
            t = time.perf_counter()
            report_b = update_run(store, root / f"{name}-b")
            rows[-1]["b_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            report_c = update_run(store, root / f"{name}-c", warm_start=args.warm_epochs)
            rows[-1]["c_seconds"] = time.perf_counter() - t
            rows[-1]["c_warm"] = report_c.warm_start.get("chosen", "")
        t = time.perf_counter()
        current_d = root / f"{name}-d{step + 1}"
        with open_store(StoreConfig(path=db), read_only=True) as store:
            train_all(store, current_d, config)
        rows[-1]["d_seconds"] = time.perf_counter() - t
        if product_check is None and len(delta.items):
            product_check = new_product_check(root / f"{name}-b", delta)
        if one_user is None:
            one_user = one_user_timing(root / f"{name}-b", db, delta)
        print(f"# {name} update {step + 1}: {report_b.line()}; warm start: {report_c.warm_start}", file=sys.stderr,
              flush=True)
    return {"rows": rows, "first_train": first_train, "product": product_check, "one_user": one_user}


def new_product_check(run: Path, delta: Dataset) -> dict:
    """For each product first listed in ``delta``, after the update: is it among the 20
    products most like its own nearest one (``similar``), in the top 10 of a search for its
    title, and in the top 50 of at least one of the first 500 users?"""
    with Engine.open(run) as engine:
        users = list(engine.user_index[:500])
        top50 = {r.item_id for recs in engine.recommend_batch(users, k=50) for r in recs}
        out = {"items": [], "similar": 0, "search": 0, "top50": 0}
        for _, item in delta.items.iterrows():
            iid = str(item["item_id"])
            similar = [r.item_id for r in engine.similar(iid, k=10)]
            in_similar = bool(similar) and iid in {r.item_id for r in engine.similar(similar[0], k=20)}
            in_search = iid in {r.item_id for r in engine.search(str(item["title"] or iid), k=10)}
            out["items"].append(iid)
            out["similar"] += in_similar
            out["search"] += in_search
            out["top50"] += iid in top50
    return out


def one_user_timing(run: Path, db: str, delta: Dataset) -> dict:
    """The fold-in of one user (the math alone) and one whole update after one event."""
    import torch

    from fusion.update import fold_in_users

    emb = np.load(Path(run) / "embeddings.npz")
    items = torch.from_numpy(emb["item"])
    history = (np.zeros(30, np.int64), np.arange(30) % len(items))
    readout = torch.eye(items.shape[1])
    t = time.perf_counter()
    for _ in range(100):
        fold_in_users(items, history, np.array([0]), readout, 1)
    math_ms = (time.perf_counter() - t) * 10
    ev = delta.interactions.iloc[:1].copy()
    ev["user_id"] = "one-more-user"
    with open_store(StoreConfig(path=db)) as store:
        ingest(store, replace(delta, interactions=ev.reset_index(drop=True), reviews=delta.reviews.iloc[:0],
                              items=delta.items.iloc[:0], item_links=delta.item_links.iloc[:0]), QUIET)
        t = time.perf_counter()
        update_run(store, run)
        whole_ms = (time.perf_counter() - t) * 1e3
    return {"fold_in_ms": math_ms, "update_ms": whole_ms}


def plot(results: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.6 * len(results)), squeeze=False)
    labels = {"a": "stale", "b": "fold-in", "c": "fold-in + warm start", "d": "full retrain"}
    for row, (name, res) in zip(axes, results.items()):
        steps = [r["step"] for r in res["rows"]]
        for tag, label in labels.items():
            row[0].plot(steps, [r[f"{tag}_ndcg"] for r in res["rows"]], "o-", label=label)
        row[0].set_title(f"{name}: NDCG@10 of the next increment")
        row[0].set_xlabel("increments applied")
        row[0].legend(fontsize=8)
        upd = [r for r in res["rows"] if "b_seconds" in r]
        for tag in ("b", "c", "d"):
            row[1].plot([r["step"] + 1 for r in upd], [r[f"{tag}_seconds"] for r in upd], "o-", label=labels[tag])
        row[1].set_yscale("log")
        row[1].set_title(f"{name}: seconds per update")
        row[1].set_xlabel("increment")
        row[1].legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "live_updates.png", dpi=110)
    return out / "live_updates.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", default=["synthetic", "ml100k"], choices=["synthetic", "ml100k", "gift-cards"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--new-users", type=float, default=None, metavar="F",
                    help="customers arrive with their first event, and a random F of those active before the cut "
                         "arrive with the first increment with their history (default: every customer in the "
                         "first part, none new); their NDCG@10 is printed apart")
    ap.add_argument("--model", default="lightgcn", choices=["lightgcn", "kgrec", "bpr_mf"])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--fusion-epochs", type=int, default=8)
    ap.add_argument("--warm-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a small synthetic shop, few epochs")
    ap.add_argument("--out", default="bench/out")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.fusion_epochs, args.warm_epochs = 15, 3, 2
    sets = {}
    for name in args.data:
        if name == "synthetic":
            from loaders.synthetic import SyntheticConfig, generate

            n = 400 if args.quick else 2000
            sets[name] = generate(SyntheticConfig(n_users=n, n_items=n // 4, n_interactions=n * 50, n_queries=20))
        elif name == "ml100k":
            sets[name] = load("recbole", DATA / "ml-100k-kg")
        else:
            sets[name] = load("amazon2018", DATA / "amazon2018-gift-cards")
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, dataset in sets.items():
            results[name] = replay(name, dataset, Path(tmp), args)
    for name, res in results.items():
        rows = res["rows"]
        print(f"\n## {name}: prequential replay, {args.steps} increments after 70% of the time span "
              f"(first training {res['first_train']:.0f} s)\n")
        print("| step | users | stale R@10 / N@10 | fold-in | fold-in + warm start | full retrain | "
              "seconds: fold-in / warm / retrain |")
        print("|---:|---:|---|---|---|---|---|")
        for r in rows:
            secs = (f"{r['b_seconds']:.1f} / {r['c_seconds']:.1f} / {r['d_seconds']:.0f}" if "b_seconds" in r else "—")
            print(f"| {r['step']} | {r['users']} | " + " | ".join(f"{r[f'{t}_recall']:.4f} / {r[f'{t}_ndcg']:.4f}"
                                                           for t in "abcd") + f" | {secs} |")
        scored = [r for r in rows[1:] if r["users"]]
        mean = {t: float(np.mean([r[f"{t}_ndcg"] for r in scored])) if scored else float("nan") for t in "abcd"}
        upd = [r for r in rows if "b_seconds" in r]
        time_c = float(np.mean([r["c_seconds"] for r in upd])) if upd else float("nan")
        time_d = float(np.mean([r["d_seconds"] for r in upd])) if upd else float("nan")
        print(f"\nmean NDCG@10 after updates: stale {mean['a']:.4f}, fold-in {mean['b']:.4f}, warm {mean['c']:.4f}, "
              f"retrain {mean['d']:.4f}; warm / retrain = {mean['c'] / max(mean['d'], 1e-12):.1%} of the NDCG at "
              f"{time_c / max(time_d, 1e-12):.1%} of the time ({time_c:.1f} s vs {time_d:.0f} s per update)")
        if res["one_user"]:
            print(f"re-embedding one user: the fold-in {res['one_user']['fold_in_ms']:.3f} ms; a whole update after "
                  f"one event {res['one_user']['update_ms']:.0f} ms")
        if res["product"]:
            p = res["product"]
            n = len(p["items"])
            print(f"the {n} products first listed in the first increment with new products (e.g. {p['items'][0]}), "
                  f"after one fold-in update: in similar {p['similar']} of {n}, in the top 10 of a search for their "
                  f"title {p['search']} of {n}, in some user's top-50 {p['top50']} of {n}")
        new_rows = [r for r in rows[1:] if r["new_users"]]
        if args.new_users is not None and new_rows:
            n = sum(r["new_users"] for r in new_rows)
            per = {t: sum(r[f"{t}_new_ndcg"] * r["new_users"] for r in new_rows) / n for t in "abcd"}
            print(f"customers new to the shop ({args.new_users:.0%} of the first part's moved to the first increment, "
                  f"plus those first active later): NDCG@10 after updates, over {n} user-increments "
                  f"({', '.join(str(r['new_users']) for r in rows)} per step): stale {per['a']:.4f}, fold-in "
                  f"{per['b']:.4f}, warm {per['c']:.4f}, retrain {per['d']:.4f}")
        chosen = [r.get("c_warm", "") for r in rows if r.get("c_warm")]
        if chosen:
            print("warm start kept (per update): " + ", ".join(chosen))
    load_after = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs, {args.threads} torch threads")
    print(f"\nplot: {plot(results, Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
