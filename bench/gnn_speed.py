"""LightGCN training speed and memory on amazon-book-kgat: ours vs PyG, and time to quality.

Speed mode (default)::

    python bench/gnn_speed.py [--batches 15] [--batch-size 8192] [--threads 2]

runs each variant in a fresh subprocess (so its peak RSS is its own) and prints a
markdown table of seconds per epoch and peak memory, with ratios to ours:

* ``ours`` -- :class:`kg.models.LightGCN` trained as :func:`kg.train.train` does (CSR
  adjacency built once, one autograd Function for the 3-layer propagation whose backward
  is the same propagation, embedding_bag SpMM kernel, vectorised negative sampling with
  positive rejection);
* ``ours-xsimgcl`` / ``ours-simgcl`` -- the same with ``TrainConfig(contrastive=...)``
  at its defaults (:class:`kg.models.base.Contrastive`: XSimGCL's one noisy propagation
  plus InfoNCE over at most 2,048 users and 2,048 items a batch; SimGCL's two noisy
  propagations): the cost of the contrastive term, as a ratio to ``ours``;
* ``pyg-stock`` -- ``torch_geometric.nn.models.LightGCN`` the way PyG's
  ``examples/lightgcn.py`` uses it: ``edge_index`` [2, 2E] message passing (``gcn_norm``
  recomputed by every ``LGConv`` call), ``model(edge_index, edge_label_index)`` and
  ``recommendation_loss``;
* ``pyg-csr`` -- the same PyG model fed the binary adjacency as a ``torch.sparse_csr``
  tensor (``LGConv`` accepts a torch sparse ``Adj``: ``gcn_norm`` rescales its values
  and ``message_and_aggregate`` runs ``torch.sparse.mm``);
* ``pyg-csr-prenorm`` -- as ``pyg-csr`` but with Â normalised once up front and
  ``normalize=False`` (the strongest way to use the PyG module).

Only ``--batches`` batches are timed (after one warm-up batch) and the epoch time is
extrapolated as ``seconds_per_batch * ceil(train_pairs / batch_size)``; the output says so.
Peak memory is ``ru_maxrss`` of the variant's process: total, and the increase over the
high-water mark after loading data and building the model ("training delta").

Time-to-quality mode::

    python bench/gnn_speed.py --time-to-quality --threads 1 --batch-size 32768 --lr 0.02 \
        --negatives 4 --eval-every 5 --max-minutes 26

trains our LightGCN on all of train.txt (KGAT protocol: no validation split), evaluates
full-ranking Recall/NDCG@20 on test.txt (train items excluded) every ``--eval-every``
epochs and stops once test Recall@20 >= ``--target`` (0.1398, the published LightGCN
figure) or ``--max-minutes`` have passed; prints the curve and the wall-clock to quality
(training time + evaluation time since the start of training).

Recorded on the 2-core development machine while other jobs kept it at a load average of
4-7 (so one thread was faster than two), with the command above (lr 0.02, batch 32768,
4 uniform negatives per positive, L2 1e-4, 3 layers, d = 64, init N(0, 0.1²), Adam):
test Recall@20 0.1399 / NDCG@20 0.0734 at epoch 40, reached after 893 s wall (14.9 min:
731 s training + 8 evaluations), 20 steps of ~0.7 s per epoch. Curve: epoch 5 0.1038,
10 0.1224, 15 0.1310, 20 0.1349, 25 0.1385, 30 0.1382, 35 0.1395, 40 0.1399. With
lr 0.01 (otherwise equal) it was 0.0889 / 0.1051 / 0.1151 / 0.1223 / 0.1279 at epochs
5-25, i.e. half as fast; lr 0.025 decayed by 0.94 per epoch (``--lr-decay``) was slower
after epoch 10 (0.1067 / 0.1224 / 0.1288 / 0.1320 at epochs 5-20; stopped there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "amazon-book-kgat"
VARIANTS = ("ours", "ours-xsimgcl", "ours-simgcl", "pyg-stock", "pyg-csr", "pyg-csr-prenorm")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def load_split(path: Path, valid_fraction: float = 0.0, seed: int = 0):
    import loaders
    from kg.train import split_from_dataset

    return split_from_dataset(loaders.load("kgat", path), valid_fraction=valid_fraction, seed=seed)


def run_variant(variant: str, args) -> dict:
    """Time ``args.batches`` training batches of one variant in this process."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_split(Path(args.data))
    U, I = split.num_users, split.num_items
    users = torch.from_numpy(split.train[0])
    items = torch.from_numpy(split.train[1])
    n_train = len(users)
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_train, generator=gen)

    if variant.startswith("ours"):
        from kg.models import LightGCN
        from kg.sparse import normalized_adjacency
        from kg.train import PairSet, TrainConfig, adam, sample_negatives

        mode = variant.partition("-")[2] or "none"
        spec = TrainConfig(contrastive=mode).contrastive_spec()
        model = LightGCN(U, I, normalized_adjacency(split.train[0], split.train[1], U, I), 64, 3, contrastive=spec)
        positives = PairSet(split.train[0], split.train[1], I)
        opt = adam(model, 1e-3)
        k = args.negatives

        def step(idx):
            u, p = users[idx], items[idx]
            n = sample_negatives(u, (k,), positives, gen)
            n = n[:, 0] if k == 1 else n
            opt.zero_grad(set_to_none=True)
            loss, _ = model.loss(u, p, n, l2=1e-4)
            loss.backward()
            opt.step()
            return float(loss)
    else:
        from torch_geometric.nn.models import LightGCN as PygLightGCN

        ei = torch.stack([users, items + U])
        edge_index = torch.cat([ei, ei.flip(0)], 1)  # both directions, [2, 2E]
        normalize = True
        if variant in ("pyg-csr", "pyg-csr-prenorm"):
            from kg.sparse import normalized_adjacency

            if variant == "pyg-csr-prenorm":
                graph = normalized_adjacency(split.train[0], split.train[1], U, I)
                normalize = False
            else:
                graph = normalized_adjacency(split.train[0], split.train[1], U, I)
                graph = torch.sparse_csr_tensor(graph.crow_indices(), graph.col_indices(),
                                                torch.ones_like(graph.values()), graph.shape)
        else:
            graph = edge_index
        model = PygLightGCN(U + I, 64, 3, normalize=normalize)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(idx):
            pos = ei[:, idx]
            neg = torch.stack([pos[0], torch.randint(U, U + I, (len(idx),), generator=gen)])
            label = torch.cat([pos, neg], 1)
            opt.zero_grad(set_to_none=True)
            pos_rank, neg_rank = model(graph, label).chunk(2)
            loss = model.recommendation_loss(pos_rank, neg_rank, node_id=label.unique(), lambda_reg=1e-4)
            loss.backward()
            opt.step()
            return float(loss)

    base = maxrss_mb()
    batches = [perm[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.batches + 1)]
    step(batches[0])  # warm-up
    t, c = time.perf_counter(), time.process_time()
    losses = [step(b) for b in batches[1:]]
    sec = (time.perf_counter() - t) / args.batches
    cpu = (time.process_time() - c) / args.batches
    return {"variant": variant, "sec_per_batch": sec, "sec_per_epoch": sec * steps_per_epoch,
            "cpu_per_batch": cpu, "load": os.getloadavg()[0],
            "steps_per_epoch": steps_per_epoch, "rss_setup_mb": base, "rss_peak_mb": maxrss_mb(),
            "first_loss": losses[0], "last_loss": losses[-1]}


def speed(args) -> None:
    results = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--variant", variant, "--batches", str(args.batches),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--data", args.data,
               "--negatives", str(args.negatives)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            print(f"{variant} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(f"# {variant}: {r['sec_per_batch']:.3f} s/batch, {r['rss_peak_mb']:.0f} MB peak", file=sys.stderr,
              flush=True)
    ours = results.get("ours")
    print(f"\namazon-book-kgat, batch {args.batch_size}, {args.negatives} negative(s), dim 64, 3 layers, "
          f"{args.threads} threads; "
          f"{args.batches} timed batches (after 1 warm-up) extrapolated to an epoch of "
          f"{next(iter(results.values()))['steps_per_epoch'] if results else '?'} batches; "
          "peak RSS of a fresh process per variant.\n")
    print("| variant | s/batch | CPU s/batch | s/epoch (extrapolated) | epoch time / ours | CPU / ours | "
          "peak RSS MB | training delta MB | loss first→last | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, r in results.items():
        ratio = r["sec_per_epoch"] / ours["sec_per_epoch"] if ours else float("nan")
        cpu_ratio = r["cpu_per_batch"] / ours["cpu_per_batch"] if ours else float("nan")
        print(f"| {name} | {r['sec_per_batch']:.3f} | {r['cpu_per_batch']:.3f} | {r['sec_per_epoch']:.1f} | "
              f"{ratio:.2f}× | {cpu_ratio:.2f}× | {r['rss_peak_mb']:.0f} | {r['rss_peak_mb'] - r['rss_setup_mb']:.0f} | "
              f"{r['first_loss']:.4f}→{r['last_loss']:.4f} | {r['load']:.1f} |")


def time_to_quality(args) -> None:
    import torch

    from kg.train import TrainConfig, build_model, train

    t_load = time.perf_counter()
    split = load_split(Path(args.data))
    config = TrainConfig(model="lightgcn", embedding_dim=64, num_layers=args.layers, lr=args.lr,
                         lr_decay=args.lr_decay,
                         batch_size=args.batch_size, epochs=args.epochs, l2=args.l2,
                         num_negatives=args.negatives, eval_every=args.eval_every, patience=args.patience,
                         ks=(20,), select_on="test", select_metric="recall@20", target=args.target,
                         target_metric="recall@20", max_seconds=args.max_minutes * 60, seed=args.seed,
                         threads=args.threads, eval_batch_size=args.eval_batch_size,
                         model_options={"init_std": args.init_std})
    model = build_model(config, (split.num_users, split.num_items), split)
    setup = time.perf_counter() - t_load
    print(f"data + adjacency: {setup:.1f}s; config: {json.dumps(config.to_dict())}", flush=True)
    t0 = time.perf_counter()
    result = train(model, split, config, progress=True,  # epoch lines on stdout, bars on stderr
                   checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    wall = time.perf_counter() - t0
    print("\n| epoch | train s (cum.) | wall s (cum.) | loss | test Recall@20 | test NDCG@20 |")
    print("|---:|---:|---:|---:|---:|---:|")
    wall_cum = 0.0
    reached = None
    for h in result.history:
        wall_cum += h["seconds"] + h.get("eval_seconds", 0.0)
        if "test_recall@20" in h:
            print(f"| {h['epoch']} | {h['train_seconds']:.0f} | {wall_cum:.0f} | {h['loss']:.4f} | "
                  f"{h['test_recall@20']:.4f} | {h['test_ndcg@20']:.4f} |")
            if reached is None and h["test_recall@20"] >= args.target:
                reached = (h["epoch"], wall_cum, h["train_seconds"])
    best = result.best_metrics
    print(f"\nbest test Recall@20 {best.get('recall@20', float('nan')):.4f}, NDCG@20 "
          f"{best.get('ndcg@20', float('nan')):.4f} at epoch {result.best_epoch}; total {wall:.0f}s "
          f"(+{setup:.0f}s loading); threads {torch.get_num_threads()}")
    if reached:
        print(f"time to test Recall@20 >= {args.target}: {reached[1]:.0f}s wall ({reached[1] / 60:.1f} min; "
              f"{reached[2]:.0f}s of it training) at epoch {reached[0]}")
    else:
        print(f"target Recall@20 >= {args.target} not reached")


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--batches", type=int, default=15, help="timed batches per variant (speed mode)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--time-to-quality", action="store_true")
    ap.add_argument("--target", type=float, default=0.1398)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--lr-decay", type=float, default=1.0, help="per-epoch learning-rate factor")
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--init-std", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-batch-size", type=int, default=4096)
    ap.add_argument("--patience", type=int, default=1000)
    ap.add_argument("--max-minutes", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-dir", help="checkpoint every evaluation (time-to-quality mode)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
    elif args.time_to_quality:
        time_to_quality(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
