"""Training the fusion model: multi-objective losses, ESMM, balancing, early stopping.

Losses per step (an impression batch of ``batch_size`` examples and a relevance batch of
``relevance_batch_size`` judged (query, product) pairs):

* ``ctr``       -- BCE(p_CTR, click) over the shown examples (impression sources), or over
  all examples (implicit sources, where "click" means "engaged" and the sampled products
  are its negatives);
* ``cvr``       -- ESMM (``esmm=True``): BCE(p_CTR * p_CVR, conversion) over *all* examples
  (the CTCVR loss), so the CVR head is trained on the entire impression space; on sampled
  never-shown negatives of impression sources p_CTR is held constant (they teach the CVR
  head only); the naive baseline (``esmm=False``): BCE(p_CVR, conversion) over clicked
  examples (and the sampled never-shown negatives);
* ``value``     -- squared error of softplus(z_value) against log(1 + order value) over
  converted examples with a known value;
* ``relevance`` -- BCE(p_rel, grade / max grade) over the judged pairs (no user).

Besides the examples of :mod:`fusion.ranking.examples` (logged events and uniform negatives),
each conversion gets ``candidate_negatives`` products drawn from the user's GNN
top-``candidates`` (:func:`with_candidate_negatives`): the re-ranker is trained on the
kind of products it ranks at serving time. The losses are combined by a
:mod:`fusion.ranking.loss_balancing` method. After each epoch (one pass, at least
``min_steps_per_epoch`` steps) the validation mix -- the mean of CTR AUC, CTCVR AUC,
recommendation NDCG@10 and search nDCG@10 on the validation part (those that exist) --
decides early stopping; the best state is kept. ``end_to_end=True`` also trains the GNN and text embedding tables (user,
product and product-text rows, initialised from the encoders) with ``embedding_lr``;
the default keeps them frozen (the fast path).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fusion.ranking.config import FusionConfig
from fusion.ranking.examples import ExampleSet, RelevanceSet, sample_unseen
from fusion.ranking.exposure import ExposureModel
from fusion.ranking.features import FeatureTables
from fusion.ranking.loss_balancing import make_balancer
from fusion.ranking.metrics import funnel_aucs, search_ndcg
from fusion.ranking.model import TASKS, FusionModel
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, SEARCH_WEIGHTS
from kg.arrays import distinct
from kg.config import resolve_device, torch_threads
from kg.errors import DataError
from kg.evaluation import evaluate
from kg.progress import time_left
from kg.run_dir import RunDir, save_torch, write_json


def task_losses(logits, click, conversion, value, esmm: bool, sampled: torch.Tensor | None = None
            ) -> dict[str, torch.Tensor]:
    """Task losses of one batch; ``sampled`` marks sampled (never shown) negatives, which
    do not train the CTR head: P(click | shown) keeps its meaning, and the conversion
    loss on them reaches the CVR head only."""
    shown = torch.ones_like(click, dtype=torch.bool) if sampled is None else ~sampled
    ctr_logit = logits["ctr"] if sampled is None else torch.where(sampled, logits["ctr"].detach(), logits["ctr"])
    out = {"ctr": F.binary_cross_entropy_with_logits(logits["ctr"][shown], click[shown])}
    if esmm:
        log_p = F.logsigmoid(ctr_logit) + F.logsigmoid(logits["cvr"])           # log pCTCVR
        log_not = torch.log1p(-torch.exp(log_p).clamp(max=1 - 1e-6))
        out["cvr"] = -(conversion * log_p + (1 - conversion) * log_not).mean()
    else:
        clicked = click > 0
        if sampled is not None:  # the naive baseline: CVR on clicks, plus the sampled negatives
            clicked = clicked | sampled
        if clicked.any():
            out["cvr"] = F.binary_cross_entropy_with_logits(logits["cvr"][clicked], conversion[clicked])
    bought = (conversion > 0) & (value > 0)
    if bought.any():
        out["value"] = F.mse_loss(F.softplus(logits["value"][bought]), torch.log1p(value[bought]))
    return out


def relevance_batch(rel: RelevanceSet, rows: np.ndarray, negatives: int, num_items: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(queries, items, targets) of the judged ``rows`` plus ``negatives`` random products
    per row for the same query; a random product that happens to be judged keeps its
    grade, any other gets target 0 (an unjudged product is taken as irrelevant)."""
    q = np.concatenate([rel.query[rows], np.repeat(rel.query[rows], negatives)])
    extra = rng.integers(0, num_items, len(rows) * negatives)
    i = np.concatenate([rel.item[rows], extra])
    keys = rel.query * num_items + rel.item
    order = np.argsort(keys)
    look = q[len(rows):] * num_items + extra
    pos = np.searchsorted(keys[order], look).clip(0, max(len(keys) - 1, 0))
    judged = keys[order][pos] == look
    extra_target = np.where(judged, rel.target[order][pos], 0.0)
    return q, i, np.concatenate([rel.target[rows], extra_target]).astype(np.float32)


@dataclass
class FusionData:
    """What the trainer and the evaluation need, in one place."""

    tables: FeatureTables
    examples: ExampleSet
    split: Any                              # kg.split.Split (the GNN's)
    relevance: RelevanceSet | None = None
    query_vectors: torch.Tensor | None = None  # [Q, dt], rows = relevance.queries
    exposure: ExposureModel | None = None      # sources with impressions (fusion.ranking.exposure)


@torch.no_grad()
def evaluate_fusion(model: FusionModel, data: FusionData, part: str = "test",
                    recommend_weights=None, search_weights=None, ks=(10,), candidates: int = 100
                    ) -> dict[str, float]:
    """AUCs, recommendation and search metrics of ``model`` on one part (valid/test)."""
    model.eval()
    code = {"valid": 1, "test": 2}[part]
    scorer = Scorer(model, data.tables, data.query_vectors, data.exposure)
    ex = data.examples.select(code)
    ex = ex.select_mask(ex.scored())
    out: dict[str, float] = {}
    if len(ex):
        p = {k: [] for k in ("ctr", "cvr")}
        for s in range(0, len(ex), 65536):
            lg = scorer.logits(torch.from_numpy(ex.user[s: s + 65536]), torch.from_numpy(ex.item[s: s + 65536]))
            p["ctr"].append(torch.sigmoid(lg["ctr"]))
            p["cvr"].append(torch.sigmoid(lg["cvr"]))
        ctr, cvr = torch.cat(p["ctr"]).cpu().numpy(), torch.cat(p["cvr"]).cpu().numpy()
        out.update(funnel_aucs(ctr, cvr, ctr * cvr, ex.click, ex.conversion))
    out.update(recommend_metrics(scorer, data.split, part, recommend_weights or RECOMMEND_WEIGHTS, ks, candidates))
    rel = data.relevance
    if rel is not None and len(rel):
        qs = np.flatnonzero(rel.query_part == code)
        if len(qs):
            items = torch.arange(data.tables.num_items)
            w = search_weights or SEARCH_WEIGHTS
            out["search_ndcg@10"] = search_ndcg(
                lambda q: scorer.matrix(torch.full((len(q),), -1), items, w, torch.from_numpy(q)),
                rel.query, rel.item, rel.grade, qs, k=10)
    return out


def recommend_metrics(scorer: Scorer, split, part: str, weights, ks=(10,), candidates: int = 100
                      ) -> dict[str, float]:
    """Recall@k / NDCG@k of ``scorer``'s re-ranking (``weights``) of the GNN's top
    ``candidates`` on one part of the GNN ``split`` (full ranking; train, and for the test
    part valid, pairs masked); empty when the part holds no pairs."""
    held = getattr(split, part)
    if not len(held[0]):
        return {}
    seen = [split.train] + ([split.valid] if part == "test" else [])
    rec = evaluate(lambda users: scorer.rerank(users, weights, candidates), split.num_users, split.num_items,
                   held, seen, ks=ks, batch_size=256, device=scorer.device)
    return {f"{m}@{k}": rec[f"{m}@{k}"] for k in ks for m in ("recall", "ndcg")}


def validation_mix(metrics: dict[str, float], kind: str = "impressions") -> float:
    """Early-stopping score: the mean of CTR AUC, CTCVR AUC, recommendation NDCG@10 and
    search nDCG@10 -- without the AUCs for implicit sources, whose negatives are sampled
    (separating them from positives says little about the ranking)."""
    names = ("ctr_auc", "ctcvr_auc", "ndcg@10", "search_ndcg@10") if kind == "impressions" else (
        "ndcg@10", "search_ndcg@10")
    keys = [k for k in names if k in metrics and not math.isnan(metrics[k])]
    return float(np.mean([metrics[k] for k in keys])) if keys else 0.0


@dataclass
class FusionResult:
    model: FusionModel
    tables: FeatureTables
    history: list[dict[str, float]]
    best_epoch: int
    valid: dict[str, float]
    threads: int = 0  #: torch CPU threads it trained with (``config.threads`` resolved)


@torch.no_grad()
def with_candidate_negatives(train: ExampleSet, tables: FeatureTables, per: int, depth: int,
                             rng: np.random.Generator, chunk: int = 1024) -> ExampleSet:
    """``train`` plus ``per`` negatives for each converted example, drawn uniformly from
    the user's top-``depth`` products by GNN dot product that the user has no logged
    example with in ``train`` -- the products the re-ranker will face at serving time
    (uniform negatives are mostly easy: they teach it to tell any plausible product from a
    random one, not which of the plausible ones). All labels 0, ``sampled`` set, the
    positive's time and part."""
    src = np.flatnonzero(train.conversion > 0)
    if not per or not len(src) or depth <= 0:
        return train
    n_items = tables.num_items
    depth = min(depth, n_items)
    logged = distinct(train.user[~train.sampled] * n_items + train.item[~train.sampled])
    users = np.unique(train.user[src])
    row_of = np.full(int(users.max()) + 1, -1, np.int64)
    row_of[users] = np.arange(len(users))
    top = np.empty((len(users), depth), np.int64)                                 # [U', depth]
    for s in range(0, len(users), chunk):
        u = torch.from_numpy(users[s: s + chunk]).to(tables.item_gnn.device)
        top[s: s + chunk] = torch.topk(tables.user_gnn[u] @ tables.item_gnn.T, depth, dim=1).indices.cpu().numpy()
    src = np.repeat(src, per)
    # per negative: a uniform pick from its user's top-N; products with a logged example redrawn
    u, item, ok = sample_unseen(train.user[src], logged, n_items, 1, rng,
                                draw=lambda uu: top[row_of[uu], rng.integers(0, depth, len(uu))],
                                tries=9)  # 10 draws in all
    src, u, item = src[ok], u[ok], item[ok]  # users whose whole top-N is logged: no candidate negative
    zeros = np.zeros(len(src), np.float32)
    return ExampleSet(np.concatenate([train.user, u]), np.concatenate([train.item, item]),
                      np.concatenate([train.time, train.time[src]]), np.concatenate([train.click, zeros]),
                      np.concatenate([train.conversion, zeros]), np.concatenate([train.value, zeros]),
                      np.concatenate([train.part, train.part[src]]), train.kind,
                      np.concatenate([train.sampled, np.ones(len(src), bool)]),
                      {**train.counts, "candidate_negatives": int(len(src))})


def fit_and_check(data: FusionData, config: FusionConfig) -> tuple[FusionData, ExampleSet]:
    """(data for validation, examples to fit) by ``config.train_on``.

    ``"train"``: fit on the training part, validate on the validation part. ``"valid"``:
    fit on the validation part of 80% of the users (a seeded hash) and validate on the
    other 20% -- the GNN never trained on validation-period purchases, so its scores
    there look like they will at test time (on its own training pairs they are
    inflated, and a model fit there learns to over-trust them). ``"auto"`` (default):
    ``"valid"`` when those 80% hold at least ``min_valid_conversions`` conversions, else
    ``"train"`` (sources with few purchases in their validation period; Gift Cards and the
    synthetic shop have enough)."""
    ex = data.examples
    held_users = (np.arange(data.split.num_users) * 2654435761 + config.seed) % 5 == 0   # [U]
    fit = (ex.part == 1) & ~held_users[ex.user]
    if config.train_on == "train" or (
            config.train_on == "auto" and ex.conversion[fit].sum() < config.min_valid_conversions):
        return data, ex.select(0)
    part = ex.part.copy()
    part[fit] = 3  # neither train, valid nor test: not scored in validation
    checked = ExampleSet(ex.user, ex.item, ex.time, ex.click, ex.conversion, ex.value, part, ex.kind,
                         ex.sampled, ex.counts)
    s = data.split
    keep = held_users[s.valid[0]]
    split = type(s)(s.num_users, s.num_items, s.train, (s.valid[0][keep], s.valid[1][keep]), s.test)
    return FusionData(data.tables, checked, split, data.relevance, data.query_vectors, data.exposure), ex.select_mask(fit)


@torch.no_grad()
def scalar_stats(tables: FeatureTables, train: ExampleSet, rel, rel_rows, query_vectors, config: FusionConfig,
                 rng: np.random.Generator, sample: int = 50_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the model's similarity scalars (GNN dot, user-text and query-text
    cosines) over training rows where they are present."""
    rows = rng.choice(len(train), min(sample, len(train)), replace=False)
    dev = tables.item_gnn.device
    u, i = torch.from_numpy(train.user[rows]).to(dev), torch.from_numpy(train.item[rows]).to(dev)
    gnn = (tables.user_gnn[u] * tables.item_gnn[i]).sum(-1)
    has_text = tables.user_text[u].abs().sum(-1) > 0
    text = (tables.user_text[u] * tables.item_text[i]).sum(-1)[has_text]
    if len(rel_rows) and query_vectors is not None:
        q, it, _ = relevance_batch(rel, rel_rows, config.relevance_negatives, tables.num_items, rng)
        query = (query_vectors.to(dev)[torch.from_numpy(q).to(dev)] * tables.item_text[torch.from_numpy(it).to(dev)]).sum(-1)
    else:
        query = torch.zeros(0, device=dev)
    stats = [(x.mean(), x.std()) if len(x) > 1 else (torch.tensor(0.0, device=dev), torch.tensor(1.0, device=dev))
             for x in (gnn, text, query)]
    return torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats])


def train_fusion(data: FusionData, config: FusionConfig | None = None, *, run: RunDir | None = None,
                 progress: bool = False, init: FusionModel | None = None) -> FusionResult:
    """Train on ``data.examples`` (train part) and the train queries; keep the best state
    on the validation mix. With a ``run`` folder, each epoch writes its checkpoint
    (``run.fusion_checkpoint``) and the history so far (``run.fusion_history``), atomically.
    ``init``: a trained model to continue from (a warm start; same architecture)."""
    config = config or FusionConfig()
    with torch_threads(config.threads) as threads:
        result = _train(data, config, run, progress, init)
    result.threads = threads
    return result


def _train(data: FusionData, config: FusionConfig, run: RunDir | None, progress: bool,
           init: FusionModel | None = None) -> FusionResult:
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    tables = data.tables.to(device)
    if config.end_to_end:  # trainable copies of the embedding tables
        tables = replace(tables, user_gnn=nn.Parameter(tables.user_gnn.clone()),
                         item_gnn=nn.Parameter(tables.item_gnn.clone()), item_text=nn.Parameter(tables.item_text.clone()))
    model = FusionModel.for_tables(tables, **config.model_kwargs()).to(device)
    if init is not None:  # a warm start: continue from the trained weights
        model.load_state_dict(init.state_dict())
    balancer = make_balancer(config.balancing, TASKS, config.task_weights, device)
    groups = [{"params": list(model.parameters()) + balancer.trainable(), "lr": config.lr}]
    if config.end_to_end:
        groups.append({"params": [tables.user_gnn, tables.item_gnn, tables.item_text], "lr": config.embedding_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    data, train = fit_and_check(data, config)
    if not len(train):
        raise DataError("no training examples for the fusion model")
    train = with_candidate_negatives(train, tables, config.candidate_negatives, config.candidates, rng)
    scorer = Scorer(model, tables, data.query_vectors)
    rel = data.relevance
    rel_rows = np.flatnonzero(rel.query_part[rel.query] == 0) if rel is not None and len(rel) else np.zeros(0, int)
    model.set_scalar_stats(*scalar_stats(tables, train, rel, rel_rows, data.query_vectors, config, rng))
    click, conv, value = (torch.from_numpy(a).to(device) for a in (train.click, train.conversion, train.value))
    # sampled negatives stay out of the CTR loss only where CTR means P(click | shown); for
    # implicit sources the "click" is "engaged", and the sampled products are its negatives
    sampled = torch.from_numpy(train.sampled).to(device) if train.kind == "impressions" else None
    train_users, train_items = torch.from_numpy(train.user).to(device), torch.from_numpy(train.item).to(device)
    best, best_state, best_epoch, best_valid, bad = -math.inf, None, 0, {}, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    rel_steps = math.ceil(len(rel_rows) / config.relevance_batch_size) if len(rel_rows) else 0
    # one pass over both (the shorter wraps), and at least min_steps_per_epoch steps: on a
    # small source (Gift Cards: 2 batches a pass) validating after every pass stops early
    # on noise before the model has learnt anything
    steps = max(math.ceil(len(train) / config.batch_size), rel_steps, config.min_steps_per_epoch)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(train))).to(device)
        rel_order = rng.permutation(rel_rows) if len(rel_rows) else rel_rows
        totals = {t: 0.0 for t in TASKS}
        bar = tqdm(range(steps), desc=f"fusion epoch {epoch}", disable=not progress, leave=False)
        for step in bar:
            idx = order[torch.arange(step * config.batch_size, (step + 1) * config.batch_size, device=device)
                        % len(train)]
            logits = scorer.logits(train_users[idx], train_items[idx])
            losses = task_losses(logits, click[idx], conv[idx], value[idx], config.esmm,
                             None if sampled is None else sampled[idx])
            if len(rel_rows):
                b = config.relevance_batch_size
                r = np.take(rel_order, np.arange(step * b, (step + 1) * b), mode="wrap")
                q, i, target = relevance_batch(rel, r, config.relevance_negatives, data.tables.num_items, rng)
                lr_ = scorer.logits(torch.full((len(q),), -1), torch.from_numpy(i), torch.from_numpy(q))
                losses["relevance"] = F.binary_cross_entropy_with_logits(lr_["relevance"],
                                                                         torch.from_numpy(target).to(device))
            loss = balancer.combine(losses, model.shared_parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for t, v in losses.items():
                totals[t] += v.item() / steps
        valid = evaluate_fusion(model, FusionData(tables, data.examples, data.split, rel, data.query_vectors,
                                                  data.exposure),
                                "valid", candidates=config.candidates)
        mix = validation_mix(valid, train.kind)
        row = {"epoch": epoch, **{f"loss_{t}": v for t, v in totals.items()}, **valid, "valid_mix": mix,
               **{f"w_{t}": w for t, w in balancer.weights().items()}, "seconds": time.perf_counter() - start}
        history.append(row)
        if progress:
            print(f"fusion epoch {epoch}/{config.epochs}: valid mix {mix:.4f} "
                  + " ".join(f"{k} {v:.4f}" for k, v in valid.items())
                  + f"; {time_left(time.perf_counter() - start, epoch, config.epochs - epoch)}", flush=True)
        if mix > best:
            best, best_epoch, best_valid, bad = mix, epoch, valid, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_tables = tables.map(lambda t: t.detach().clone())
        else:
            bad += 1
        if run is not None:
            save_torch({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "best_epoch": best_epoch}, run.fusion_checkpoint)
            write_json(run.fusion_history, history)
        if bad >= config.patience or (config.max_seconds and time.perf_counter() - start > config.max_seconds):
            break
    model.load_state_dict(best_state)
    model.eval()
    # the result lives on the CPU, where the comparison and the Engine read it
    return FusionResult(model.cpu(), best_tables.to("cpu"), history, best_epoch, best_valid)
