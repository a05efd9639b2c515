"""Graph build throughput: synthetic data (≥1M interactions) into each store.

For each store it times a full ``kg.build.build_graph`` into an empty store, then
a second (idempotent) run of the same build, and compares against a reference
loader in the same run: the way people write a loader by hand, one
``MERGE`` statement per interaction row (auto-commit), timed on a sample of the
same interaction rows into a fresh graph with the same nodes. The ratio is
kgrec rows/s ÷ reference rows/s on interaction relationships.

    python bench/build_throughput.py                      # embedded + Neo4j (if reachable)
    python bench/build_throughput.py --interactions 200000 --stores embedded
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.schema import EVENT_TYPES  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402
from loaders import load  # noqa: E402

REFERENCE_MERGE = (
    "MATCH (a:User {id: $src}) MATCH (b:Product {id: $dst}) "
    "MERGE (a)-[e:PURCHASED {ts: $ts}]->(b) SET e.value = $value, e.split = $split"
)


def open_fresh(kind: str, uri: str, workdir: Path, name: str):
    if kind == "neo4j":
        store = open_store(StoreConfig(kind="neo4j", uri=uri)).connect()
        store.clear()
    else:
        store = open_store(StoreConfig(kind="embedded", path=str(workdir / name))).connect()
    return store


def reference_rows_per_second(kind: str, uri: str, workdir: Path, dataset, sample: int) -> float:
    """One MERGE per row into a graph that already has the nodes."""
    from kg.rows import graph_rows

    steps = graph_rows(dataset)
    store = open_fresh(kind, uri, workdir, "reference")
    store.ensure_schema()
    for step in steps:
        if step.kind == "node" and step.name in ("User", "Product"):
            store.upsert_nodes(step.name, step.rows)
    rows = next(s.rows for s in steps if s.name == "PURCHASED").head(sample)
    records = rows.to_dict("records")
    t = time.perf_counter()
    if kind == "neo4j":
        with store.driver.session(database=store.database) as session:
            for r in records:
                session.run(REFERENCE_MERGE, r).consume()
    else:
        for r in records:
            store.conn.execute(REFERENCE_MERGE, r)
    seconds = time.perf_counter() - t
    store.close()
    return len(records) / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--stores", default="embedded,neo4j")
    p.add_argument("--neo4j-uri", default=os.environ.get("KGREC_TEST_NEO4J_URI", "bolt://127.0.0.1:7687"))
    p.add_argument("--reference-sample", type=int, default=5_000,
                   help="interaction rows the per-row reference loader writes")
    args = p.parse_args()

    t = time.perf_counter()
    ds = load("synthetic", None, n_users=args.users, n_items=args.items, n_interactions=args.interactions)
    gen_s = time.perf_counter() - t
    n_inter = len(ds.interactions)
    print(f"synthetic data: {n_inter:,} interactions, {len(ds.users):,} users, {len(ds.items):,} items, "
          f"{len(ds.reviews):,} reviews ({gen_s:.1f} s to generate)\n")

    interaction_types = set(EVENT_TYPES.values())
    header = ("| store | total rows | build s | rows/s | interaction rows/s | rerun s | rerun created "
              "| reference rows/s | ratio |")
    lines = [header, "|" + "---|" * 9]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.stores.split(","):
            try:
                store = open_fresh(kind, args.neo4j_uri, workdir, "graph")
            except ConnectionError as exc:
                print(f"skipping {kind}: {exc}")
                continue
            report = build_graph(ds, store, BuildConfig(progress=False))
            rerun = build_graph(ds, store, BuildConfig(progress=False, resume=False))
            store.close()
            total = sum(s.rows for s in report.steps)
            inter_rows = sum(s.rows for s in report.steps if s.name in interaction_types)
            inter_s = sum(s.seconds for s in report.steps if s.name in interaction_types)
            ref = reference_rows_per_second(kind, args.neo4j_uri, workdir, ds, args.reference_sample)
            ours = inter_rows / inter_s
            lines.append(
                f"| {kind} | {total:,} | {report.seconds:.1f} | {total / report.seconds:,.0f} | {ours:,.0f} "
                f"| {rerun.seconds:.1f} | {rerun.created} | {ref:,.0f} | {ours / ref:.1f}× |"
            )
            print(f"{kind}: built in {report.seconds:.1f} s, rerun {rerun.seconds:.1f} s", flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
