"""Text embeddings at catalogue scale: the on-disk cache, embedding jobs, user profiles,
and text-only retrieval (the search baseline).

Usage::

    from fusion.text.encoder import TextEncoder
    from fusion.text.index import EmbeddingCache, embed_items, embed_reviews, user_profiles, TextSearch
    encoder = TextEncoder.from_pretrained("runs/text/encoder")
    cache = EmbeddingCache("runs/text/cache")
    items = embed_items(encoder, dataset.items, cache=cache, progress=True)     # Embeddings [I, d]
    reviews = embed_reviews(encoder, dataset.reviews, cache=cache)              # Embeddings [R, d]
    users = user_profiles(reviews, dataset.reviews, items, dataset.interactions)
    search = TextSearch(encoder, build_index(items))                            # exact up to ~1M items
    item_ids, scores = search.search("wireless headphones", k=10)

Cache (:class:`EmbeddingCache`): ``root/<encoder fingerprint>/shard-*.npz``, each shard
holding ``keys`` (uint8 [n, 20], the sha1 of each text) and ``vectors`` (float32 [n, d]).
The fingerprint (:meth:`TextEncoder.fingerprint`) hashes weights and settings, so a
fine-tuned encoder never reads a stale vector; a re-run encodes only texts whose sha1 is
new, and writes them as one more shard (atomically, :func:`kg.run_dir.save_npz`: concurrent or
interrupted jobs never leave a torn shard).

In memory (:class:`MemoryCache`): the same interface for one job, without the disk.

Retrieval: :class:`ExactIndex` scores queries against all items with one matrix
product per query block (``[Q, d] @ [d, N]``, then ``topk``) -- exact, and on a CPU fine
up to about a million items (1M x 384 float32 = 1.5 GB). :class:`IVFIndex` is the
approximate option beyond: spherical k-means partitions the items into ``n_lists``
lists; a query is scored exactly against the items of its ``n_probe`` nearest lists
only (the IVF-Flat scheme of FAISS, in plain torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from fusion.text.texts import ProductTextConfig, product_texts, review_texts
from kg.errors import ConfigError
from kg.run_dir import save_npy, save_npz, write_json, write_text
from loaders.text import clean_text

#: interaction events that make an item part of a user's profile
PROFILE_EVENTS = ("purchase",)


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha1 digest of each text (utf-8): uint8 [N, 20]."""
    out = np.empty((len(texts), 20), dtype=np.uint8)
    for i, text in enumerate(texts):
        out[i] = np.frombuffer(hashlib.sha1(text.encode("utf-8")).digest(), dtype=np.uint8)
    return out


def _hex(keys: np.ndarray) -> pd.Index:
    return pd.Index([bytes(row).hex() for row in keys])


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0        #: distinct texts encoded
    seconds: float = 0.0


class EmbeddingCache:
    """Text embeddings on disk, keyed by (encoder fingerprint, sha1 of the text)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._loaded: dict[str, tuple[frozenset[str], pd.Index, np.ndarray]] = {}
        self.last = CacheStats()

    def _folder(self, fingerprint: str) -> Path:
        return self.root / fingerprint

    def _table(self, fingerprint: str) -> tuple[pd.Index, np.ndarray]:
        """All cached (key index, vectors [n, d]) of one fingerprint; re-read when shards change."""
        folder = self._folder(fingerprint)
        shards = frozenset(p.name for p in folder.glob("shard-*.npz")) if folder.is_dir() else frozenset()
        cached = self._loaded.get(fingerprint)
        if cached is not None and cached[0] == shards:
            return cached[1], cached[2]
        keys, vectors = [], []
        for name in sorted(shards):
            with np.load(folder / name, allow_pickle=False) as z:
                keys.append(z["keys"])
                vectors.append(z["vectors"])
        if keys:
            index, matrix = _hex(np.concatenate(keys)), np.concatenate(vectors)
            first = ~index.duplicated()  # two jobs may have written the same text
            index, matrix = index[first], matrix[first]
        else:
            index, matrix = pd.Index([], dtype=object), np.zeros((0, 0), np.float32)
        self._loaded[fingerprint] = (shards, index, matrix)
        return index, matrix

    def __len__(self) -> int:
        return sum(len(self._table(p.name)[0]) for p in self.root.glob("*") if p.is_dir())

    def encode(self, encoder, texts: Sequence[str], batch_size: int = 64, *,
               progress: bool = False) -> torch.Tensor:
        """Embeddings of ``texts`` (FloatTensor [N, d]), encoding only texts not cached yet.

        Hit/miss counts of the call are in :attr:`last`.
        """
        start = time.perf_counter()
        texts = [t if isinstance(t, str) else "" for t in texts]
        fingerprint = encoder.fingerprint()
        keys = text_keys(texts)
        hexes = _hex(keys)
        index, matrix = self._table(fingerprint)
        pos = index.get_indexer(hexes) if len(index) else np.full(len(texts), -1)
        out = torch.empty(len(texts), encoder.dim)
        hit = pos >= 0
        if hit.any():
            out[torch.from_numpy(np.flatnonzero(hit))] = torch.from_numpy(matrix[pos[hit]])
        miss = np.flatnonzero(~hit)
        n_new = 0
        if len(miss):
            _, first = np.unique(hexes[miss].to_numpy(), return_index=True)
            new = miss[np.sort(first)]  # one row per distinct missing text
            n_new = len(new)
            vectors = encoder.encode([texts[i] for i in new], batch_size, progress=progress)
            self._write(fingerprint, keys[new], vectors.numpy().astype(np.float32), encoder)
            lookup = pd.Index(hexes[new]).get_indexer(hexes[miss])
            out[torch.from_numpy(miss)] = vectors[torch.from_numpy(lookup)]
        self.last = CacheStats(hits=int(hit.sum()), misses=n_new, seconds=time.perf_counter() - start)
        return out

    def _write(self, fingerprint: str, keys: np.ndarray, vectors: np.ndarray, encoder) -> None:
        folder = self._folder(fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        about = folder / "encoder.json"
        if not about.exists():
            write_json(about, {"source": getattr(encoder, "source", ""), "dim": encoder.dim,
                               "settings": encoder.settings.to_dict()})
        save_npz(folder / f"shard-{time.time_ns():020d}-{os.getpid()}.npz", keys=keys, vectors=vectors)


class MemoryCache:
    """Text embeddings in memory for one job, keyed by (encoder fingerprint, text): the
    same :meth:`encode` as :class:`EmbeddingCache` without the disk. The text stage of a
    training run shares one between the held-out measurement and its embedding passes, so
    every distinct text is encoded once (duplicate reviews such as "Great" included)."""

    def __init__(self) -> None:
        self._vectors: dict[str, dict[str, torch.Tensor]] = {}
        self.last = CacheStats()

    def __len__(self) -> int:
        return sum(len(v) for v in self._vectors.values())

    def encode(self, encoder, texts: Sequence[str], batch_size: int = 64, *,
               progress: bool = False) -> torch.Tensor:
        """Embeddings of ``texts`` (FloatTensor [N, d]), encoding only texts not seen yet."""
        start = time.perf_counter()
        texts = [t if isinstance(t, str) else "" for t in texts]
        known = self._vectors.setdefault(encoder.fingerprint(), {})
        new = list(dict.fromkeys(t for t in texts if t not in known))
        if new:
            known.update(zip(new, encoder.encode(new, batch_size, progress=progress)))
        self.last = CacheStats(hits=len(texts) - len(new), misses=len(new), seconds=time.perf_counter() - start)
        return torch.stack([known[t] for t in texts]) if texts else torch.empty(0, encoder.dim)


# ---------------------------------------------------------------------------- embedding jobs

@dataclass
class Embeddings:
    """Row ``i`` of ``vectors`` (FloatTensor [N, d]) belongs to ``ids[i]`` (str array [N])."""

    ids: np.ndarray
    vectors: torch.Tensor

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=object)
        if len(self.ids) != len(self.vectors):
            raise ValueError(f"{len(self.ids)} ids but {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, ids) -> np.ndarray:
        """Row of each id, -1 when absent: int64 [len(ids)]."""
        return pd.Index(self.ids).get_indexer(pd.Index(np.asarray(ids, dtype=object)))

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        save_npy(directory / "vectors.npy", self.vectors.numpy().astype(np.float32))
        write_text(directory / "ids.json", json.dumps([str(i) for i in self.ids]))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Embeddings:
        directory = Path(directory)
        ids = json.loads((directory / "ids.json").read_text())
        return cls(np.asarray(ids, dtype=object),
                   torch.from_numpy(np.load(directory / "vectors.npy", allow_pickle=False)))


def _encode(encoder, texts: list[str], cache: EmbeddingCache | None, batch_size: int,
            progress: bool) -> torch.Tensor:
    if cache is not None:
        return cache.encode(encoder, texts, batch_size, progress=progress)
    return encoder.encode(texts, batch_size, progress=progress)


def embed_items(encoder, items: pd.DataFrame, *, cache: EmbeddingCache | None = None,
                batch_size: int = 64, progress: bool = False,
                text_config: ProductTextConfig | None = None) -> Embeddings:
    """Embeddings of every product text (:func:`fusion.text.texts.product_texts`); a product
    with no text at all (no title, brand, category, description or feature: an id-only row)
    gets a zero row, "no text" -- not the encoding of an empty string, which every such
    product would share and which would place it among arbitrary products."""
    texts = product_texts(items, text_config)
    has = np.array(texts.str.len() > 0, dtype=bool)
    vectors = torch.zeros(len(texts), encoder.dim)
    if has.any():
        vectors[torch.from_numpy(has)] = _encode(encoder, texts[has].tolist(), cache, batch_size, progress).float()
    return Embeddings(texts.index.to_numpy(), vectors)


def product_has_text(items: pd.DataFrame) -> pd.Series:
    """bool per product of the canonical ``items`` table (indexed by ``item_id``): whether it
    has text a query can match -- a title, brand, category, description or feature
    (:func:`fusion.text.texts.product_texts`) other than a title that only repeats the
    product's own id, the name loaders give a product without one
    (:func:`loaders.text.fallback_title`). :func:`embed_items` still encodes such an id
    title (the fusion model was trained on that vector); this says whether a search can
    find anything by it."""
    ids = items["item_id"].astype(str)
    titles = items["title"].fillna("").astype(str)
    only_id = titles.map(clean_text).str.casefold() == ids.map(clean_text).str.casefold()
    texts = product_texts(items.assign(title=titles.where(~only_id, "")))
    return pd.Series(texts.str.len().to_numpy() > 0, index=pd.Index(items["item_id"], name="item_id"),
                     name="has_text")


def any_product_text(items: pd.DataFrame, chunk: int = 1024) -> bool:
    """Whether any product of ``items`` has text a query can match (:func:`product_has_text`),
    without building every product's text (2.8 s for 100,000 products): field by field
    (title, brand, categories, description, features), the rows where it is filled (a title
    other than the id) are checked ``chunk`` at a time, and the first with text answers --
    in a shop with titles, the first chunk."""
    ids = items["item_id"].astype(str).str.strip()
    checked = np.zeros(len(items), dtype=bool)
    for column in ("title", "brand", "categories", "description", "features"):
        if column not in items:
            continue
        values = items[column]
        if column in ("categories", "features"):
            filled = values.map(lambda v: len(v) > 0 if isinstance(v, (list, tuple, np.ndarray))
                                else isinstance(v, str) and bool(v.strip()))
        else:
            text = values.fillna("").astype(str).str.strip()
            filled = (text != "") & (text != ids) if column == "title" else text != ""
        rows = np.flatnonzero(filled.to_numpy(dtype=bool) & ~checked)
        checked[rows] = True
        if any(bool(product_has_text(items.iloc[rows[s: s + chunk]]).any()) for s in range(0, len(rows), chunk)):
            return True
    return False


def embed_reviews(encoder, reviews: pd.DataFrame, *, cache: EmbeddingCache | None = None,
                  batch_size: int = 64, progress: bool = False,
                  text_config: ProductTextConfig | None = None) -> Embeddings:
    """Embeddings of every review with text (:func:`fusion.text.texts.review_texts`); a review
    with neither summary nor text (a rating alone) has no row, so it adds nothing to its
    user's profile (:func:`user_profiles` reads the reviews it finds)."""
    texts = review_texts(reviews, text_config)
    texts = texts[texts.str.len() > 0]
    return Embeddings(texts.index.to_numpy(), _encode(encoder, texts.tolist(), cache, batch_size, progress))


def user_profiles(review_embeddings: Embeddings, reviews: pd.DataFrame, item_embeddings: Embeddings,
                  interactions: pd.DataFrame | None = None, *, review_weight: float = 1.0,
                  item_weight: float = 1.0, events: Sequence[str] = PROFILE_EVENTS) -> Embeddings:
    r"""Each user's text profile: the weighted mean of their review and purchased-item embeddings.

    .. math::
        p_u = \mathrm{normalize}\Big(\frac{w_r \sum_{r \in R_u} e_r + w_i \sum_{i \in P_u} e_i}
                                          {w_r |R_u| + w_i |P_u|}\Big)

    with :math:`R_u` the user's reviews (rows of ``reviews`` found in
    ``review_embeddings``) and :math:`P_u` the *distinct* items of their ``events``
    interactions (purchases by default) found in ``item_embeddings``. Users with neither
    get no row (cold start is the caller's decision). Returns Embeddings [U, d], ids sorted.
    """
    d = review_embeddings.vectors.shape[1] if len(review_embeddings) else item_embeddings.vectors.shape[1]
    parts_user, parts_vec, parts_w = [], [], []
    if len(reviews) and review_weight > 0:
        pos = review_embeddings.positions(reviews["review_id"])
        ok = pos >= 0
        parts_user.append(reviews["user_id"].to_numpy(dtype=object)[ok])
        parts_vec.append(review_embeddings.vectors[torch.from_numpy(pos[ok])])
        parts_w.append(np.full(ok.sum(), review_weight))
    if interactions is not None and len(interactions) and item_weight > 0:
        bought = interactions.loc[interactions["event"].isin(list(events)), ["user_id", "item_id"]]
        bought = bought.drop_duplicates()
        pos = item_embeddings.positions(bought["item_id"])
        ok = pos >= 0
        parts_user.append(bought["user_id"].to_numpy(dtype=object)[ok])
        parts_vec.append(item_embeddings.vectors[torch.from_numpy(pos[ok])])
        parts_w.append(np.full(ok.sum(), item_weight))
    if not parts_user or sum(len(u) for u in parts_user) == 0:
        return Embeddings(np.zeros(0, dtype=object), torch.zeros(0, d))
    users = np.concatenate(parts_user)
    codes, uniques = pd.factorize(pd.Series(users, dtype=object), sort=True)
    weights = torch.from_numpy(np.concatenate(parts_w)).float()  # [M]
    vectors = torch.cat(parts_vec)                                # [M, d]
    codes_t = torch.from_numpy(codes)
    total = torch.zeros(len(uniques), d).index_add_(0, codes_t, vectors * weights[:, None])
    mass = torch.zeros(len(uniques)).index_add_(0, codes_t, weights)
    mean = total / mass.clamp(min=1e-12)[:, None]
    return Embeddings(np.asarray(uniques, dtype=object), torch.nn.functional.normalize(mean, dim=-1))


# ---------------------------------------------------------------------------- retrieval

class ExactIndex:
    """Exact maximum inner product (= cosine for unit vectors) over all items.

    Args:
        vectors: FloatTensor [N, d], the item embeddings.
        ids: item ids [N].
    """

    kind = "exact"

    def __init__(self, vectors: torch.Tensor, ids: Sequence[str]) -> None:
        self.vectors = vectors.float().contiguous()
        self.ids = np.asarray(ids, dtype=object)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={len(self)}, dim={self.vectors.shape[1]})"

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int = 10, block: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items per query: (scores FloatTensor [Q, k], positions LongTensor [Q, k]).

        Queries go in blocks of ``block`` (default: as many as keep the score block
        ``[block, N]`` at about 64M floats = 256 MB, at most 1024).
        """
        k = min(k, len(self))
        block = block or max(1, min(1024, 2 ** 26 // max(len(self), 1)))
        scores, positions = [], []
        for start in range(0, len(queries), block):
            s = queries[start: start + block].float() @ self.vectors.T  # [b, N]
            top = torch.topk(s, k, dim=1)
            scores.append(top.values)
            positions.append(top.indices)
        if not scores:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.cat(scores), torch.cat(positions)

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        Embeddings(self.ids, self.vectors).save(directory)
        (directory / "index.json").write_text(json.dumps({"kind": self.kind}) + "\n")
        return directory


class IVFIndex(ExactIndex):
    r"""Approximate search: an inverted file over a spherical k-means partition.

    Build: ``n_lists`` centroids :math:`c_l` by spherical k-means (``n_iter`` rounds
    of assign :math:`l(i) = \arg\max_l x_i^\top c_l`, update :math:`c_l =
    \mathrm{normalize}(\sum_{l(i)=l} x_i)`) on at most ``64 * n_lists`` sampled items,
    then every item is assigned to its nearest centroid. Search: the ``n_probe`` lists
    whose centroids score highest for the query are scanned exactly. Recall grows with
    ``n_probe``; ``n_probe = n_lists`` is exact.

    Args:
        vectors: FloatTensor [N, d] (unit norm for cosine).
        ids: item ids [N].
        n_lists: number of lists (default ``round(sqrt(N))``).
        n_probe: lists scanned per query (default ``max(1, n_lists // 16)``).
    """

    kind = "ivf"

    def __init__(self, vectors: torch.Tensor, ids: Sequence[str], n_lists: int | None = None,
                 n_probe: int | None = None, n_iter: int = 10, seed: int = 0,
                 centroids: torch.Tensor | None = None) -> None:
        super().__init__(vectors, ids)
        n = len(self.vectors)
        self.n_lists = max(1, min(n, n_lists or int(round(math.sqrt(max(n, 1))))))
        self.n_probe = max(1, min(self.n_lists, n_probe or max(1, self.n_lists // 16)))
        self.centroids = centroids if centroids is not None else self._kmeans(n_iter, seed)
        assign = self._assign(self.vectors)                                   # [N]
        self.order = torch.argsort(assign, stable=True)                       # items grouped by list
        counts = torch.bincount(assign, minlength=self.n_lists)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # [n_lists + 1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={len(self)}, n_lists={self.n_lists}, n_probe={self.n_probe})"

    def _assign(self, x: torch.Tensor, block: int = 65536) -> torch.Tensor:
        return torch.cat([(x[s: s + block] @ self.centroids.T).argmax(1) for s in range(0, len(x), block)]) \
            if len(x) else torch.zeros(0, dtype=torch.long)

    def _kmeans(self, n_iter: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        n = len(self.vectors)
        sample = self.vectors[torch.randperm(n, generator=g)[: 64 * self.n_lists]]
        self.centroids = sample[torch.randperm(len(sample), generator=g)[: self.n_lists]].clone()
        for _ in range(n_iter):
            assign = self._assign(sample)
            sums = torch.zeros_like(self.centroids).index_add_(0, assign, sample)
            counts = torch.bincount(assign, minlength=self.n_lists)
            empty = counts == 0
            if empty.any():  # re-seed empty lists with random points
                sums[empty] = sample[torch.randint(len(sample), (int(empty.sum()),), generator=g)]
            self.centroids = torch.nn.functional.normalize(sums, dim=-1)
        return self.centroids

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int = 10, block: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` of the probed lists per query: (scores [Q, k], positions [Q, k]); a
        query whose lists hold fewer than ``k`` items is padded with -inf / -1."""
        k = min(k, len(self))
        q = queries.float()
        probe = torch.topk(q @ self.centroids.T, self.n_probe, dim=1).indices  # [Q, n_probe]
        scores = torch.full((len(q), k), -math.inf)
        positions = torch.full((len(q), k), -1, dtype=torch.long)
        for row in range(len(q)):
            cand = torch.cat([self.order[self.offsets[l]: self.offsets[l + 1]] for l in probe[row].tolist()])
            if len(cand) == 0:
                continue
            s = self.vectors[cand] @ q[row]                                    # [C]
            top = torch.topk(s, min(k, len(cand)))
            scores[row, : len(top.values)] = top.values
            positions[row, : len(top.values)] = cand[top.indices]
        return scores, positions

    def save(self, directory: str | os.PathLike) -> Path:
        directory = super().save(directory)
        np.save(directory / "centroids.npy", self.centroids.numpy())
        (directory / "index.json").write_text(json.dumps(
            {"kind": self.kind, "n_lists": self.n_lists, "n_probe": self.n_probe}) + "\n")
        return directory


#: catalogues larger than this get an IVF index from ``build_index(kind="auto")``
EXACT_LIMIT = 1_000_000


def build_index(embeddings: Embeddings, kind: str = "auto", **options) -> ExactIndex:
    """``"exact"``, ``"ivf"`` (options: n_lists, n_probe, n_iter, seed) or ``"auto"``
    (exact up to :data:`EXACT_LIMIT` items, IVF beyond)."""
    if kind == "auto":
        kind = "exact" if len(embeddings) <= EXACT_LIMIT else "ivf"
    if kind == "exact":
        return ExactIndex(embeddings.vectors, embeddings.ids)
    if kind == "ivf":
        return IVFIndex(embeddings.vectors, embeddings.ids, **options)
    raise ConfigError(f"unknown index kind {kind!r} (auto, exact, ivf)")


def load_index(directory: str | os.PathLike) -> ExactIndex:
    """An index written by ``index.save(directory)``."""
    directory = Path(directory)
    meta = json.loads((directory / "index.json").read_text())
    emb = Embeddings.load(directory)
    if meta["kind"] == "ivf":
        centroids = torch.from_numpy(np.load(directory / "centroids.npy", allow_pickle=False))
        return IVFIndex(emb.vectors, emb.ids, n_lists=meta["n_lists"], n_probe=meta["n_probe"],
                        centroids=centroids)
    return ExactIndex(emb.vectors, emb.ids)


class TextSearch:
    """The text-only search baseline: query -> encoder -> top-``k`` products by cosine."""

    def __init__(self, encoder, index: ExactIndex) -> None:
        self.encoder = encoder
        self.index = index

    def search(self, query: str | Sequence[str], k: int = 10, batch_size: int = 64
               ) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids, scores): str array [k] and float32 [k] for one query, [Q, k] for a list."""
        single = isinstance(query, str)
        queries = [query] if single else list(query)
        vectors = self.encoder.encode(queries, batch_size)
        scores, positions = self.index.search(vectors, k)
        ids = np.where(positions.numpy() >= 0, self.index.ids[positions.clamp(min=0).numpy()], None)
        scores = scores.numpy().astype(np.float32)
        return (ids[0], scores[0]) if single else (ids, scores)


@torch.no_grad()
def retrieval_metrics(queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                      ks: Sequence[int] = (1, 10), block: int = 512) -> dict[str, float]:
    r"""Recall@K and MRR of single-target retrieval over *all* items.

    The rank of query :math:`q`'s target :math:`t` is :math:`1 + |\{j : s_{qj} > s_{qt}\}|`
    with :math:`s = Q I^\top`; Recall@K = mean of :math:`[\text{rank} \le K]` (= HitRate@K,
    one target), MRR = mean of :math:`1/\text{rank}` over the full ranking (no cut-off).

    Args:
        queries: FloatTensor [Q, d]; items: FloatTensor [N, d]; targets: LongTensor [Q] (rows of items).
    Returns:
        ``{"recall@1": …, "recall@10": …, "mrr": …, "queries": Q}``.
    """
    ranks = []
    for start in range(0, len(queries), block):
        s = queries[start: start + block].float() @ items.float().T           # [b, N]
        t = targets[start: start + block]
        target_score = s.gather(1, t[:, None])                                 # [b, 1]
        ranks.append(1 + (s > target_score).sum(1))
    rank = torch.cat(ranks).double() if ranks else torch.zeros(0, dtype=torch.float64)
    out = {f"recall@{k}": float((rank <= k).double().mean()) if len(rank) else 0.0 for k in ks}
    out["mrr"] = float((1.0 / rank).mean()) if len(rank) else 0.0
    out["queries"] = float(len(rank))
    return out
