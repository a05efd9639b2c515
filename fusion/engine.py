"""The Engine: recommend, search, similar and explain over a trained run folder.

::

    from fusion import Engine
    engine = Engine.open("runs/demo")                       # a folder written by `kgrec train`
    engine.recommend("u00042", k=10)                        # -> list[Recommendation]
    engine.recommend("u00042", weights={"ctr": 1, "cvr": 1, "value": 1},   # expected order value
                     filters={"category": "Electronics", "max_price": 100})
    engine.search("wireless headphones", user_id="u00042")  # personalised search
    engine.similar("i00007")
    engine.recommend_batch(["u1", "u2"], k=20)              # offline scoring

How a request is answered:

1. **Candidates** -- recommend: the user's top ``candidates`` products by GNN dot
   product (items the user already interacted with and items failing ``filters`` are
   removed first); an unknown user gets the most popular products (cold start).
   search: the top ``candidates`` products by text cosine to the query, merged with the
   user's GNN candidates when a known user searches.
2. **Re-ranking** -- the fusion model scores every candidate for every objective
   (:mod:`fusion.ranking.scoring`: ctr, cvr, ctcvr, value, relevance); the ranking score is the
   weighted geometric mean with the request's ``weights`` (default: purchase
   probability for recommend, relevance x purchase for search).

Unknown users never raise (cold start: no user features, popularity and text
candidates); unknown items in :meth:`similar` / :meth:`explain` raise
:class:`kg.errors.UnknownIdError`, malformed requests (unknown weights or filters, an
empty query) :class:`kg.errors.InvalidRequestError`. The engine only reads after
:meth:`open`, so one instance may serve many threads (the text encoder is guarded by a
lock).

Serving needs no training code: :meth:`Engine.open` composes the components' own
loaders -- :meth:`FusionModel.load <fusion.ranking.model.FusionModel.load>`,
:meth:`FeatureTables.load <fusion.ranking.features.FeatureTables.load>`, the id maps of
the graph export, the catalogue, the split (for the products each user has seen) and,
on the first search, :func:`fusion.text.encoder.load_run_encoder`. Explanations read the
graph the run was trained on (``run.json`` remembers it; a ``store`` passed to
:meth:`open` wins), opened read-only on the first :meth:`explain`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from fusion.ranking.config import FusionConfig
from fusion.ranking.features import ITEM_SIDE, FeatureTables
from fusion.ranking.model import FusionModel
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, SEARCH_WEIGHTS, check_weights, objectives, ranking_score
from kg.errors import IntegrityError, InvalidRequestError, RunFolderError, StoreError, UnknownIdError
from kg.export import GraphExport
from kg.run_dir import RunDir
from kg.split import Split

FILTER_KEYS = ("category", "brand", "min_price", "max_price")
CATEGORY_CACHE = 256  #: category filter masks kept (least recently used dropped first)
#: longest search query accepted (characters; longer: InvalidRequestError) -- the text encoder
#: tokenizes a whole query before truncating it, and one 10 MB query held it for seconds
MAX_QUERY_CHARS = 1_000


@dataclass(frozen=True)
class Recommendation:
    """One ranked product: ``score`` is the ranking score (log scale, higher is better);
    ``objectives`` the per-objective scores (ctr, cvr, ctcvr, value, relevance)."""

    item_id: str
    title: str
    score: float
    objectives: dict[str, float]
    price: float | None = None
    explanation: Any = None  # kg.explain.Explanation when asked for

    def __str__(self) -> str:
        obj = " ".join(f"{k} {v:.3f}" for k, v in self.objectives.items() if k in ("ctr", "cvr", "value"))
        return f"{self.item_id}  {self.title[:60]:<60}  score {self.score:7.3f}  {obj}"


@dataclass
class Catalogue:
    """What serving shows of the products, row ``i`` = product index ``i`` of the run."""

    ids: np.ndarray            # str [I], export order
    titles: np.ndarray         # str [I]
    prices: np.ndarray         # float [I], NaN unknown
    brands: np.ndarray         # str [I]
    categories: list           # list[list[str]] [I]
    index: pd.Index = field(init=False)

    def __post_init__(self):
        self.index = pd.Index(self.ids)

    @classmethod
    def from_items(cls, items: pd.DataFrame, product_ids: np.ndarray) -> Catalogue:
        """From a canonical ``items`` table (``item_id``, ``title``, ``price``, ``brand``,
        ``categories``), in the order of ``product_ids`` (missing rows: empty fields). A
        product without a title (an id-only product: reviewed, but without metadata) is
        shown by its id."""
        products = np.asarray(product_ids, dtype=object)
        rows = items.set_index("item_id").reindex(pd.Index(products, dtype=object))
        titles = rows["title"].fillna("").astype(str).str.strip()
        titles = titles.where(titles != "", pd.Series(products, index=titles.index, dtype=object))
        return cls(products, titles.to_numpy(dtype=object), rows["price"].to_numpy(dtype=float),
                   rows["brand"].fillna("").to_numpy(dtype=object),
                   [list(c) if isinstance(c, (list, tuple, np.ndarray)) else [] for c in rows["categories"]])


def seen_items(split: Split) -> list[np.ndarray]:
    """Per user index, the product indices of all their train, valid and test pairs."""
    u = np.concatenate([split.train[0], split.valid[0], split.test[0]])
    i = np.concatenate([split.train[1], split.valid[1], split.test[1]])
    order = np.argsort(u, kind="stable")
    bounds = np.searchsorted(u[order], np.arange(split.num_users + 1))
    return [i[order][bounds[k]: bounds[k + 1]] for k in range(split.num_users)]


class Engine:
    """Serve a run folder (see the module docstring). Use :meth:`open`, or build one from
    its parts (a fusion model, its feature tables, the user ids of the tables' rows, a
    :class:`Catalogue`, each user's seen products, a popularity score per product).

    ``encoder`` (a :class:`fusion.text.encoder.TextEncoder`) is loaded from ``run`` on
    the first search when not given; ``store`` (an open GraphStore, for explanations)
    is opened from ``run``'s record on the first explanation when not given.
    """

    def __init__(self, model: FusionModel, tables: FeatureTables, users: np.ndarray, catalogue: Catalogue,
                 seen: list[np.ndarray], popularity: torch.Tensor, *, candidates: int = 100, store=None,
                 run: RunDir | None = None, encoder=None) -> None:
        self.run = run
        self.model = model
        self.tables = tables
        self.scorer = Scorer(model, tables)
        self.user_index = pd.Index(np.asarray(users, dtype=object), dtype=object)  # object lookups stay cheap
        self.catalogue = catalogue
        self.seen = seen
        self.popularity = popularity
        self.candidates = candidates
        self.store = store
        self._own_store = False
        self._encoder = encoder
        self._lock = threading.Lock()
        #: unit-length GNN item vectors [I, dg] (the GNN half of :meth:`similar`)
        self.item_gnn_unit = torch.nn.functional.normalize(tables.item_gnn, dim=-1)
        self._explain_embeddings = None
        self._category_masks: OrderedDict[str, np.ndarray] = OrderedDict()  # LRU, CATEGORY_CACHE entries

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir: str | Path, *, store=None, candidates: int | None = None) -> Engine:
        """Load a finished run folder. ``store`` (an open GraphStore) overrides the graph
        the run remembers, for explanations; ``candidates`` overrides the run's
        re-ranking depth."""
        run = RunDir(run_dir)
        for path, stage in ((run.fusion_model, "fusion"), (run.fusion_tables, "fusion"), (run.graph, "gnn"),
                            (run.catalogue_items, "text")):
            run.need(path, stage)
        run.verify()  # every file as the manifest recorded it, before anything is parsed
        with run.reading(run.fusion_model, "fusion"):
            model = FusionModel.load(run.fusion_model)
        with run.reading(run.fusion_tables, "fusion"):
            tables = FeatureTables.load(run.fusion_tables)
        config = FusionConfig.from_dict(run.config().get("fusion", {}))
        with run.reading(run.graph, "gnn"):
            id_maps, _ = GraphExport.read_id_maps(run.graph)
            seen = seen_items(run.load_split())
        with run.reading(run.catalogue_items, "text"):
            catalogue = Catalogue.from_items(pd.read_parquet(run.catalogue_items), id_maps["product"])
        if (len(catalogue.ids), len(id_maps["user"])) != (tables.num_items, tables.num_users):
            raise IntegrityError(f"{run.fusion_tables} holds {tables.num_items} products / {tables.num_users} users, "
                                 f"the graph export {len(catalogue.ids)} / {len(id_maps['user'])}: the stages are "
                                 f"out of step; retrain the fusion stage (kgrec train --stage fusion --run {run.path})",
                                 str(run.fusion_tables), "fusion")
        popularity = tables.item_side[:, ITEM_SIDE.index("popularity")].clone()
        return cls(model, tables, id_maps["user"], catalogue, seen, popularity,
                   candidates=candidates or config.candidates, store=store, run=run)

    def close(self) -> None:
        """Close the graph store if this engine opened it (the one a caller passed stays open)."""
        if self._own_store and self.store is not None:
            self.store.close()
            self.store, self._own_store = None, False

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.run.path) if self.run is not None else "<in memory>"
        return (f"Engine({where!r}, users={len(self.user_index):,}, "
                f"items={len(self.catalogue.ids):,}, candidates={self.candidates})")

    @property
    def encoder(self):
        """The text encoder of the run (loaded on first use)."""
        with self._lock:
            if self._encoder is None:
                from fusion.text.encoder import load_run_encoder

                if self.run is None:
                    raise RunFolderError("this Engine has no run folder to load a text encoder from; "
                                         "build it with Engine(..., encoder=...)")
                with self.run.reading(self.run.text, "text"):
                    self._encoder = load_run_encoder(self.run)
            return self._encoder

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """Query embeddings [len(texts), dt] (unit length) from the run's text encoder."""
        encoder = self.encoder
        with self._lock:  # tokenizers are not safe to share between threads
            return encoder.encode(list(texts))

    @property
    def cached_categories(self) -> int:
        """How many category filter masks are cached (at most ``CATEGORY_CACHE``)."""
        return len(self._category_masks)

    # ------------------------------------------------------------------ building blocks
    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """int64 [n]: each user's row in the tables, -1 for an unknown (cold-start) user."""
        return self.user_index.get_indexer(pd.Index(list(user_ids), dtype=object)).astype(np.int64)

    def knows_user(self, user_id: str) -> bool:
        """Whether ``user_id`` has a row (False: answered by the cold-start path)."""
        return user_id is not None and bool(self.user_rows([user_id])[0] >= 0)

    def item_row(self, item_id: str) -> int:
        """The product's row; :class:`UnknownIdError` when it is not a product of this run."""
        pos = int(self.catalogue.index.get_indexer([item_id])[0])
        if pos < 0:
            raise UnknownIdError(f"unknown item id {item_id!r}: not a product of this run")
        return pos

    def filter_mask(self, filters: Mapping[str, Any] | None) -> torch.Tensor | None:
        """bool [I] of products passing ``filters`` (None = all)."""
        if not filters:
            return None
        unknown = set(filters) - set(FILTER_KEYS)
        if unknown:
            raise InvalidRequestError(f"unknown filters {sorted(unknown)}; use {', '.join(FILTER_KEYS)}",
                                      "filters")
        c = self.catalogue
        ok = np.ones(len(c.ids), bool)
        if filters.get("category"):
            ok &= self._category_mask(str(filters["category"]))
        if filters.get("brand"):
            ok &= c.brands == str(filters["brand"])
        if filters.get("min_price") is not None:
            ok &= np.nan_to_num(c.prices, nan=-np.inf) >= float(filters["min_price"])
        if filters.get("max_price") is not None:
            ok &= np.nan_to_num(c.prices, nan=np.inf) <= float(filters["max_price"])
        return torch.from_numpy(ok)

    def _category_mask(self, want: str) -> np.ndarray:
        """bool [I]: products with a category path equal to, under, or ending in ``want``
        (computed once per category, then kept in a cache of the last ``CATEGORY_CACHE``
        categories asked for: the key is user input, so the cache is bounded)."""
        with self._lock:
            mask = self._category_masks.get(want)
            if mask is not None:
                self._category_masks.move_to_end(want)
        if mask is None:
            mask = np.array([any(p == want or p.startswith(want + " > ") or p.endswith(" > " + want)
                                 or f" > {want} > " in p for p in cats) for cats in self.catalogue.categories])
            with self._lock:
                self._category_masks[want] = mask
                while len(self._category_masks) > CATEGORY_CACHE:
                    self._category_masks.popitem(last=False)
        return mask

    def rerank(self, users: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor, weights,
               k: int, query_text: torch.Tensor | None = None) -> list[list[Recommendation]]:
        """Score candidate matrix ``cands`` [B, N] (``valid`` [B, N] masks padding) and keep
        the top ``k`` per row."""
        b, n = cands.shape
        if n == 0:
            return [[] for _ in range(b)]
        with torch.no_grad():
            qt = None if query_text is None else query_text.repeat_interleave(n, 0)
            logits = self.scorer.logits(users.repeat_interleave(n), cands.reshape(-1), query_text=qt)
            score = ranking_score(logits, weights).view(b, n).masked_fill(~valid, -torch.inf)
            objs = {name: v.view(b, n) for name, v in objectives(logits).items()}
        top = torch.topk(score, min(k, n), dim=1)
        out = []
        for r in range(b):
            row = []
            for s, j in zip(top.values[r].tolist(), top.indices[r].tolist()):
                if s == -np.inf:
                    break
                item = int(cands[r, j])
                price = self.catalogue.prices[item]
                row.append(Recommendation(str(self.catalogue.ids[item]), str(self.catalogue.titles[item]), float(s),
                                          {name: float(v[r, j]) for name, v in objs.items()},
                                          None if np.isnan(price) else float(price)))
            out.append(row)
        return out

    def mask_seen(self, scores: torch.Tensor, users) -> torch.Tensor:
        """Set ``scores`` [B, I] to -inf, in place, at the products each row's user (index
        of :attr:`user_index`, -1 = unknown) already has a pair with; returns ``scores``."""
        for r, u in enumerate(np.asarray(users).tolist()):
            if u >= 0 and len(self.seen[u]):
                scores[r, torch.from_numpy(self.seen[u])] = -torch.inf
        return scores

    def gnn_candidates(self, users: torch.Tensor, exclude_seen: bool, allowed: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(product rows [B, N], valid [B, N]): the GNN top-``candidates`` per known user
        row, popularity top-N for unknown (-1) users; seen and filtered products excluded."""
        t = self.tables
        n_items = t.num_items
        scores = t.user_gnn[users.clamp(min=0)] @ t.item_gnn.T                   # [B, I]
        cold = users < 0
        if cold.any():
            scores[cold] = self.popularity
        if allowed is not None:
            scores = scores.masked_fill(~allowed, -torch.inf)
        if exclude_seen:
            self.mask_seen(scores, users)
        top = torch.topk(scores, min(self.candidates, n_items), dim=1)
        return top.indices, torch.isfinite(top.values)

    # ------------------------------------------------------------------ API
    def recommend(self, user_id: str, k: int = 10, weights: Mapping[str, float] | None = None,
                  exclude_seen: bool = True, filters: Mapping[str, Any] | None = None,
                  explain: bool = False, max_paths: int = 3) -> list[Recommendation]:
        """Top ``k`` products for ``user_id`` (cold start for an unknown user).

        ``weights``: objective weights (``ctr``, ``cvr``, ``value``, ``relevance``) of the
        ranking score; ``filters``: ``category`` (a path or a level name), ``brand``,
        ``min_price``, ``max_price``; ``explain=True`` attaches knowledge-graph paths
        (needs ``Engine.open(..., store=...)``)."""
        return self.recommend_batch([user_id], k, weights, exclude_seen, filters, explain, max_paths)[0]

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, weights: Mapping[str, float] | None = None,
                        exclude_seen: bool = True, filters: Mapping[str, Any] | None = None,
                        explain: bool = False, max_paths: int = 3, batch_size: int = 256
                        ) -> list[list[Recommendation]]:
        """:meth:`recommend` for many users, scored in batches (offline scoring)."""
        weights = check_weights(weights, RECOMMEND_WEIGHTS)
        allowed = self.filter_mask(filters)
        out: list[list[Recommendation]] = []
        for s in range(0, len(user_ids), batch_size):
            users = torch.from_numpy(self.user_rows(user_ids[s: s + batch_size]))
            cands, valid = self.gnn_candidates(users, exclude_seen, allowed)
            out += self.rerank(users, cands, valid, weights, k)
        if explain:
            for uid, recs in zip(user_ids, out):
                recs[:] = [self._with_explanation(uid, r, max_paths) for r in recs]
        return out

    def search(self, query: str, user_id: str | None = None, k: int = 10,
               weights: Mapping[str, float] | None = None, filters: Mapping[str, Any] | None = None
               ) -> list[Recommendation]:
        """Top ``k`` products for a text query, personalised when ``user_id`` is known."""
        weights = check_weights(weights, SEARCH_WEIGHTS)
        if not str(query).strip():
            raise InvalidRequestError("search: the query is empty", "query")
        if len(str(query)) > MAX_QUERY_CHARS:
            raise InvalidRequestError(f"search: the query has {len(str(query)):,} characters; at most "
                                      f"{MAX_QUERY_CHARS:,} are accepted", "query")
        allowed = self.filter_mask(filters)
        qv = self.encode_queries([str(query)])                                    # [1, dt]
        text = (qv @ self.tables.item_text.T)[0]
        if allowed is not None:
            text = text.masked_fill(~allowed, -torch.inf)
        top = torch.topk(text, min(self.candidates, len(text)))
        cands = top.indices[torch.isfinite(top.values)]
        user = torch.from_numpy(self.user_rows([user_id])) if user_id is not None else torch.tensor([-1])
        if int(user[0]) >= 0:
            gnn, ok = self.gnn_candidates(user, False, allowed)
            cands = torch.unique(torch.cat([cands, gnn[0][ok[0]]]))
        return self.rerank(user, cands[None], torch.ones(1, len(cands), dtype=torch.bool), weights, k,
                             query_text=qv)[0]

    def similar(self, item_id: str, k: int = 10, filters: Mapping[str, Any] | None = None
                ) -> list[Recommendation]:
        """Products most like ``item_id``: mean of the GNN and text cosine similarities
        (``objectives`` holds both)."""
        i = self.item_row(item_id)
        g = self.item_gnn_unit @ self.item_gnn_unit[i]
        t = self.tables.item_text @ self.tables.item_text[i]
        score = (g + t) / 2
        score[i] = -torch.inf
        allowed = self.filter_mask(filters)
        if allowed is not None:
            score = score.masked_fill(~allowed, -torch.inf)
        top = torch.topk(score, min(k, len(score)))
        c = self.catalogue
        return [Recommendation(str(c.ids[j]), str(c.titles[j]), float(s), {"gnn": float(g[j]), "text": float(t[j])},
                               None if np.isnan(c.prices[j]) else float(c.prices[j]))
                for s, j in zip(top.values.tolist(), top.indices.tolist()) if s != -np.inf]

    def graph(self):
        """The graph store explanations read: the one given to :meth:`open`, else the one
        the run was trained on (``run.json``), opened read-only on first use."""
        with self._lock:
            if self.store is None:
                from kg.stores import StoreConfig, open_store

                location = self.run.store_location() if self.run is not None else None
                if not location:
                    raise StoreError("explanations read the graph, and this run does not say which one: "
                                     "open the engine with Engine.open(run_dir, store=...)")
                config = StoreConfig.from_location(location)
                store = open_store(config, **({"read_only": True} if config.kind == "embedded" else {}))
                self.store, self._own_store = store.connect(), True
            return self.store

    def explain(self, user_id: str, item_id: str, max_paths: int = 5):
        """Knowledge-graph paths from the user to the item (:func:`kg.explain.explain`)."""
        from kg.explain import Embeddings, explain

        store = self.graph()
        if self._explain_embeddings is None:
            if self.run is None:
                raise RunFolderError("explanations rank paths with the run's embeddings: this Engine has no run folder")
            with self.run.reading(self.run.embeddings, "gnn"):
                self._explain_embeddings = Embeddings.from_npz(self.run.need(self.run.embeddings, "gnn"))
        return explain(store, user_id, item_id, max_paths, self._explain_embeddings)

    def _with_explanation(self, user_id: str, rec: Recommendation, max_paths: int) -> Recommendation:
        try:
            why = self.explain(user_id, rec.item_id, max_paths)
        except UnknownIdError:  # a cold-start user is not in the graph
            why = None
        return replace(rec, explanation=why)
