"""Explanation coverage and latency on real data, on both stores: one query per
explanation (kg.explain) against the per-template implementation it replaced.

For each data set: build the graph into the embedded store and Neo4j, train a small
LightGCN on it (kg.pipeline), take the top recommended unseen item of ``--pairs``
random users, and explain each (user, item) pair on each store, twice:

* **new** -- :func:`kg.explain.explain`: one parameterised query per explanation (a
  ``UNION ALL`` branch per template), the store's relationship types cached per build;
* **old** -- :func:`reference_explain` below, a copy of the implementation it replaced:
  ``store.counts()`` (one count query per label and type), two name lookups, then one
  query per template, direction and interaction type, each limited to ``max_paths``.

It also opens an :class:`fusion.engine.Engine` on a serving-ready run folder made from
the trained run (random fusion model and text parts: the ranking is not the point) and
times ``recommend(user, k=10, explain=True)`` -- new: one ``explain_many`` query per
list; old: the recommendation plus the reference explanation of each of its items.

Prints, per store and data set, the share of pairs with a path, p50/p99 latency, the
CPU time of one explanation ("new CPU ms": this process's median per explanation, plus,
on Neo4j with ``--neo4j-home``, the server's mean -- on a shared machine a steadier
figure than wall time, which waits for the CPU), the load average, the
old/new ratio, whether both stores gave the same new explanations, and whether the new
explanations equal the reference's when the reference fetches as many rows per template
as the new query (:data:`kg.explain.PATHS_PER_TEMPLATE`): same paths, scores and order;
and how many top reasons differ from the reference at ``max_paths`` rows per template
(today's behaviour, where the top reason depended on ``max_paths``). On Neo4j, the database
hits of one explanation (the first pair) by ``PROFILE``, new against old, summed over the
statements each sends. Plus one line per store and data set for scripts::

    explain p50_ms=<x> p99_ms=<y> store=<kind> data=<name>

    python bench/explain.py                         # Gift Cards and ml-100k-kg
    python bench/explain.py --neo4j-uri bolt://127.0.0.1:7687 --neo4j-home .neo4j-data   # + server CPU
    python bench/explain.py --pairs 30 --stores embedded --sets gift-cards
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
from kg.errors import UnknownIdError  # noqa: E402
from kg.explain import (VERBS, WEIGHTS, LINK_PHRASES, PATHS_PER_TEMPLATE, Embeddings, Explanation,  # noqa: E402
                        KGPath, PathNode, explain)
from kg.pipeline import GnnRunConfig, train_gnn  # noqa: E402
from kg.schema import NODE_BY_LABEL, REL_BY_TYPE  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402
from kg.train import TrainConfig  # noqa: E402
from loaders import load  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"gift-cards": ("amazon2018", DATA / "amazon2018-gift-cards"), "ml-100k-kg": ("recbole", DATA / "ml-100k-kg")}
MAX_PATHS = 5


# ------------------------------------------------------------------ the reference (old) implementation


def reference_explain(store, user_id: str, item_id: str, max_paths: int = MAX_PATHS,
                      embeddings: Embeddings | None = None, fetch: int | None = None) -> Explanation:
    """The per-template implementation kg.explain had before the single query, unchanged
    except for ``fetch`` (rows per template query; None: ``max_paths``, as it was)."""
    limit = max_paths if fetch is None else fetch
    name = lambda label, node_id: _reference_name(store, label, node_id)  # noqa: E731
    name("User", user_id)
    item = PathNode("Product", item_id, name("Product", item_id))
    user = PathNode("User", user_id, "you")
    emb = embeddings or Embeddings()
    found: list[tuple[float, int, str, KGPath]] = []

    def add(template, via_type, row, middle, rels, sentence):
        product = PathNode("Product", str(row["p_id"]), str(row["p_name"] or row["p_id"]))
        nodes = (user, product, *middle, item) if template != "direct" else (user, item)
        score = WEIGHTS[template] * VERBS[via_type][1] * emb.agreement(user_id, product.id, item_id)
        path = KGPath(template, tuple(nodes), tuple([via_type, *rels]), round(score, 6), sentence)
        found.append((score, int(row.get("ts") or 0), "|".join(n.id for n in nodes) + template, path))

    def rows(query, n):
        return store.run(query, {"user": user_id, "item": item_id, "limit": n}).to_dict("records")

    counts = store.counts()
    for via in [t for t in VERBS if counts.get(t, 0) > 0]:
        spec, verb = REL_BY_TYPE[via], VERBS[via][0]
        for row in rows(q.explain_direct_query(spec), 1):
            add("direct", via, row, [], [], f"You {verb} {item.name} before.")
        for template, link, label, phrase in (("same_brand", "HAS_BRAND", "Brand", "also by"),
                                              ("same_category", "IN_CATEGORY", "Category", "also in"),
                                              ("same_entity", "LINKED_TO", "Entity", "which shares")):
            for row in rows(q.explain_shared_node_query(spec, REL_BY_TYPE[link], NODE_BY_LABEL[label]), limit):
                m = PathNode(label, str(row["m_id"]), str(row["m_name"] or row["m_id"]))
                add(template, via, row, [m], [link, link],
                    f"Recommended because you {verb} {row['p_name']}, {phrase} {m.name}.")
        for link, phrase in LINK_PHRASES.items():
            for outgoing in (True, False):
                for row in rows(q.explain_item_link_query(spec, REL_BY_TYPE[link], outgoing), limit):
                    add("item_link", via, row, [], [link],
                        f"Recommended because you {verb} {row['p_name']}, and {phrase}.")
        for outgoing in (True, False):
            for row in rows(q.explain_related_entities_query(spec, outgoing), limit):
                m, n = PathNode("Entity", str(row["m_id"]), str(row["m_id"])), PathNode("Entity", str(row["n_id"]),
                                                                                        str(row["n_id"]))
                add("related_entity", via, row, [m, n], ["LINKED_TO", "RELATED", "LINKED_TO"],
                    f"Recommended because you {verb} {row['p_name']}, linked to {m.name}, "
                    f"which is related ({row['relation']}) to {n.name}, linked to this item.")
        for row in rows(q.explain_co_interaction_query(spec), limit):
            add("co_interaction", via, row, [PathNode("User", f"{int(row['n'])} customers", "")], [via, via],
                f"Recommended because {int(row['n'])} customers who {verb} {row['p_name']} also {verb} this.")
    if not found:
        fb = store.run(q.EXPLAIN_FALLBACK[store.dialect], {"user": user_id, "item": item_id}).to_dict("records")
        if not fb:
            return Explanation(user_id, item_id, (), "no path of at most 4 hops connects this user and item")
        labels, ids, types = fb[0]["labels"], fb[0]["ids"], fb[0]["types"]
        nodes = tuple([user] + [PathNode(str(lb), str(i), str(i)) for lb, i in zip(labels[1:-1], ids[1:-1])] + [item])
        chain = " → ".join(f"{n.label} {n.id}" for n in nodes[1:-1])
        return Explanation(user_id, item_id, (KGPath("fallback", nodes, tuple(str(t) for t in types),
                                                     WEIGHTS["fallback"] * 0.5, f"Connected to you through {chain}."),))
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    unique, seen = [], set()
    for _, _, tie, path in found:
        if tie not in seen:
            seen.add(tie)
            unique.append(path)
    firsts, templates = [], set()
    for path in unique:
        if path.template not in templates:
            templates.add(path.template)
            firsts.append(path)
    rest = [p for p in unique if p not in firsts]
    return Explanation(user_id, item_id, tuple((firsts + rest)[:max_paths]))


def _reference_name(store, label: str, node_id: str) -> str:
    rows = store.run(q.node_name_query(NODE_BY_LABEL[label]), {"id": node_id})
    if rows.empty:
        raise UnknownIdError(f"unknown {label.lower()} id {node_id!r}")
    return str(rows["name"].iloc[0] or node_id)


def signature(e: Explanation | None) -> tuple:
    """What must not change: each path's template, nodes, relationship types and score, in
    order (not the sentence, and not the display label of the co_interaction count)."""
    if e is None:
        return ()
    return tuple((p.template, tuple("#" if p.template == "co_interaction" and k == 2 else n.id
                                    for k, n in enumerate(p.nodes)), p.rel_types, p.score) for p in e.paths)


# ------------------------------------------------------------------ set-up


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


def serving_run(run_dir: Path, store) -> None:
    """Turn a finished GNN run folder into one the Engine opens: the catalogue read back
    from the store, feature tables from the trained GNN embeddings (text and side
    features random), a freshly initialised fusion model, and a new manifest -- the parts
    fusion.tiny_run.make_tiny_run assembles, on real data."""
    import torch

    from fusion.ranking.features import ITEM_SIDE, USER_SIDE, FeatureTables
    from fusion.ranking.model import FusionModel
    from kg.catalogue import read_catalogue
    from kg.run_dir import RunDir, save_parquet

    run = RunDir(run_dir)
    save_parquet(read_catalogue(store).items, run.catalogue_items)
    z = np.load(run.embeddings)
    users, items = torch.from_numpy(z["user"]), torch.from_numpy(z["item"])
    g = torch.Generator().manual_seed(0)
    unit = lambda n: torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1)  # noqa: E731
    tables = FeatureTables(users, items, unit(len(items)), unit(len(users)),
                           torch.randn(len(users), len(USER_SIDE), generator=g),
                           torch.randn(len(items), len(ITEM_SIDE), generator=g))
    tables.save(run.fusion_tables)
    torch.manual_seed(0)
    FusionModel.for_tables(tables, hidden=16, text_proj=8, tower=8).save(run.fusion_model)
    run.update_config(fusion={"candidates": 50})
    run.write_manifest()


def load_line() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def ms(values: list[float], pct: float) -> float:
    return float(np.percentile(values, pct)) * 1e3


# ------------------------------------------------------------------ measuring


def time_pairs(fn, pairs, cpu: list[float] | None = None) -> tuple[list[float], list]:
    """Wall seconds of ``fn(user, item)`` per pair, and the answers; ``cpu`` collects this
    process's CPU seconds (all its threads: the embedded store's too) per pair."""
    times, answers = [], []
    for user, item in pairs:
        c, t = time.process_time(), time.perf_counter()
        answers.append(fn(user, item))
        times.append(time.perf_counter() - t)
        if cpu is not None:
            cpu.append(time.process_time() - c)
    return times, answers


def server_cpu(home: str | None) -> float:
    """CPU seconds so far of the Neo4j test server whose home is ``home`` (scripts/neo4j-server
    keeps its pid there); nan when unknown."""
    try:
        pid = int(Path(home, "server.pid").read_text())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (TypeError, OSError, ValueError, IndexError):
        return float("nan")


def plan_db_hits(plan: dict) -> int:
    """Database hits of a PROFILE plan (``summary.profile``), all its operators."""
    return int(plan.get("dbHits", 0)) + sum(plan_db_hits(c) for c in plan.get("children", []))


def profiled(store, fn) -> tuple[int, int]:
    """(database hits, statements) of everything ``fn()`` sends to a Neo4j store: each
    statement run as ``PROFILE <statement>`` through the store's driver."""
    real = store.driver.execute_query
    total = [0, 0]

    def execute_query(query, *args, **kwargs):
        result = real("PROFILE " + query, *args, **kwargs)
        total[0] += plan_db_hits(result.summary.profile or {})
        total[1] += 1
        return result

    store.driver.execute_query = execute_query
    try:
        fn()
    finally:
        del store.driver.execute_query  # the class's method again
    return total[0], total[1]


def time_recommend(engine, store, users: list[str], emb: Embeddings) -> tuple[list[float], list[float]]:
    """p50 inputs: new = recommend(k=10, explain=True); old = recommend + a reference
    explanation per item (what recommend(explain=True) cost before)."""
    new, old = [], []
    for user in users:
        t = time.perf_counter()
        engine.recommend(user, k=10, explain=True)
        new.append(time.perf_counter() - t)
        t = time.perf_counter()
        for r in engine.recommend(user, k=10):
            reference_explain(store, user, r.item_id, 3, emb)
        old.append(time.perf_counter() - t)
    return new, old


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--recommend-users", type=int, default=20, help="users timed for recommend(k=10, explain=True)")
    p.add_argument("--stores", default="embedded,neo4j")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--neo4j-uri", default=os.environ.get("KGREC_TEST_NEO4J_URI", "bolt://127.0.0.1:7687"))
    p.add_argument("--neo4j-home", default=os.environ.get("KGREC_NEO4J_HOME"),
                   help="home of the scripts/neo4j-server instance at --neo4j-uri: its CPU time is reported too")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads for the ranking (1: the fusion model's tensors are tiny, and on a "
                        "busy 2-core machine more threads spun against other processes: 70 ms instead of 2)")
    args = p.parse_args()

    import torch

    from fusion.engine import Engine

    print(f"start: {load_line()}; torch threads while timing: {args.torch_threads}", flush=True)
    lines = ["| data | store | pairs | with a path | old p50 ms | old p99 ms | new p50 ms | new p99 ms "
             "| new CPU ms | p50 ratio "
             "| recommend k=10 explain: old p50 ms | new p50 ms | ratio | same on both stores "
             "| same as reference | top reason differs from old (max_paths rows) | load average |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"]
    script: list[str] = []
    profiles = ["| data | (user, item) | PROFILE db hits, old | new |", "|---|---|---:|---:|"]
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
            run_dir = Path(f"{tmp}/{name}-run")
            run = train_gnn(first, run_dir, GnnRunConfig(train=TrainConfig(
                epochs=args.epochs, lr=0.005, batch_size=2048, embedding_dim=32, num_layers=2)), progress=False)
            torch.set_num_threads(args.torch_threads)  # the timing's threads (training ran with its config's)
            pairs = recommended_pairs(run, args.pairs)
            serving_run(run_dir, first)
            emb = Embeddings.from_npz(run_dir / "embeddings.npz")
            rec_users = [u for u, _ in pairs[: args.recommend_users]]
            answers = {}
            for kind, store in stores.items():
                explain(store, *pairs[0], MAX_PATHS, emb)  # warm: the plan cache, the server's query plans
                reference_explain(store, *pairs[0], MAX_PATHS, emb)
                cpu: list[float] = []
                server0 = server_cpu(args.neo4j_home) if kind == "neo4j" else 0.0
                new_t, new_a = time_pairs(lambda u, i: explain(store, u, i, MAX_PATHS, emb), pairs, cpu)
                server = (server_cpu(args.neo4j_home) - server0) / len(pairs) if kind == "neo4j" else 0.0
                old_t, old_a = time_pairs(lambda u, i: reference_explain(store, u, i, MAX_PATHS, emb), pairs)
                same_fetch = [reference_explain(store, u, i, MAX_PATHS, emb, fetch=PATHS_PER_TEMPLATE)
                              for u, i in pairs]
                answers[kind] = new_a
                same_ref = sum(signature(a) == signature(b) for a, b in zip(new_a, same_fetch))
                top_differs = sum(signature(a)[:1] != signature(b)[:1] for a, b in zip(new_a, old_a))
                with Engine.open(run_dir, store=store) as engine:
                    engine.recommend(rec_users[0], k=10, explain=True)
                    rec_new, rec_old = time_recommend(engine, store, rec_users, emb)
                found = sum(bool(e.paths) for e in new_a)
                first_kind = next(iter(stores))
                both = "—" if kind == first_kind else ("yes" if new_a == answers[first_kind] else "no")
                n50, o50 = statistics.median(new_t) * 1e3, statistics.median(old_t) * 1e3
                r50, ro50 = statistics.median(rec_new) * 1e3, statistics.median(rec_old) * 1e3
                cpu_ms = statistics.median(cpu) * 1e3 + (server * 1e3 if server == server else float("nan"))
                lines.append(f"| {name} | {kind} | {len(pairs)} | {found / len(pairs):.0%} | {o50:.0f} | "
                             f"{ms(old_t, 99):.0f} | {n50:.1f} | {ms(new_t, 99):.1f} | {cpu_ms:.1f} | "
                             f"{o50 / n50:.0f}× | "
                             f"{ro50:.0f} | {r50:.1f} | {ro50 / r50:.0f}× | {both} | {same_ref}/{len(pairs)} "
                             f"| {top_differs} |")
                script.append(f"explain p50_ms={n50:.2f} p99_ms={ms(new_t, 99):.2f} store={kind} data={name}")
                lines[-1] += f" {load_line().split(' on ')[0].replace('load average ', '')} |"
                print(lines[-1], flush=True)
                print(script[-1], flush=True)
                if kind == "neo4j":
                    new_hits = profiled(store, lambda: explain(store, *pairs[0], MAX_PATHS, emb))
                    old_hits = profiled(store, lambda: reference_explain(store, *pairs[0], MAX_PATHS, emb))
                    profiles.append(f"| {name} | {pairs[0]} | {old_hits[0]:,} in {old_hits[1]} statements "
                                    f"| {new_hits[0]:,} in {new_hits[1]} |")
                    print(profiles[-1], flush=True)
            for kind, store in stores.items():
                if kind == "neo4j":
                    store.clear()
                store.close()
    print(f"end: {load_line()}")
    print()
    print("\n".join(lines))
    print()
    print("\n".join(script))
    if len(profiles) > 2:
        print()
        print("Neo4j PROFILE of one explanation (the first pair), summed over its statements:")
        print("\n".join(profiles))


if __name__ == "__main__":
    main()
