"""Contrastive fine-tuning of the text encoder on the shop's own text.

Usage::

    from fusion.text.finetune import TextTrainConfig, run_finetune
    result = run_finetune(dataset, TextTrainConfig(epochs=1), out_dir="runs/text/encoder")
    result.before["recall@10"], result.after["recall@10"]   # held-out review -> product
    encoder = result.encoder                                   # also saved in out_dir

Training pairs (:func:`build_pairs`), each an *anchor text* and the product it belongs to:

* ``review``: a training review's text (:func:`fusion.text.texts.review_text`) and
  its product -- a review should retrieve its product;
* ``query``: a judged query and each item with ``relevance >= min_relevance``;
* ``pseudo``: pseudo-queries from title/brand/category
  (:func:`fusion.text.texts.pseudo_queries`) for the items that have no such judgement.

Honesty: :func:`split_reviews` holds out a seeded random ``heldout_fraction`` of the
reviews *before* pairs are built; they are only used to measure review -> product
retrieval (Recall@1/10, MRR over the whole catalogue) before and after training.

Loss (:class:`InfoNCELoss`), in-batch negatives over the batch's *distinct* products,
with anchors :math:`a_b`, products :math:`p_u` (unit vectors) and temperature :math:`\\tau`::

    L_a2p = -1/B sum_b log( exp(a_b.p_t(b) / tau) / sum_{u allowed for b} exp(a_b.p_u / tau) )

where a product that is *also* a positive of anchor ``b``'s text (another item relevant to
the same query, a second product with the same review text) is not counted as a negative.
``symmetric`` adds the product -> anchor direction (multi-positive: all anchors of a
product in the batch are its positives). ``learn_temperature`` makes
:math:`\\log(1/\\tau)` a parameter (CLIP), clamped to :math:`\\tau \\ge 0.01`.

Optimisation: AdamW (no decay on biases and LayerNorm), linear warm-up over
``warmup_ratio`` of the steps then linear decay to 0, gradient clipping at
``max_grad_norm``, mixed precision (bf16, or fp16 with a GradScaler) on CUDA, seeded
permutations and dropout. A checkpoint is written after every epoch with
:meth:`TextEncoder.save` (atomic): a Hugging Face directory plus ``text_encoder.json``
and ``text_train.json`` (this config, the temperature, the loss history, metrics).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusion.text.texts import ProductTextConfig, product_texts, pseudo_queries, review_texts
from fusion.text.index import retrieval_metrics
from kg.config import checked_fields, resolve_device, torch_threads
from kg.errors import ConfigError, DataError

TRAIN_FILE = "text_train.json"


@dataclass(frozen=True)
class TextTrainConfig:
    """Everything that defines a fine-tuning run (JSON round-trip: ``to_dict``/``from_dict``)."""

    checkpoint: str | None = None      #: local HF directory to start from (None: MiniLM-L6)
    max_length: int = 128              #: tokens per product text
    anchor_max_length: int = 64        #: tokens per review / query text
    epochs: int = 1
    batch_size: int = 32               #: anchors per step
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1          #: share of the steps with a linear warm-up
    max_grad_norm: float = 1.0
    temperature: float = 0.05          #: tau (initial value when learned)
    learn_temperature: bool = False
    symmetric: bool = True             #: add the product -> anchor loss
    heldout_fraction: float = 0.2      #: reviews held out for evaluation
    review_pairs: bool = True
    judgement_pairs: bool = True
    min_relevance: int = 2             #: judged items at or above this grade are positives
    pseudo_queries_per_item: int = 2   #: for items without a positive judgement (0: none)
    max_pairs_per_epoch: int | None = None  #: sample at most this many pairs per epoch
    max_steps: int | str | None = "auto"  #: stop after this many optimiser steps; "auto": see steps_for; None: all
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"               #: "auto" (cuda if available) | "cpu" | "cuda[:n]"
    amp: bool = True                   #: mixed precision on CUDA (ignored on CPU)
    threads: int | str | None = "auto"  #: torch CPU threads during the run ("auto": the cores free now; None: as is)
    text: ProductTextConfig = field(default_factory=ProductTextConfig)

    def __post_init__(self):
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError("heldout_fraction must be in [0, 1)")
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (in-batch negatives)")
        if not (self.max_steps in (None, "auto") or (isinstance(self.max_steps, int) and self.max_steps > 0)):
            raise ConfigError(f"max_steps must be a positive number, 'auto' or None, not {self.max_steps!r}")
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", ProductTextConfig.from_dict(self.text))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextTrainConfig:
        return cls(**checked_fields(cls, values))

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def steps_for(self, epoch_steps: int) -> int:
        """Optimiser steps of a run whose epochs have ``epoch_steps`` steps: ``max_steps`` as
        given, or with ``"auto"`` a tenth of an epoch but at least 60 (and at most the
        epochs asked for): a small shop's text is learnt in ~60 steps of 32 pairs (what the
        fusion figures of the README use), a large one gets more, none pays a whole CPU epoch
        (a 6,500-pair shop took 40 minutes)."""
        total = self.epochs * epoch_steps
        if self.max_steps == "auto":
            return min(total, max(60, epoch_steps // 10))
        return total if self.max_steps is None else min(total, int(self.max_steps))


# ---------------------------------------------------------------------------- pairs

def split_reviews(reviews: pd.DataFrame, heldout_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, heldout) reviews: a seeded random ``heldout_fraction`` is held out."""
    rng = np.random.default_rng(seed)
    n_held = int(round(heldout_fraction * len(reviews)))
    held = np.zeros(len(reviews), dtype=bool)
    held[rng.permutation(len(reviews))[:n_held]] = True
    return reviews[~held].reset_index(drop=True), reviews[held].reset_index(drop=True)


@dataclass
class TextPairs:
    """Anchor texts and their products. ``items`` are rows of ``item_texts``."""

    anchors: list[str]          #: [P] review / query texts
    items: np.ndarray           #: int64 [P]
    kinds: np.ndarray           #: str [P]: "review" | "query" | "pseudo"
    item_ids: np.ndarray        #: str [I]
    item_texts: list[str]       #: [I]

    def __post_init__(self):
        # every item positive for an anchor text (masks false negatives in a batch)
        self.groups, texts = pd.factorize(pd.Series(self.anchors, dtype=object))
        self.positives: dict[int, set[int]] = {}
        for g, i in zip(self.groups.tolist(), self.items.tolist()):
            self.positives.setdefault(g, set()).add(i)

    def __len__(self) -> int:
        return len(self.anchors)

    def counts(self) -> dict[str, int]:
        kinds, n = np.unique(self.kinds, return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, n)}


def build_pairs(items: pd.DataFrame, train_reviews: pd.DataFrame, judgements: pd.DataFrame | None,
                config: TextTrainConfig) -> TextPairs:
    """Training pairs from the catalogue, the *training* reviews and the judgements."""
    texts = product_texts(items, config.text)
    item_ids = texts.index.to_numpy(dtype=object)
    row = pd.Index(item_ids)
    anchors: list[str] = []
    rows: list[np.ndarray] = []
    kinds: list[str] = []

    def add(anchor_texts, anchor_items, kind):
        pos = row.get_indexer(pd.Index(np.asarray(anchor_items, dtype=object)))
        keep = [(t, p) for t, p in zip(anchor_texts, pos) if p >= 0 and t]
        anchors.extend(t for t, _ in keep)
        rows.append(np.asarray([p for _, p in keep], dtype=np.int64))
        kinds.extend([kind] * len(keep))

    if config.review_pairs and len(train_reviews):
        add(review_texts(train_reviews, config.text).tolist(), train_reviews["item_id"], "review")
    judged: set = set()
    if config.judgement_pairs and judgements is not None and len(judgements):
        good = judgements[judgements["relevance"] >= config.min_relevance]
        add(good["query"].tolist(), good["item_id"], "query")
        judged = set(good["item_id"])
    if config.pseudo_queries_per_item > 0:
        todo = items[~items["item_id"].isin(judged)] if judged else items
        pq = pseudo_queries(todo, config.pseudo_queries_per_item, seed=config.seed)
        add(pq["query"].tolist(), pq["item_id"], "pseudo")
    return TextPairs(anchors, np.concatenate(rows) if rows else np.zeros(0, np.int64),
                     np.asarray(kinds, dtype=object), item_ids, texts.tolist())


# ---------------------------------------------------------------------------- loss

class InfoNCELoss(nn.Module):
    r"""InfoNCE with in-batch negatives, masked false negatives, optional learned temperature.

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_b \log
            \frac{e^{a_b^\top p_{t_b}/\tau}}{\sum_{u \in A_b} e^{a_b^\top p_u/\tau}}
        \;\Big[ + \frac{1}{U}\sum_u -\log
            \frac{\sum_{b: t_b = u} e^{a_b^\top p_u/\tau}}{\sum_{b: u \in A_b} e^{a_b^\top p_u/\tau}} \Big]_{\text{symmetric}}

    :math:`A_b` = the batch's products except other positives of anchor :math:`b`; the
    bracketed product -> anchor term is added (and the sum halved) when ``symmetric``.

    Args:
        temperature: :math:`\tau` (initial value when ``learn``).
        learn: learn :math:`\log(1/\tau)` (clamped to :math:`1/\tau \le 100`).
        symmetric: add the product -> anchor direction.
    """

    def __init__(self, temperature: float = 0.05, learn: bool = False, symmetric: bool = True) -> None:
        super().__init__()
        self.symmetric = symmetric
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().clamp(max=math.log(100.0)).exp())

    def forward(self, anchors: torch.Tensor, products: torch.Tensor, targets: torch.Tensor,
                false_negatives: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            anchors: FloatTensor [B, d] (unit norm); products: FloatTensor [U, d] (unit norm).
            targets: LongTensor [B], the product column of each anchor.
            false_negatives: BoolTensor [B, U], True where column u is another positive of anchor b.
        Returns:
            scalar loss.
        """
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * anchors.float() @ products.float().T                 # [B, U]
        if false_negatives is not None:
            logits = logits.masked_fill(false_negatives, -torch.inf)
        loss = nn.functional.cross_entropy(logits, targets)
        if not self.symmetric:
            return loss
        positive = torch.zeros_like(logits, dtype=torch.bool)
        positive[torch.arange(len(targets)), targets] = True                 # [B, U]
        cols = logits.T                                                        # [U, B]
        numer = cols.masked_fill(~positive.T, -torch.inf).logsumexp(1)         # [U]
        denom = cols.logsumexp(1)                                              # [U]
        return 0.5 * (loss + (denom - numer).mean())


# ---------------------------------------------------------------------------- training

@dataclass
class TextTrainResult:
    encoder: Any                        #: the fine-tuned TextEncoder
    history: list[dict[str, float]]     #: per epoch: epoch, steps, loss, seconds
    temperature: float
    steps: int
    train_seconds: float
    pairs: dict[str, int] = field(default_factory=dict)
    before: dict[str, float] = field(default_factory=dict)   #: held-out metrics before training
    after: dict[str, float] = field(default_factory=dict)    #: ... and after
    threads: int = 0                    #: torch CPU threads it ran with (``config.threads`` resolved)


def _optimizer(encoder: nn.Module, loss_fn: nn.Module, config: TextTrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in encoder.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    learned = [p for p in loss_fn.parameters() if p.requires_grad]
    if learned:
        groups.append({"params": learned, "weight_decay": 0.0, "lr": max(config.lr, 1e-3)})
    return torch.optim.AdamW(groups, lr=config.lr)


def _warmup_linear(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))
    return factor


def finetune(encoder, pairs: TextPairs, config: TextTrainConfig, *, out_dir: str | Path | None = None,
             progress: bool = False, on_epoch: Callable[[int], dict] | None = None) -> TextTrainResult:
    """Fine-tune ``encoder`` in place on ``pairs`` (see the module docstring).

    ``on_epoch(epoch)`` may return metrics to record in the history; a checkpoint is
    written to ``out_dir`` after every epoch when given. The encoder's ``max_length``
    setting becomes ``config.max_length`` (product texts); anchors are tokenised to
    ``config.anchor_max_length``.
    """
    if len(pairs) < 2:
        raise DataError(f"need at least 2 training pairs, got {len(pairs)}")
    with torch_threads(config.threads):
        return _finetune(encoder, pairs, config, out_dir, progress, on_epoch)


def _finetune(encoder, pairs, config, out_dir, progress, on_epoch) -> TextTrainResult:
    device = config.resolved_device()
    torch.manual_seed(config.seed)
    encoder.to(device)
    encoder.settings = type(encoder.settings)(**{**encoder.settings.to_dict(), "max_length": config.max_length})
    loss_fn = InfoNCELoss(config.temperature, config.learn_temperature, config.symmetric).to(device)
    optimizer = _optimizer(encoder, loss_fn, config)
    per_epoch = min(len(pairs), config.max_pairs_per_epoch or len(pairs))
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    total = config.steps_for(steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_linear(total, int(round(config.warmup_ratio * total))))
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    step = 0
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="fine-tune", unit="step")
    encoder.train()
    try:
        for epoch in range(1, config.epochs + 1):
            if step >= total:
                break
            order = torch.randperm(len(pairs), generator=generator)[:per_epoch].numpy()
            losses = []
            epoch_start = time.perf_counter()
            for b in range(0, len(order), config.batch_size):
                if step >= total:
                    break
                batch = order[b: b + config.batch_size]
                if len(batch) < 2:
                    continue
                columns, targets = np.unique(pairs.items[batch], return_inverse=True)
                groups = pairs.groups[batch]
                col_list = columns.tolist()
                false_neg = torch.tensor([[c != columns[t] and c in pairs.positives[g] for c in col_list]
                                          for g, t in zip(groups.tolist(), targets.tolist())],
                                         dtype=torch.bool, device=device)          # [B, U]
                anchor_batch = encoder.tokenize([pairs.anchors[i] for i in batch], config.anchor_max_length)
                product_batch = encoder.tokenize([pairs.item_texts[c] for c in col_list], config.max_length)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    a = encoder(**{k: v.to(device) for k, v in anchor_batch.items()})    # [B, d]
                    p = encoder(**{k: v.to(device) for k, v in product_batch.items()})   # [U, d]
                loss = loss_fn(a, p, torch.from_numpy(targets).to(device), false_neg)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(list(encoder.parameters()) + list(loss_fn.parameters()),
                                               config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            record = {"epoch": epoch, "steps": step, "loss": float(np.mean(losses)) if losses else math.nan,
                      "temperature": loss_fn.temperature, "seconds": time.perf_counter() - epoch_start}
            if on_epoch is not None:
                encoder.eval()
                record.update(on_epoch(epoch) or {})
                encoder.train()
            history.append(record)
            if out_dir is not None:
                save_checkpoint(encoder, out_dir, config, history, loss_fn.temperature)
    finally:
        if bar is not None:
            bar.close()
        encoder.eval()
    return TextTrainResult(encoder=encoder, history=history, temperature=loss_fn.temperature, steps=step,
                           train_seconds=time.perf_counter() - start, pairs=pairs.counts())


def save_checkpoint(encoder, out_dir: str | Path, config: TextTrainConfig, history: list[dict],
                    temperature: float, metrics: dict | None = None) -> Path:
    """The encoder as an HF directory + ``text_encoder.json`` + ``text_train.json``, atomically."""
    record = {"config": config.to_dict(), "temperature": temperature, "history": history,
              "metrics": metrics or {}, "fingerprint": encoder.fingerprint()}
    return encoder.save(out_dir, extra_files={TRAIN_FILE: json.dumps(record, indent=2) + "\n"})


def load_train_record(directory: str | Path) -> tuple[TextTrainConfig, dict]:
    """(config, the whole record) from a checkpoint's ``text_train.json``."""
    record = json.loads((Path(directory) / TRAIN_FILE).read_text())
    return TextTrainConfig.from_dict(record["config"]), record


# ---------------------------------------------------------------------------- evaluation

@torch.no_grad()
def review_retrieval(encoder, items: pd.DataFrame, reviews: pd.DataFrame, *, batch_size: int = 64,
                     text_config: ProductTextConfig | None = None, ks=(1, 10),
                     item_vectors: torch.Tensor | None = None, cache=None) -> dict[str, float]:
    """Review -> product retrieval over the whole catalogue: Recall@K and MRR.

    Each review's text is a query whose single target is its product; reviews with an
    empty text are skipped. ``item_vectors`` (rows aligned with ``items``) skips
    re-encoding the catalogue; ``cache`` (a :class:`fusion.text.index.MemoryCache` or
    :class:`~fusion.text.index.EmbeddingCache`) encodes each distinct text once and keeps
    the vectors for the caller's own embedding passes.
    """
    def encode(values: list[str]) -> torch.Tensor:
        return encoder.encode(values, batch_size) if cache is None else cache.encode(encoder, values, batch_size)

    texts = review_texts(reviews, text_config)
    keep = np.array(texts.str.len() > 0, dtype=bool)
    targets = pd.Index(items["item_id"]).get_indexer(reviews["item_id"])
    keep &= targets >= 0
    if item_vectors is None:
        item_vectors = encode(product_texts(items, text_config).tolist())
    queries = encode(texts[keep].tolist())
    return retrieval_metrics(queries, item_vectors, torch.from_numpy(targets[keep]), ks)


def run_finetune(dataset, config: TextTrainConfig | None = None, out_dir: str | Path | None = None, *,
                 encoder=None, evaluate: bool | str = True, cache=None,
                 progress: bool = False) -> TextTrainResult:
    """Split reviews, build pairs, measure, fine-tune, measure again, save.

    ``dataset`` is a canonical :class:`loaders.Dataset`; ``encoder`` defaults to
    ``TextEncoder.from_pretrained(config.checkpoint)``. The held-out review -> product
    metrics before and after training are in ``result.before`` / ``result.after`` and in
    ``out_dir/text_train.json``. ``evaluate``: ``True`` measures both, ``"after"`` only the
    trained encoder (one pass over the catalogue less), ``False`` neither. ``cache`` (see
    :func:`review_retrieval`) keeps the after-measure's vectors for the caller.
    """
    config = config or TextTrainConfig()
    if evaluate not in (True, False, "after"):
        raise ConfigError(f"evaluate must be True, False or 'after', not {evaluate!r}")
    with torch_threads(config.threads) as threads:
        result = _run_finetune(dataset, config, out_dir, encoder, evaluate, cache, progress)
    result.threads = threads
    return result


def _run_finetune(dataset, config, out_dir, encoder, evaluate, cache, progress) -> TextTrainResult:
    from fusion.text.encoder import TextEncoder

    if encoder is None:
        encoder = TextEncoder.from_pretrained(config.checkpoint, max_length=config.max_length)
    train_reviews, heldout = split_reviews(dataset.reviews, config.heldout_fraction, config.seed)
    pairs = build_pairs(dataset.items, train_reviews, dataset.judgements, config)

    def measure(when: str) -> dict[str, float]:
        if not evaluate or (evaluate == "after" and when == "before") or not len(heldout):
            return {}
        if progress:
            print(f"text: held-out review -> product retrieval {when} fine-tuning "
                  f"({len(heldout):,} reviews, {len(dataset.items):,} products)", flush=True)
        return review_retrieval(encoder, dataset.items, heldout, batch_size=config.eval_batch_size,
                                text_config=config.text, cache=cache if when == "after" else None)

    encoder.settings = type(encoder.settings)(**{**encoder.settings.to_dict(), "max_length": config.max_length})
    before = measure("before")
    result = finetune(encoder, pairs, config, out_dir=out_dir, progress=progress)  # a checkpoint per epoch
    result.before, result.after = before, measure("after")
    if out_dir is not None:
        save_checkpoint(encoder, out_dir, config, result.history, result.temperature,
                        {"before": result.before, "after": result.after, "pairs": result.pairs,
                         "heldout_reviews": len(heldout)})
    return result
