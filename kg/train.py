"""Training loop for the recommenders of :mod:`kg.models` (BPR-MF, LightGCN, the KG model).

Usage::

    from kg.train import TrainConfig, build_model, train
    config = TrainConfig(model="lightgcn", epochs=50, lr=5e-3, batch_size=8192)
    model = build_model(config, export, split)          # or (num_users, num_items)
    result = train(model, split, config, checkpoint_dir="runs/lightgcn")
    result.test_metrics["recall@20"]

What :func:`train` does:

* every epoch: a seeded permutation of the training pairs, cut into batches of
  ``batch_size``; ``num_negatives`` negatives per pair sampled uniformly for the whole
  epoch at once, sampled positives rejected by a sorted pair-key lookup
  (``key = user * I + item``, ``torch.searchsorted``) and redrawn, all vectorised;
  ``negatives="hard"`` draws ``hard_candidates`` candidates per negative and keeps the one
  the current model scores highest; with ``loss="softmax"`` instead ``softmax_negatives``
  uniform items per step shared by the whole batch (a pair's own positive among them is
  masked, see :func:`kg.models.base.sampled_softmax_loss`);
* every ``eval_every`` epochs: full-ranking metrics (:func:`kg.evaluation.evaluate`) on
  the validation pairs (``select_on="valid"``; train items excluded) or on test
  (``select_on="test"``, the KGAT paper protocol; train and valid items excluded);
  (a split without validation pairs is evaluated on test);
  early stopping after ``patience`` evaluations without a better ``select_metric``,
  or as soon as ``target_metric >= target``, or when another epoch as long as the last one
  would pass ``max_seconds`` of training (so training time stays under the cap while epochs
  take about as long as each other; rank 0's clock decides under DDP);
  a checkpoint written atomically (:func:`kg.run_dir.save_torch`);
* at the end the best state is restored and the test metrics computed on it.

Determinism: one ``torch.Generator`` seeded from ``seed`` drives the permutation and
the negatives, the model is initialised under ``torch.manual_seed(seed)``; on CPU two
runs give identical losses. The generator state is checkpointed, so a resumed run
continues exactly as an uninterrupted one.

Data parallel: when ``torch.distributed`` is initialised (``torchrun``), every rank
draws the same permutation and negatives, takes its contiguous shard of each global
batch, weights its mean loss by ``shard / batch * world`` and the gradients are summed
with ``all_reduce`` and divided by the world size -- exactly the gradient of the whole
batch, so ``W`` processes follow the single-process trajectory (up to float summation
order). Rank 0 evaluates, keeps the best state and writes checkpoints; the stopping
decision is broadcast. Only rank 0's result carries metrics and the restored best state.
Each rank still propagates the full graph (LightGCN's propagation is not sharded), so data
parallelism pays off when the per-pair work (many negatives, a KG model) dominates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kg.arrays import distinct
from kg.config import checked_fields, resolve_device, torch_threads
from kg.errors import ConfigError, DataError
from kg.evaluation import evaluate
from kg.progress import time_left
from kg.run_dir import save_torch
from kg.split import Split

MODELS = ("bpr_mf", "lightgcn", "kgrec")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable via :meth:`to_dict`)."""

    model: str = "lightgcn"            #: "bpr_mf" | "lightgcn" | "kgrec"
    embedding_dim: int = 64
    num_layers: int = 3                #: propagation layers (ignored by bpr_mf)
    lr: float = 5e-3                   #: Adam learning rate (of epoch 1)
    lr_decay: float = 1.0              #: per-epoch factor: epoch e uses lr * lr_decay ** (e - 1)
    batch_size: int | str = "auto"     #: training pairs per step (global, over all ranks); "auto": see batch_for
    epochs: int = 100                  #: maximum number of epochs
    l2: float = 1e-4                   #: L2 weight on the batch's ego embeddings
    negatives: str = "uniform"         #: "uniform" | "hard"
    num_negatives: int = 1             #: negatives per positive pair (bpr)
    #: "bpr" | "softmax": sampled softmax over cosine scores against negatives shared by the
    #: batch (kg.models.base.Ranking has the math; the model then scores by cosine)
    loss: str = "bpr"
    softmax_negatives: int = 1024      #: softmax: uniform negatives per step, shared by the batch
    softmax_temperature: float = 0.2   #: softmax: tau
    hard_candidates: int = 8           #: candidates per hard negative
    eval_every: int = 1                #: epochs between evaluations (0: only at the end)
    patience: int = 5                  #: evaluations without improvement before stopping
    ks: tuple[int, ...] = (10, 20)
    select_on: str = "valid"           #: "valid" | "test" (KGAT protocol: test, no valid)
    select_metric: str = "ndcg@20"     #: early stopping / best-state metric
    target: float | None = None        #: stop as soon as ``target_metric`` >= this
    target_metric: str = "recall@20"
    max_seconds: float | None = None   #: training-time cap: stop before an epoch that would pass it
    eval_batch_size: int = 8192        #: users per scoring batch in evaluation
    seed: int = 0
    device: str = "auto"               #: "auto" (cuda if available) | "cpu" | "cuda[:n]"
    threads: int | str = "auto"        #: torch CPU threads; "auto": the cores free now (kg.config.resolve_threads)
    model_options: dict[str, Any] = field(default_factory=dict)  #: extra model kwargs
    #: graph contrastive learning (lightgcn, kgrec; kg.models.base.Contrastive has the math):
    #: "none" (BPR only) | "xsimgcl" (one noisy pass, cross-layer InfoNCE) | "simgcl" (two noisy passes)
    contrastive: str = "none"
    cl_weight: float = 0.2             #: lambda, weight of the InfoNCE terms
    cl_eps: float = 0.2                #: noise norm added per propagation layer
    cl_temperature: float = 0.15       #: tau
    cl_layer: int = 1                  #: l*, the layer xsimgcl contrasts with the layer mean
    cl_max_nodes: int = 2048           #: at most this many users / items per InfoNCE (cost ~ n^2 d)
    kg_view_weight: float = 0.0        #: kgrec: weight of the knowledge-view InfoNCE (k_i vs sg(x_i)); 0 = off

    def __post_init__(self):
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r} ({', '.join(MODELS)})")
        if self.negatives not in ("uniform", "hard"):
            raise ConfigError(f"unknown negatives {self.negatives!r} (uniform, hard)")
        if self.select_on not in ("valid", "test"):
            raise ConfigError(f"select_on must be 'valid' or 'test', not {self.select_on!r}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        try:  # the loss and contrastive settings are checked where they are defined
            self.ranking_spec()
            spec = self.contrastive_spec()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.loss == "softmax" and self.negatives == "hard":
            raise ConfigError("loss 'softmax' samples its own shared negatives; negatives='hard' needs loss 'bpr'")
        if not (isinstance(self.softmax_negatives, int) and self.softmax_negatives > 0):
            raise ConfigError(f"softmax_negatives must be a positive number, not {self.softmax_negatives!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size > 0):
            raise ConfigError(f"batch_size must be a positive number or 'auto', not {self.batch_size!r}")
        if spec is not None and self.model == "bpr_mf":
            raise ConfigError("contrastive training needs a graph model (lightgcn, kgrec), not bpr_mf")
        if self.kg_view_weight and self.model != "kgrec":
            raise ConfigError("kg_view_weight (the knowledge view) needs model 'kgrec'")

    def ranking_spec(self):
        """The :class:`kg.models.base.Ranking` (loss and score) of these settings."""
        from kg.models.base import Ranking

        return Ranking(loss=self.loss, temperature=self.softmax_temperature)

    def contrastive_spec(self):
        """The :class:`kg.models.base.Contrastive` of these settings, or ``None`` when off."""
        from kg.models.base import Contrastive

        if self.contrastive == "none" and not self.kg_view_weight:
            return None
        return Contrastive(mode=self.contrastive, weight=self.cl_weight, eps=self.cl_eps,
                           temperature=self.cl_temperature, layer=self.cl_layer,
                           max_nodes=self.cl_max_nodes, kg_weight=self.kg_view_weight)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ks"] = list(self.ks)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        values = dict(checked_fields(cls, values))
        if "ks" in values:
            values["ks"] = tuple(values["ks"])
        return cls(**values)

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def batch_for(self, n_train: int) -> int:
        """The batch size for ``n_train`` training pairs: as given, or with ``"auto"``
        ``n_train / 32`` within [256, 8192] -- at least ~32 optimiser steps an epoch on a
        small shop (a fixed 2,048 gave a 2,000-pair shop one step an epoch, and early
        stopping then ended it under-trained), large batches on a large one."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        return int(min(8192, max(256, n_train // 32)))


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]]
    best_metrics: dict[str, float]     #: selection metrics (valid or test) of the best state
    best_epoch: int
    test_metrics: dict[str, float]     #: test metrics of the best state
    seconds: float                     #: wall-clock of the whole call (training + evaluation)
    train_seconds: float               #: wall-clock of the training steps only
    #: why training ended: "epochs" (all of them ran), "patience" (early stopping), "target"
    #: (``target_metric`` reached) or "time" (``max_seconds``); "" on ranks other than 0
    stop_reason: str = ""
    threads: int = 0                   #: torch CPU threads it ran with (``config.threads`` resolved)


# ---------------------------------------------------------------------------- data helpers

def split_from_interactions(users, items, splits, num_users: int, num_items: int, *,
                            valid_fraction: float = 0.0, seed: int = 0) -> Split:
    """A :class:`Split` from index arrays and the source's split labels (``train``/``test``).

    A random ``valid_fraction`` of the train pairs becomes validation (seeded, the same
    rule as ``split_interactions(method="given")``). Repeated pairs are kept once.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    is_test = np.asarray(splits) == "test"
    key = users * num_items + items
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(key), dtype=bool)
    keep[first] = True
    part = np.where(is_test, 2, 0).astype(np.int8)
    train = np.flatnonzero(keep & (part == 0))
    if valid_fraction > 0:
        rng = np.random.default_rng(seed)
        part[rng.choice(train, size=int(len(train) * valid_fraction), replace=False)] = 1
    pick = lambda k: (users[keep & (part == k)], items[keep & (part == k)])  # noqa: E731
    return Split(num_users, num_items, pick(0), pick(1), pick(2))


def split_from_dataset(dataset, *, valid_fraction: float = 0.0, seed: int = 0) -> Split:
    """A :class:`Split` of a loaded KGAT-style ``loaders`` Dataset (integer-like ids)."""
    inter = dataset.interactions
    user_ids = np.sort(dataset.users["user_id"].astype(np.int64).to_numpy())
    item_ids = np.sort(dataset.items["item_id"].astype(np.int64).to_numpy())
    users = np.searchsorted(user_ids, inter["user_id"].astype(np.int64).to_numpy())
    items = np.searchsorted(item_ids, inter["item_id"].astype(np.int64).to_numpy())
    return split_from_interactions(users, items, inter["split"].to_numpy(), len(user_ids), len(item_ids),
                                   valid_fraction=valid_fraction, seed=seed)


class PairSet:
    """Membership of (user, item) pairs by sorted int64 keys ``user * I + item``."""

    def __init__(self, users, items, num_items: int, device: torch.device | str = "cpu"):
        keys = distinct(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
        self.keys = torch.from_numpy(keys).to(device)
        self.num_items = num_items

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool tensor, shape of ``items`` (``users`` broadcast against it)."""
        q = users * self.num_items + items
        if len(self.keys) == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, q).clamp_(max=len(self.keys) - 1)
        return self.keys[pos] == q


def uniform_items(num_items: int, size: tuple[int, ...], generator: torch.Generator,
                  pool: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Items ``size`` drawn uniformly from ``pool`` (LongTensor of item indices; default: all
    ``num_items``)."""
    if pool is None:
        return torch.randint(num_items, size, generator=generator, device=device)
    return pool[torch.randint(len(pool), size, generator=generator)].to(device)


def sample_negatives(users: torch.Tensor, shape: tuple[int, ...], positives: PairSet,
                     generator: torch.Generator, max_rounds: int = 100,
                     pool: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform items ``[len(users), *shape]`` that are not training positives of the row's user.

    ``pool``: the item indices to draw from (LongTensor; default: every item).
    Vectorised rejection: draw all, redraw only the rejected entries, repeat (the number of
    rounds is tiny because positives are a small fraction of the catalogue).
    """
    num_items = positives.num_items
    draw = lambda size: uniform_items(num_items, size, generator, pool, users.device)  # noqa: E731
    out = draw((len(users), *shape))
    u = users.view(-1, *([1] * len(shape))).expand_as(out)
    bad = positives.contains(u, out)
    for _ in range(max_rounds):
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        redraw = draw((n_bad,))
        out[bad] = redraw
        bad[bad.clone()] = positives.contains(u[bad], redraw)
    return out


# ---------------------------------------------------------------------------- model factory

def build_model(config: TrainConfig, export_or_sizes, split: Split) -> torch.nn.Module:
    """The model named by ``config.model``, initialised under ``torch.manual_seed(config.seed)``.

    ``export_or_sizes``: a :class:`kg.export.GraphExport` (needed by ``kgrec`` for its
    knowledge triples) or a ``(num_users, num_items)`` pair. The graph models get the
    normalised adjacency of ``split.train``.
    """
    from kg.sparse import normalized_adjacency

    if isinstance(export_or_sizes, tuple):
        num_users, num_items = export_or_sizes
    else:
        data = export_or_sizes.data
        num_users, num_items = data["user"].num_nodes, data["product"].num_nodes
    if (num_users, num_items) != (split.num_users, split.num_items):
        raise DataError(f"sizes {(num_users, num_items)} differ from the split's "
                         f"{(split.num_users, split.num_items)}")
    torch.manual_seed(config.seed)
    options = dict(config.model_options)
    options.setdefault("ranking", config.ranking_spec())
    if config.model == "bpr_mf":
        from kg.models.bpr_mf import BPRMF

        return BPRMF(num_users, num_items, config.embedding_dim, **options)
    adjacency = normalized_adjacency(split.train[0], split.train[1], num_users, num_items)
    if config.contrastive_spec() is not None:
        options.setdefault("contrastive", config.contrastive_spec())
    if config.model == "lightgcn":
        from kg.models.lightgcn import LightGCN

        return LightGCN(num_users, num_items, adjacency, config.embedding_dim, config.num_layers, **options)
    if isinstance(export_or_sizes, tuple):
        raise ConfigError("model 'kgrec' needs a GraphExport (its knowledge triples), not sizes")
    from kg.models.kg_model import KGModel  # written separately; imported only when used

    return KGModel(num_users, num_items, export_or_sizes.knowledge_triples(), adjacency,
                   config.embedding_dim, config.num_layers, **options)


def items_in_graph(model: torch.nn.Module, split: Split) -> np.ndarray:
    """bool [I]: the items with an edge in the graph ``model`` was trained over -- a
    training pair of ``split`` (the positives of every model, the user–item graph of the
    graph models) or, for a model that propagates over a knowledge graph too (one with a
    ``knowledge_items()`` method: :meth:`kg.models.kg_model.KGModel.knowledge_items`), a
    triple of that graph. The vector of any other item never had a positive signal: only
    its random initialisation, pushed about as a sampled negative, so its cosine to
    another item is noise (the run's ``embeddings.npz`` records this as ``item_in_graph``,
    and serving's ``similar`` reads such an item as having no graph vector)."""
    out = np.zeros(split.num_items, dtype=bool)
    out[np.asarray(split.train[1], dtype=np.int64)] = True
    knowledge = getattr(model, "knowledge_items", None)
    if callable(knowledge):
        out |= knowledge().cpu().numpy().astype(bool)
    return out


# ---------------------------------------------------------------------------- training

def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def evaluate_model(model: torch.nn.Module, split: Split, part: str = "test", ks=(10, 20),
                   batch_size: int = 8192, device: torch.device | str = "cpu") -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``split.valid`` or ``split.test``.

    Seen items: train for ``valid``; train and valid for ``test``; only ``split.items``
    are ranked when the split names its catalogue. The propagated embeddings are computed
    once and every user batch is one matrix product.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        emb = model.embeddings()
        emb = (emb[0].contiguous(), emb[1].contiguous())
        score_fn = lambda users: model.score(users, emb)  # noqa: E731
        heldout = split.valid if part == "valid" else split.test
        seen = [split.train] if part == "valid" else [split.train, split.valid]
        metrics = evaluate(score_fn, split.num_users, split.num_items, heldout, seen, ks=ks,
                           batch_size=batch_size, device=device, candidates=split.items)
    model.train(was_training)
    return metrics


def adam(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, the fused kernel where available (6x faster than the default on a [N, 64] table)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(model: torch.nn.Module, split: Split, config: TrainConfig, *,
          checkpoint_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, negatives_from: np.ndarray | None = None) -> TrainResult:
    """Train ``model`` on ``split.train`` (see the module docstring); returns a :class:`TrainResult`.

    ``negatives_from``: the item indices negatives are drawn from (default: every item) --
    e.g. leave out items that must stay unseen, as in an item cold-start evaluation.
    Torch's CPU threads are ``config.threads`` during the call only (:func:`kg.config.torch_threads`;
    the caller's setting is restored after it)."""
    with torch_threads(config.threads) as threads:
        result = _train(model, split, config, checkpoint_dir, resume, progress, negatives_from)
    return replace(result, threads=threads)


def _train(model, split, config, checkpoint_dir, resume, progress, negatives_from) -> TrainResult:
    start_time = time.perf_counter()
    rank, world = _dist()
    device = config.resolved_device()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    model.train()
    optimizer = adam(model, config.lr)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)

    tr_users = torch.from_numpy(np.asarray(split.train[0], np.int64))
    tr_items = torch.from_numpy(np.asarray(split.train[1], np.int64))
    n_train = len(tr_users)
    positives = PairSet(split.train[0], split.train[1], split.num_items)
    pool = None if negatives_from is None else torch.from_numpy(np.asarray(negatives_from, np.int64))
    batch_size = config.batch_for(n_train)
    steps = math.ceil(n_train / batch_size)
    has_valid = len(split.valid[0]) > 0
    select_on = config.select_on if (config.select_on == "test" or has_valid) else "test"

    history: list[dict[str, float]] = []
    best_state, best_metrics, best_epoch, bad = None, {}, 0, 0
    first_epoch, train_seconds = 1, 0.0
    stop_reason = "epochs"  # until early stopping, the target or the time limit ends training
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        load_checkpoint_state(model, optimizer, ck, ckpt_path)
        generator.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        history, best_metrics, best_epoch, bad = ck["history"], ck["best_metrics"], ck["best_epoch"], ck["bad"]
        best_state, train_seconds = ck["best_state"], ck["train_seconds"]
        first_epoch = ck["epoch"] + 1
        if ck.get("stopped"):
            first_epoch = config.epochs + 1
            stop_reason = ck.get("stop_reason", stop_reason)
    model.to(device)  # (optimizer state follows the parameters)

    def tqdm_(iterable, **kw):
        if not progress or rank != 0:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, leave=False, **kw)

    stopped = False
    for epoch in range(first_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay ** (epoch - 1)
        perm = torch.randperm(n_train, generator=generator)
        users_e, items_e = tr_users[perm], tr_items[perm]
        k = config.num_negatives
        softmax = config.loss == "softmax"
        if softmax:  # one row of shared negatives per step (the same on every rank)
            negs_e = uniform_items(split.num_items, (steps, config.softmax_negatives), generator, pool)
        else:
            shape = (k, config.hard_candidates) if config.negatives == "hard" else (k,)
            negs_e = sample_negatives(users_e, shape, positives, generator, pool=pool)
        totals = {"loss": 0.0, config.loss: 0.0, "reg": 0.0}
        for step in tqdm_(range(steps), desc=f"epoch {epoch}", total=steps):
            lo, hi = step * batch_size, min((step + 1) * batch_size, n_train)
            per_rank = math.ceil((hi - lo) / world)
            a, b = lo + rank * per_rank, min(lo + (rank + 1) * per_rank, hi)
            u = users_e[a:b].to(device)
            p = items_e[a:b].to(device)
            n = negs_e[step if softmax else slice(a, b)].to(device)
            if config.negatives == "hard":
                n = _pick_hard(model, u, n)
            if k == 1 and not softmax:
                n = n[:, 0]
            optimizer.zero_grad(set_to_none=True)
            if b > a:
                loss, parts = model.loss(u, p, n, l2=config.l2)
                (loss * ((b - a) * world / (hi - lo))).backward()
            else:  # an empty shard still takes part in the all-reduce
                loss, parts = torch.zeros(()), {}
                for prm in model.parameters():
                    prm.grad = torch.zeros_like(prm)
            if world > 1:
                for prm in model.parameters():
                    if prm.grad is None:
                        prm.grad = torch.zeros_like(prm)
                    torch.distributed.all_reduce(prm.grad)
                    prm.grad /= world
            optimizer.step()
            w = (b - a) / n_train * world
            totals["loss"] += float(loss.detach()) * w
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value * w
        if world > 1:  # mean over ranks of the shard-weighted sums
            names = ("loss", config.loss, "reg", "cl", "kv", "kg")  # the same on every rank (a shard may be empty)
            t = torch.tensor([totals.get(n, 0.0) for n in names], dtype=torch.float64)
            torch.distributed.all_reduce(t)
            totals = {n: v for n, v in zip(names, (t / world).tolist()) if n in names[:3] or v}
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        record: dict[str, float] = {"epoch": epoch, **totals, "seconds": seconds}
        last = epoch == config.epochs
        # the next epoch is assumed to take as long as this one
        timeout = config.max_seconds is not None and train_seconds + seconds > config.max_seconds
        if world > 1 and config.max_seconds is not None:  # rank 0's clock decides: every rank takes
            flag = torch.tensor([float(timeout)])          # the same branch (an evaluation broadcasts)
            torch.distributed.broadcast(flag, 0)
            timeout = bool(flag[0])
        if (config.eval_every and epoch % config.eval_every == 0) or last or timeout:
            flags = torch.zeros(2)
            if rank == 0:
                te = time.perf_counter()
                metrics = evaluate_model(model, split, select_on, config.ks, config.eval_batch_size, device)
                record.update({f"{select_on}_{m}": v for m, v in metrics.items()})
                record["eval_seconds"] = time.perf_counter() - te
                record["train_seconds"] = train_seconds
                if not best_metrics or metrics[config.select_metric] > best_metrics[config.select_metric]:
                    best_state, best_metrics, best_epoch, bad = _cpu_state(model), metrics, epoch, 0
                else:
                    bad += 1
                reached = config.target is not None and metrics[config.target_metric] >= config.target
                flags[0] = float(bad >= config.patience or reached or timeout)
                if flags[0]:
                    stop_reason = "target" if reached else "patience" if bad >= config.patience else "time"
                if progress:
                    shown = ", ".join(f"{m} {metrics[m]:.4f}" for m in (config.select_metric, config.target_metric))
                    print(f"epoch {epoch}/{config.epochs}: loss {totals['loss']:.4f}, {seconds:.1f}s, {select_on} "
                          f"{shown}; {time_left(time.perf_counter() - start_time, epoch - first_epoch + 1, config.epochs - epoch)}",
                          flush=True)
            if world > 1:
                torch.distributed.broadcast(flags, 0)
            stopped = bool(flags[0])
            history.append(record)
            if rank == 0 and ckpt_path is not None:
                save_torch({"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                            "epoch": epoch, "history": history, "best_state": best_state,
                            "best_metrics": best_metrics, "best_epoch": best_epoch, "bad": bad,
                            "train_seconds": train_seconds, "stopped": stopped, "stop_reason": stop_reason},
                           ckpt_path)
            if stopped:
                break
        else:
            history.append(record)
            if progress and rank == 0:
                print(f"epoch {epoch}/{config.epochs}: loss {totals['loss']:.4f}, {seconds:.1f}s; "
                      f"{time_left(time.perf_counter() - start_time, epoch - first_epoch + 1, config.epochs - epoch)}",
                      flush=True)

    if best_state is not None:
        model.load_state_dict(best_state)
        model.to(device)
    test_metrics: dict[str, float] = {}
    if rank == 0:
        if select_on == "test" and best_metrics:
            test_metrics = dict(best_metrics)
        else:
            test_metrics = evaluate_model(model, split, "test", config.ks, config.eval_batch_size, device)
    return TrainResult(model, history, best_metrics, best_epoch, test_metrics,
                       time.perf_counter() - start_time, train_seconds, stop_reason if rank == 0 else "")


def load_checkpoint_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, checkpoint: dict,
                          path: Path) -> None:
    """Restore the model and optimizer of a resumed run from ``checkpoint`` (read from
    ``path``). A checkpoint of another model shape (another dim, layers or model) is a
    :class:`~kg.errors.ConfigError` in one line, not PyTorch's size-mismatch listing:
    resume with the settings it was trained with, or train anew."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[-1].strip() if first else type(exc).__name__
        raise ConfigError(f"--resume: the checkpoint {path} was trained with other settings ({detail}); resume "
                          "with the same settings, or train anew without --resume") from None


@torch.no_grad()
def _pick_hard(model: torch.nn.Module, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The highest-scoring of each row's candidates: ``[B, k, C]`` -> ``[B, k]``."""
    user_emb, item_emb = model.embeddings()
    scores = torch.einsum("bd,bkcd->bkc", user_emb[users], item_emb[candidates])
    return torch.gather(candidates, 2, scores.argmax(2, keepdim=True)).squeeze(2)
