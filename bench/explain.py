"""Explanation coverage and latency on real data, on both stores.

For each data set: build the graph into the embedded store and Neo4j, train a
small LightGCN on it (kg.pipeline), take the top recommended unseen item of 100
random users, and explain each (user, item) pair on each store. Prints the share
of pairs with at least one path, the median and p95 latency per store, and
whether both stores gave the same explanation. The reference is the
variable-length fallback alone (one bounded shortest-path query), timed on the
same pairs: the ratio says what the meta-path templates cost over it.

    python bench/explain.py                         # Gift Cards and ml-100k-kg
    python bench/explain.py --pairs 30 --stores embedded
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kg import queries as q  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.explain import Embeddings, explain  # noqa: E402
from kg.pipeline import GnnRunConfig, train_gnn  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402
from kg.train import TrainConfig  # noqa: E402
from loaders import load  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"gift-cards": ("amazon2018", DATA / "amazon2018-gift-cards"), "ml-100k-kg": ("recbole", DATA / "ml-100k-kg")}


def recommended_pairs(run, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(user id, top-1 unseen item id) for ``n`` random users, from the trained model."""
    import torch

    rng = np.random.default_rng(seed)
    users = rng.choice(run.split.num_users, size=min(n, run.split.num_users), replace=False)
    seen = {(int(u), int(i)) for part in (run.split.train, run.split.valid, run.split.test)
            for u, i in zip(*part)}
    with torch.no_grad():
        emb = run.model.embeddings()
        scores = run.model.score(torch.from_numpy(users), emb).numpy()
    pairs = []
    for row, u in zip(scores, users):
        for i in np.argsort(-row):
            if (int(u), int(i)) not in seen:
                pairs.append((str(run.export.id_maps["user"][u]), str(run.export.id_maps["product"][i])))
                break
    return pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--stores", default="embedded,neo4j")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--neo4j-uri", default=os.environ.get("KGREC_TEST_NEO4J_URI", "bolt://127.0.0.1:7687"))
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()

    lines = ["| data | store | pairs | with a path | median ms | p95 ms | fallback-only median ms | ratio | same as embedded |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            source, path = SETS[name]
            ds = load(source, path)
            stores = {}
            for kind in args.stores.split(","):
                config = (StoreConfig(kind="neo4j", uri=args.neo4j_uri) if kind == "neo4j"
                          else StoreConfig(kind="embedded", path=f"{tmp}/{name}"))
                store = open_store(config).connect()
                if kind == "neo4j":
                    store.clear()
                build_graph(ds, store, BuildConfig(progress=False))
                stores[kind] = store
            first = next(iter(stores.values()))
            run = train_gnn(first, f"{tmp}/{name}-run", GnnRunConfig(train=TrainConfig(
                epochs=args.epochs, lr=0.005, batch_size=2048, embedding_dim=32, num_layers=2)), progress=False)
            pairs = recommended_pairs(run, args.pairs)
            emb = Embeddings.from_npz(Path(run.run_dir) / "embeddings.npz")
            answers = {}
            for kind, store in stores.items():
                times, fallback_times, found = [], [], 0
                answers[kind] = []
                fallback = q.NEO4J_EXPLAIN_FALLBACK if kind == "neo4j" else q.EMBEDDED_EXPLAIN_FALLBACK
                for user, item in pairs:
                    t = time.perf_counter()
                    e = explain(store, user, item, 5, emb)
                    times.append(time.perf_counter() - t)
                    found += bool(e.paths)
                    answers[kind].append(e)
                    t = time.perf_counter()
                    store.run(fallback, {"user": user, "item": item})
                    fallback_times.append(time.perf_counter() - t)
                med, fmed = statistics.median(times) * 1e3, statistics.median(fallback_times) * 1e3
                p95 = float(np.percentile(times, 95)) * 1e3
                same = "—" if kind == "embedded" else (
                    "yes" if answers[kind] == answers.get("embedded", answers[kind]) else "no")
                lines.append(f"| {name} | {kind} | {len(pairs)} | {found / len(pairs):.0%} | {med:.0f} | {p95:.0f} "
                             f"| {fmed:.0f} | {med / fmed:.1f}× | {same} |")
                print(lines[-1], flush=True)
            for kind, store in stores.items():
                if kind == "neo4j":
                    store.clear()
                store.close()
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
