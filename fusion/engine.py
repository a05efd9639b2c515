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
loaders -- :func:`~fusion.ranking.ensemble.load_fusion_model` (one model or an ensemble),
:meth:`FeatureTables.load <fusion.ranking.features.FeatureTables.load>`, the id maps of
the graph export, the catalogue, the split (for the products each user has seen) and,
on the first search, :func:`fusion.text.encoder.load_run_encoder`. Explanations read the
graph the run was trained on (``run.json`` remembers it; a ``store`` passed to
:meth:`open` wins), opened read-only on the first :meth:`explain`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from fusion.ranking.config import FusionConfig
from fusion.ranking.exposure import ExposureModel
from fusion.ranking.features import ITEM_SIDE, FeatureTables
from fusion.ranking.model import FusionModel
from fusion.ranking.ensemble import FusionEnsemble, load_fusion_model
from fusion.ranking.fused import serving_model
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, SEARCH_WEIGHTS, check_weights, objectives, ranking_score
from fusion.ranking.scoring import VALUE_OBJECTIVES
from kg.errors import IntegrityError, InvalidRequestError, RunFolderError, StoreError, UnknownIdError
from kg.export import GraphExport
from kg.rows import normalise_category_path
from kg.run_dir import MANIFEST, RunDir, RunVersion
from kg.split import Split

FILTER_KEYS = ("category", "brand", "min_price", "max_price", "include_unavailable")
CATEGORY_CACHE = 256  #: category filter masks kept (least recently used dropped first)
#: longest search query accepted (characters; longer: InvalidRequestError) -- the text encoder
#: tokenizes a whole query before truncating it, and one 10 MB query held it for seconds
MAX_QUERY_CHARS = 1_000
#: catalogues of at least this many products answer ``similar`` through an IVF index
SIMILAR_IVF_MIN = 50_000
#: catalogues of at least this many products take ``search``'s text candidates from an IVF index
SEARCH_IVF_MIN = 50_000
#: query embeddings kept by :meth:`Engine.encode_queries` (least recently used dropped first)
QUERY_CACHE = 1024



def check_k(k: object) -> int:
    """``k`` (how many results) as an int >= 1, else :class:`InvalidRequestError` naming ``k``
    (a list can hold fewer: the candidates that pass the filters)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidRequestError(f"k: how many results must be a whole number >= 1, got {k!r}", "k")
    return int(k)


def check_user_ids(user_ids: object) -> list[str]:
    """``user_ids`` as a list of non-empty strings, else :class:`InvalidRequestError`: one
    string where a sequence of ids belongs was read as ids of one character each, and an id
    that is not a string (7, None, a list) or is empty is a client's mistake that looked up
    no one and was answered silently as an unknown visitor."""
    if isinstance(user_ids, (str, bytes)):
        raise InvalidRequestError(f"user_ids: expected a sequence of user ids, got the string {user_ids!r}",
                                  "user_ids")
    try:
        ids = list(user_ids)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidRequestError(f"user_ids: expected a sequence of user ids, got {user_ids!r}", "user_ids") from None
    for u in ids:
        if not isinstance(u, str) or not u.strip():
            raise InvalidRequestError(f"user_id: expected a non-empty string, got {u!r}", "user_id")
    return ids


def _price_bound(value: object, name: str) -> float:
    """A ``min_price`` / ``max_price`` filter as a finite float (InvalidRequestError naming it)."""
    try:
        bound = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{name}: {value!r} is not a number", name) from None
    if not math.isfinite(bound):
        raise InvalidRequestError(f"{name}: {value!r} is not a finite number", name)
    return bound

@dataclass(frozen=True)
class Recommendation:
    """One ranked product: ``score`` is the ranking score (log scale, higher is better);
    ``objectives`` the per-objective scores (ctr, cvr, ctcvr, value, relevance, and exposure
    for a shop with impressions)."""

    item_id: str
    title: str
    score: float
    objectives: dict[str, float]
    price: float | None = None
    explanation: Any = None  # kg.explain.Explanation when asked for

    def __str__(self) -> str:
        obj = " ".join(f"{k} {v:.3f}" for k, v in self.objectives.items() if k in ("ctr", "cvr", "value"))
        if "exposure" in self.objectives:  # P(shown): small numbers, so 2 significant digits
            obj += f" shown {self.objectives['exposure']:.2g}"
        title = " ".join(str(self.title).split())[:60]  # one line: a title's newlines split the columns
        return f"{self.item_id}  {title:<60}  score {self.score:7.3f}  {obj}"


@dataclass
class Catalogue:
    """What serving shows of the products, row ``i`` = product index ``i`` of the run."""

    ids: np.ndarray            # str [I], export order
    titles: np.ndarray         # str [I]
    prices: np.ndarray         # float [I], NaN unknown
    brands: np.ndarray         # str [I]
    categories: list           # list[list[str]] [I]
    available: np.ndarray | None = None  # bool [I]: on sale (None: all); withdrawn ones are never served
    index: pd.Index = field(init=False)

    def __post_init__(self):
        self.index = pd.Index(self.ids)
        if self.available is None:
            self.available = np.ones(len(self.ids), bool)

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
        available = (rows["available"].fillna(1).to_numpy() != 0) if "available" in rows else None
        return cls(products, titles.to_numpy(dtype=object), rows["price"].to_numpy(dtype=float),
                   rows["brand"].fillna("").to_numpy(dtype=object),
                   [list(c) if isinstance(c, (list, tuple, np.ndarray)) else [] for c in rows["categories"]],
                   available)


#: the search-relevance logit of the best text match among a query's candidates when the
#: run's fusion model has no trained relevance head (:func:`text_relevance_logits`)
TEXT_RELEVANCE_TOP = 2.0


def text_relevance_logits(cos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    r"""Search-relevance logits [B, N] from query--product text cosines ``cos`` [B, N]
    (``valid`` masks padding), for runs whose fusion model never saw a judged query (a shop
    without query logs, e.g. ratings or reviews only): its relevance head is untrained, and
    ranking by it lost even a product's own title (1 of 20 products of ml-100k-kg found in
    the top 10 for their title). Per query, the cosines are standardised over the
    candidates and placed so that the best match has logit :data:`TEXT_RELEVANCE_TOP`:

    .. math::
        z_j = rac{c_j - \max_k c_k}{\operatorname{std}_k c_k} + z_	ext{top}

    so a product one standard deviation below the best match has P(relevant) 0.73 against
    its 0.88, three below 0.27 -- the text match leads and the funnel objectives (weight
    0.1 in search) break near-ties."""
    big = torch.finfo(cos.dtype).max
    c = cos.masked_fill(~valid, float("nan"))
    best = c.nan_to_num(-big).max(dim=1, keepdim=True).values
    mean = c.nanmean(dim=1, keepdim=True)
    std = ((c - mean) ** 2).nanmean(dim=1, keepdim=True).sqrt().clamp(min=1e-6)
    return ((cos - best) / std + TEXT_RELEVANCE_TOP).masked_fill(~valid, -big)


#: the array of a GNN run's ``embeddings.npz`` saying, per item, whether it has an edge in the
#: graph the model was trained over (written by :mod:`kg.pipeline`, :func:`kg.train.items_in_graph`)
ITEM_IN_GRAPH = "item_in_graph"


def graph_vector_items(run: RunDir, product_ids: np.ndarray, item_gnn: torch.Tensor, split: Split
                       ) -> np.ndarray | None:
    """bool [I] over ``product_ids`` (the products of ``run``, a run or one of its versions;
    rows of its ``item_gnn`` [I, dg] and of its ``split``): the products whose GNN vector
    places them by the graph, so that a cosine to it means something.

    * A product of the trained run: when it has an edge in the graph the GNN was trained
      over (``item_in_graph`` of the trained run's ``embeddings.npz``): a training pair or,
      for the KG model, a triple. Any other product's vector had no positive signal.
    * A product that ``kgrec update`` added (not in the trained run): when the update placed
      it -- a vector that is not zero, from its knowledge-graph or text neighbours or buyers.
    * In a version whose warm start was kept (``version.json``'s ``warm_start``), also a
      product with a positive pair in the version: the fine-tuning trained it on one.

    A version's own ``embeddings.npz`` that holds ``item_in_graph`` is read as it is. None
    for a run trained before the GNN stage recorded ``item_in_graph``: every product counts,
    as it did then."""
    version = isinstance(run, RunVersion)
    own = RunDir(run.version_path).embeddings if version else run.embeddings
    sources = [own] + ([RunDir(run.path).embeddings] if version else [])
    for path in sources:
        if not Path(path).exists():
            continue
        with run.reading(path, "gnn"), np.load(path, allow_pickle=False) as z:
            if ITEM_IN_GRAPH not in z.files:
                continue
            flags, ids = np.asarray(z[ITEM_IN_GRAPH], dtype=bool), np.asarray(z["item_ids"], dtype=object)
        pos = pd.Index(ids, dtype=object).get_indexer(pd.Index(np.asarray(product_ids, dtype=object), dtype=object))
        if path == own:  # the file of these very products
            return np.where(pos >= 0, flags[np.maximum(pos, 0)], False)
        placed = (item_gnn.abs().sum(1) > 0).numpy()
        out = np.where(pos >= 0, flags[np.maximum(pos, 0)], placed)
        warm = run.record().get("warm_start") or {}
        if warm.get("chosen", "fold-in") != "fold-in":
            sold = np.zeros(len(out), bool)
            sold[np.asarray(split.train[1], dtype=np.int64)] = True
            out |= sold & placed
        return out
    return None


def seen_items(split: Split) -> list[np.ndarray]:
    """Per user index, the product indices of all their train, valid and test pairs."""
    u = np.concatenate([split.train[0], split.valid[0], split.test[0]])
    i = np.concatenate([split.train[1], split.valid[1], split.test[1]])
    order = np.argsort(u, kind="stable")
    bounds = np.searchsorted(u[order], np.arange(split.num_users + 1))
    return np.split(i[order], bounds[1:-1])  # views of one sorted array (sorting it per user cost O(users x pairs))


class EngineVersion:
    """One version of a run as serving holds it in memory (read-only once built): the fusion
    model and its feature tables, the users and products (with what each user has seen),
    and the per-version building blocks of a request. :class:`Engine` serves one at a time
    and swaps to a newer one on :meth:`Engine.reload`; a request holds the version it
    started with to its end."""

    def __init__(self, model: FusionModel | FusionEnsemble, tables: FeatureTables, users: np.ndarray,
                 catalogue: Catalogue,
                 seen: list[np.ndarray], popularity: torch.Tensor, *, candidates: int = 100,
                 run: RunDir | None = None, name: str | None = None, relevance_from_text: bool = False,
                 exposure: ExposureModel | None = None, graph_items: np.ndarray | None = None,
                 searchable: bool | None = None) -> None:
        self.model = model
        self.tables = tables
        #: the same function as training's Scorer, fewer tensor operations; ``exposure``: the
        #: run's exposure model over this version's users and products (None: no impressions)
        self.scorer = Scorer(serving_model(model), tables, exposure=exposure, capped=True)
        self.user_index = pd.Index(np.asarray(users, dtype=object), dtype=object)  # object lookups stay cheap
        self.catalogue = catalogue
        self.seen = seen
        self.popularity = popularity
        self.candidates = candidates
        self.run = run            #: where its files are (a RunVersion over the trained run, or the run)
        self.name = name          #: the version's name, None for the trained run itself
        #: search relevance from the query's text match (:func:`text_relevance_logits`), not the
        #: fusion model's relevance head: true when the run had no judged queries to train it
        self.relevance_from_text = relevance_from_text
        #: unit-length GNN item vectors [I, dg] (the GNN half of :meth:`similar`); zero for a
        #: product that ``graph_items`` (bool [I], :func:`graph_vector_items`; None: every
        #: product) says has no graph vector -- no edge in the graph the GNN was trained over
        item_gnn_unit = torch.nn.functional.normalize(tables.item_gnn, dim=-1)
        if graph_items is not None:
            item_gnn_unit[torch.from_numpy(~np.asarray(graph_items, dtype=bool))] = 0.0
        self.item_gnn_unit = item_gnn_unit
        #: bool [I]: products with a graph or a text vector; the others are like nothing, and
        #: nothing is like them (None: every product has one)
        likeable = (item_gnn_unit != 0).any(1) | (tables.item_text != 0).any(1)
        self.likeable = None if bool(likeable.all()) else likeable
        #: whether some product has text a query can match (:meth:`load` reads the catalogue:
        #: :func:`fusion.text.index.any_product_text`; by default: a text vector that is not zero)
        self.searchable = bool((tables.item_text != 0).any()) if searchable is None else bool(searchable)
        self.explain_embeddings = None
        self._similar_index = None
        self._search_index = None
        self._lock = threading.Lock()
        self._category_masks: OrderedDict[str, np.ndarray] = OrderedDict()  # LRU, CATEGORY_CACHE entries

    @classmethod
    def load(cls, run: RunDir, *, candidates: int | None = None,
             model: FusionModel | FusionEnsemble | None = None, trained_verified: bool = False) -> EngineVersion:
        """The serving parts of ``run`` (a run folder, or a :class:`kg.run_dir.RunVersion`),
        each checked against its manifest and read by its own loader; ``model``: one already
        loaded (versions share the trained fusion model). ``trained_verified``: the trained
        run under a version was verified already and its manifest has not changed since
        (:meth:`Engine.reload`), so only the version's own files are checked -- hashing the
        trained run's text encoder and graph again on every reload was most of a reload."""
        for path, stage in ((run.fusion_model, "fusion"), (run.fusion_tables, "fusion"), (run.graph, "gnn"),
                            (run.catalogue_items, "text")):
            run.need(path, stage)
        # every file as the manifest recorded it, before anything is parsed
        if trained_verified and isinstance(run, RunVersion):
            RunDir(run.version_path).verify()
        else:
            run.verify()
        if model is None:
            with run.reading(run.fusion_model, "fusion"):
                model = load_fusion_model(run.fusion_model)
        with run.reading(run.fusion_tables, "fusion"):
            tables = FeatureTables.load(run.fusion_tables)
        config = FusionConfig.from_dict(run.config().get("fusion", {}))
        with run.reading(run.graph, "gnn"):
            id_maps, _ = GraphExport.read_id_maps(run.graph)
            split = run.load_split()
            seen = seen_items(split)
        with run.reading(run.catalogue_items, "text"):
            items = pd.read_parquet(run.catalogue_items)
            catalogue = Catalogue.from_items(items, id_maps["product"])
        if (len(catalogue.ids), len(id_maps["user"])) != (tables.num_items, tables.num_users):
            raise IntegrityError(f"{run.fusion_tables} holds {tables.num_items} products / {tables.num_users} users, "
                                 f"the graph export {len(catalogue.ids)} / {len(id_maps['user'])}: the stages are "
                                 f"out of step; retrain the fusion stage (kgrec train --stage fusion --run {run.path})",
                                 str(run.fusion_tables), "fusion")
        popularity = tables.item_side[:, ITEM_SIDE.index("popularity")].clone()
        exposure = None
        if run.fusion_exposure.exists():
            with run.reading(run.fusion_exposure, "fusion"):
                exposure = ExposureModel.load(run.fusion_exposure).aligned(id_maps["user"], catalogue.ids,
                                                                             catalogue.categories)
        name = getattr(run, "name", None)
        judged = Path(run.judgements).exists() and len(pd.read_parquet(run.judgements, columns=["query"])) > 0
        from fusion.text.index import any_product_text

        encoded = catalogue.ids[(tables.item_text != 0).any(1).numpy()]  # a product without a text vector: none
        searchable = any_product_text(items[items["item_id"].isin(set(encoded))])
        return cls(model, tables, id_maps["user"], catalogue, seen, popularity,
                   candidates=candidates or config.candidates, run=run, name=name, relevance_from_text=not judged,
                   exposure=exposure, graph_items=graph_vector_items(run, catalogue.ids, tables.item_gnn, split),
                   searchable=searchable)

    @property
    def cached_categories(self) -> int:
        return len(self._category_masks)

    def prepare(self, categories: Sequence[str] = (), indexes: bool = True) -> EngineVersion:
        """Build now what a request would otherwise build on first use: the indexes of
        :meth:`similar_index` and :meth:`search_index` (an IVF build is ~1 s at 100k
        products) and the masks of ``categories`` (the ones the version this one replaces
        had cached) -- so that :meth:`Engine.reload` swaps in a version ready to answer --
        and the explanations' embeddings. ``indexes=False``: only the embeddings (an engine
        that only explains). Returns ``self``."""
        if indexes:
            self.similar_index()
            self.search_index()
            for want in categories:
                self._category_mask(want)
        if self.explain_embeddings is None and self.run is not None and Path(self.run.embeddings).exists():
            self.explain_embeddings = self.load_explain_embeddings()
        return self

    def load_explain_embeddings(self):
        """The run's GNN embeddings as explanations rank paths with them (read now: a
        version's files may be deleted once newer versions replace it, and a request
        still on it must not need them)."""
        from kg.explain import Embeddings

        if self.run is None:
            raise RunFolderError("explanations rank paths with the run's embeddings: this Engine has no run folder")
        with self.run.reading(self.run.embeddings, "gnn"):
            return Embeddings.from_npz(self.run.need(self.run.embeddings, "gnn"))

    def category_names(self) -> list[str]:
        """The categories whose masks are cached, least recently used first."""
        with self._lock:
            return list(self._category_masks)

    # ------------------------------------------------------------------ building blocks
    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """int64 [n]: each user's row in the tables, -1 for an unknown (cold-start) user."""
        if len(user_ids) <= 8:  # a request's few ids: hash lookups (a pd.Index per call cost ~0.5 ms)
            return np.array([self.row_of(self.user_index, u) for u in user_ids], dtype=np.int64)
        return self.user_index.get_indexer(pd.Index(list(user_ids), dtype=object)).astype(np.int64)

    @staticmethod
    def row_of(index: pd.Index, key) -> int:
        """The row of ``key`` in the unique ``index``, -1 when absent."""
        try:
            pos = index.get_loc(key)
        except (KeyError, TypeError, pd.errors.InvalidIndexError):
            return -1
        return pos if isinstance(pos, int) else -1

    def knows_user(self, user_id: str) -> bool:
        """Whether ``user_id`` has a row (False: answered by the cold-start path)."""
        return user_id is not None and bool(self.user_rows([user_id])[0] >= 0)

    def knows_item(self, item_id: str) -> bool:
        """Whether ``item_id`` is a product of this version."""
        return self.row_of(self.catalogue.index, item_id) >= 0

    def item_row(self, item_id: str) -> int:
        """The product's row; :class:`UnknownIdError` when it is not a product of this run."""
        pos = self.row_of(self.catalogue.index, item_id)
        if pos < 0:
            raise UnknownIdError(f"unknown item id {item_id!r}: not a product of this run")
        return pos

    def filter_mask(self, filters: Mapping[str, Any] | None) -> torch.Tensor | None:
        """bool [I] of products passing ``filters`` (None = all); withdrawn products
        (``available == 0``) never pass unless ``include_unavailable`` is true."""
        c = self.catalogue
        everything_on_sale = bool(c.available.all())
        if not filters and everything_on_sale:
            return None
        filters = dict(filters or {})
        unknown = set(filters) - set(FILTER_KEYS)
        if unknown:
            raise InvalidRequestError(f"unknown filters {sorted(unknown)}; use {', '.join(FILTER_KEYS)}",
                                      "filters")
        ok = np.ones(len(c.ids), bool) if filters.pop("include_unavailable", False) else c.available.copy()
        if not filters and ok.all():
            return None
        for name in ("category", "brand"):  # one value each: a list matched nothing, silently
            if isinstance(filters.get(name), (list, tuple, set, frozenset, dict)):
                raise InvalidRequestError(f"{name}: expected one {name}, got {filters[name]!r}", name)
        if filters.get("category"):  # as the graph stores paths: "Home  >Kitchen" is "Home > Kitchen"
            want = normalise_category_path(str(filters["category"]))
            if not want:
                raise InvalidRequestError(f"category: {str(filters['category'])[:100]!r} names no category level",
                                          "category")
            ok &= self._category_mask(want)
        if filters.get("brand"):
            ok &= c.brands == str(filters["brand"])
        low, high = (None if filters.get(n) is None else _price_bound(filters[n], n)
                     for n in ("min_price", "max_price"))
        if low is not None and high is not None and low > high:
            raise InvalidRequestError(f"min_price: {low:g} is above max_price {high:g}: no price passes", "min_price")
        if low is not None:
            ok &= np.nan_to_num(c.prices, nan=-np.inf) >= low
        if high is not None:
            ok &= np.nan_to_num(c.prices, nan=np.inf) <= high
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
        with torch.inference_mode():
            # relevance from the text match: the model's relevance head (a second forward
            # pass with the query) would be computed only to be replaced
            text_relevance = query_text is not None and self.relevance_from_text
            qt = None if query_text is None or text_relevance else query_text.repeat_interleave(n, 0)
            logits = self.scorer.logits(users.repeat_interleave(n), cands.reshape(-1), query_text=qt)
            if text_relevance:
                cos = (self.tables.item_text[cands] * query_text[:, None, :]).sum(-1)      # [B, N]
                logits["relevance"] = text_relevance_logits(cos, valid).reshape(-1)
            logits = self.with_value_logits(logits, users.repeat_interleave(n), cands.reshape(-1), weights)
            score = ranking_score(logits, weights).view(b, n).masked_fill(~valid, -torch.inf)
            objs = objectives(logits)
            top = torch.topk(score, min(k, n), dim=1)
            # every number of the answer gathered at once and read out with one tolist() each
            # (not a tensor index per objective per result)
            names = list(objs)
            picked = torch.stack([v.view(b, n) for v in objs.values()]).gather(
                2, top.indices.unsqueeze(0).expand(len(names), -1, -1)).tolist()      # [O][B][k]
            rows = cands.gather(1, top.indices).tolist()                              # [B][k]
            values = top.values.tolist()
        c = self.catalogue
        out = []
        for r in range(b):
            row = []
            for j, (s, item) in enumerate(zip(values[r], rows[r])):
                if s == -np.inf:
                    break
                price = c.prices[item]
                row.append(Recommendation(str(c.ids[item]), str(c.titles[item]), s,
                                          {name: picked[o][r][j] for o, name in enumerate(names)},
                                          None if price != price else float(price)))
            out.append(row)
        return out

    # ------------------------------------------------------------------ value objectives
    def value_tables(self):
        """This version's :class:`fusion.value.results.ValueTables` (read on first use; a
        version without its own reads the trained run's, see :mod:`fusion.value.results`)."""
        with self._lock:
            cached = getattr(self, "_value", None)
        if cached is None:
            from fusion.value.results import ValueTables

            if self.run is None:
                raise RunFolderError("this Engine has no run folder to read value tables from")
            cached = ValueTables.load(self.run)
            with self._lock:
                self._value = cached
        return cached

    def value_objectives(self) -> tuple[torch.Tensor, Any]:
        """(potential logits [I] over this version's products, the loyalty lookup), built once."""
        with self._lock:
            built = getattr(self, "_value_objectives", None)
        if built is None:
            tables = self.value_tables()
            built = (tables.potential_logits(self.catalogue.ids),
                     tables.loyalty_lookup(np.asarray(self.user_index, dtype=object), self.catalogue.brands))
            with self._lock:
                self._value_objectives = built
        return built

    def with_value_logits(self, logits: dict, users: torch.Tensor, items: torch.Tensor, weights) -> dict:
        """``logits`` plus ``potential`` / ``loyalty`` (rows ``users``, ``items`` [M]) when
        ``weights`` use them; a run without the value stage cannot serve them (an
        :class:`InvalidRequestError` naming ``weights``)."""
        wanted = [k for k in VALUE_OBJECTIVES if weights.get(k)]
        if not wanted:
            return logits
        try:
            potential, loyalty = self.value_objectives()
        except RunFolderError as exc:
            raise InvalidRequestError(f"weights: {', '.join(wanted)} need the value stage, and this run has "
                                      f"none ({exc})", "weights") from None
        out = dict(logits)
        if "potential" in wanted:
            out["potential"] = potential[items.cpu()].to(logits["ctr"].device)
        if "loyalty" in wanted:
            out["loyalty"] = loyalty(users.cpu(), items.cpu()).to(logits["ctr"].device)
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

    def unscorable(self) -> tuple[str, ...]:
        """The objectives a weight may name that this version cannot score (their weight is
        ignored): ``exposure`` for a run trained without impressions."""
        return () if self.scorer.exposure is not None else ("exposure",)

    @property
    def similar_vectors(self) -> torch.Tensor:
        """[I, dg + dt]: ``[gnn unit vector, text vector] / sqrt(2)`` per product (the inner
        product of two rows is the mean of their GNN and text cosines)."""
        return self.similar_index().vectors

    def similar_index(self):
        """The index :meth:`similar` searches (exact below :data:`SIMILAR_IVF_MIN` products)."""
        with self._lock:
            if self._similar_index is None:
                from fusion.text.index import ExactIndex, IVFIndex

                vectors = torch.cat([self.item_gnn_unit, self.tables.item_text], 1) / math.sqrt(2)
                ids = self.catalogue.ids
                self._similar_index = (IVFIndex(vectors, ids, n_probe=None) if len(ids) >= SIMILAR_IVF_MIN
                                       else ExactIndex(vectors, ids))
            return self._similar_index

    def search_index(self):
        """The index :meth:`Engine.search` takes its text candidates from: exact below
        :data:`SEARCH_IVF_MIN` products, else an IVF index over the item text vectors."""
        with self._lock:
            if self._search_index is None:
                from fusion.text.index import ExactIndex, IVFIndex

                vectors, ids = self.tables.item_text, self.catalogue.ids
                n_lists = int(round(math.sqrt(len(ids))))
                # an eighth of the lists: a query's text candidates spread wider than a product's neighbours
                self._search_index = (IVFIndex(vectors, ids, n_lists=n_lists, n_probe=max(1, n_lists // 8))
                                      if len(ids) >= SEARCH_IVF_MIN else ExactIndex(vectors, ids))
            return self._search_index

    def nearest(self, index, query: torch.Tensor, n: int, allowed: torch.Tensor | None,
                exclude: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [m], rows [m]), m <= ``n``: the rows of ``index`` (an :class:`ExactIndex
        <fusion.text.index.ExactIndex>` or IVF index over this version's products) with the
        highest inner product with ``query`` [1, d], among the ``allowed`` ones (bool [I],
        None = all) other than row ``exclude``, best first. An IVF index answers when its
        probed lists hold enough of them (``n``, or as many as pass); over-fetched when
        filtered; otherwise -- an exact index, or too few passing in the probed lists -- an
        exact masked scan over every row."""
        skip = 0 if exclude is None else 1
        n = min(n, len(index) - skip)
        if n <= 0:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        if getattr(index, "kind", "exact") == "ivf":
            scores, rows = index.search(query, n + skip if allowed is None else max(4 * (n + skip), 64))
            scores, rows = scores[0], rows[0]
            keep = rows >= 0
            if exclude is not None:
                keep &= rows != exclude
            if allowed is not None:
                keep &= allowed[rows.clamp(min=0)]
            passing = len(index) if allowed is None else int(allowed.sum())
            if exclude is not None and (allowed is None or bool(allowed[exclude])):
                passing -= 1
            if int(keep.sum()) >= min(n, passing):
                return scores[keep][:n], rows[keep][:n]
        score = index.vectors @ query[0]
        if exclude is not None:
            score[exclude] = -torch.inf
        if allowed is not None:
            score = score.masked_fill(~allowed, -torch.inf)
        top = torch.topk(score, n)
        finite = torch.isfinite(top.values)
        return top.values[finite], top.indices[finite]

    def text_candidates(self, query: torch.Tensor, n: int, allowed: torch.Tensor | None) -> torch.Tensor:
        """Rows of the (at most) ``n`` products whose text is closest to ``query`` [1, dt]
        among the ``allowed`` ones (:meth:`nearest` over :meth:`search_index`)."""
        return self.nearest(self.search_index(), query, n, allowed)[1]


class Explainer(Protocol):
    """What answers an :class:`Engine`'s explanations elsewhere (:meth:`Engine.explain_with`)."""

    def explain_many(self, user_id: str, item_ids: Sequence[str], max_paths: int, strict: bool) -> list: ...


class Engine:
    """Serve a run folder (see the module docstring). Use :meth:`open`, or build one from
    its parts (a fusion model, its feature tables, the user ids of the tables' rows, a
    :class:`Catalogue`, each user's seen products, a popularity score per product; and
    optionally an exposure model over those users and products, :mod:`fusion.ranking.exposure`).

    ``encoder`` (a :class:`fusion.text.encoder.TextEncoder`) is loaded from ``run`` on
    the first search when not given, in ``text_precision`` (default ``"auto"``: bf16 on a
    CPU that computes it natively, else fp32 -- :func:`fusion.text.encoder.resolve_precision`;
    the catalogue's vectors stay the fp32 ones of training; ``"int8"`` compiles on its first
    queries, tens of seconds, and gains little on one short query); ``store`` (an open GraphStore, for explanations)
    is opened from ``run``'s record on the first explanation when not given.

    The run's newest version (written by :func:`fusion.update.update_run`) is what it
    serves; :meth:`reload` swaps to a newer one while other threads keep serving -- every
    request runs on the version it started with (:class:`EngineVersion`).
    """

    def __init__(self, model: FusionModel | FusionEnsemble, tables: FeatureTables, users: np.ndarray,
                 catalogue: Catalogue,
                 seen: list[np.ndarray], popularity: torch.Tensor, *, candidates: int = 100, store=None,
                 run: RunDir | None = None, encoder=None, version: EngineVersion | None = None,
                 location: dict | None = None, text_precision: str = "auto", indexes: bool = True,
                 exposure: ExposureModel | None = None, graph_items: np.ndarray | None = None) -> None:
        self.run = run
        self.text_precision = text_precision
        self.location = location or (run.store_location() if run is not None else None)
        self.current = version or EngineVersion(model, tables, users, catalogue, seen, popularity,
                                                candidates=candidates, run=run, exposure=exposure,
                                                graph_items=graph_items)
        self.store = store
        self._own_store = False
        self._retired: list = []               # own stores replaced by a reload, closed once unused
        self._store_users: dict[int, int] = {}  # id(store) -> requests using it now
        self._encoder = encoder
        self._queries: OrderedDict[str, torch.Tensor] = OrderedDict()  # LRU of query embeddings
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._seen_pointer = self._pointer()
        self._trained_stamp = self._manifest_stamp()  # the trained run's manifest when it was last verified
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()
        self.reload_error: str | None = None  #: why the last background reload failed (None: it did not)
        self._explainer: Explainer | None = None
        self._prepare_view: Callable[[Any, EngineVersion], None] | None = None  # see follow()
        self._indexes = indexes  # build a new version's indexes before the swap (see open())

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir: str | Path, *, store=None, location: dict | None = None,
             candidates: int | None = None, text_precision: str = "auto", indexes: bool = True) -> Engine:
        """Load a finished run folder (its newest version). ``store`` (an open GraphStore),
        or ``location`` (a ``GraphStore.location()`` record, opened when needed), overrides
        the graph the run remembers; ``candidates`` overrides the run's re-ranking depth;
        ``text_precision``: the query encoder's (see the class docstring); ``indexes=False``:
        the similar/search indexes of a version are built on first use, not when it is
        loaded (an engine that only explains: :mod:`fusion.explainer`)."""
        run = RunDir(run_dir)
        version = EngineVersion.load(run.serving(), candidates=candidates).prepare(indexes=indexes)
        v = version
        return cls(v.model, v.tables, v.user_index, v.catalogue, v.seen, v.popularity, candidates=v.candidates,
                   store=store, run=run, version=version, location=location, text_precision=text_precision,
                   indexes=indexes)

    def _pointer(self):
        """What names the run's current version on disk (``CURRENT``'s mtime and size)."""
        if self.run is None:
            return None
        try:
            st = (self.run.path / "CURRENT").stat()
            return st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return None

    def _manifest_stamp(self):
        """(mtime, size) of the trained run's manifest (a retrain rewrites it)."""
        if self.run is None:
            return None
        try:
            st = (self.run.path / MANIFEST).stat()
            return st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return None

    def reload(self) -> bool:
        """Swap to the run's newest version if it is not the one served; returns whether it
        swapped. The new version is loaded, checked against its manifest and prepared
        (:meth:`EngineVersion.prepare`: indexes built, the cached category masks computed)
        *before* the swap, which is one reference assignment: requests already running
        finish on their version, later ones get the new one, none waits for the load. The
        explanation store this engine opened itself is reopened before the swap too (a
        fresh snapshot; the old view closes once no request reads it)."""
        if self.run is None:
            return False
        with self._reload_lock:
            self._seen_pointer = self._pointer()
            serving = self.run.serving()
            name = getattr(serving, "name", None)
            if name == self.current.name:
                return False
            same_model = self.current.run is not None and serving.fusion_model == self.current.run.fusion_model
            stamp = self._manifest_stamp()
            fresh = EngineVersion.load(serving, candidates=self.current.candidates,
                                       model=self.current.model if same_model else None,
                                       trained_verified=stamp is not None and stamp == self._trained_stamp)
            fresh.prepare(self.current.category_names(), indexes=self._indexes)
            self._trained_stamp = stamp
            view = None
            if self._own_store and self.store is not None:  # a fresh snapshot of the graph, opened now
                try:
                    view = self._open_graph_view()
                    if self._prepare_view is not None:
                        self._prepare_view(view, fresh)
                except StoreError:  # the next explanation tries again (and says why)
                    view = None
            self.current = fresh  # one reference assignment: atomic for the threads reading it
            if self._own_store:  # the view it replaces closes once no request reads it
                with self._lock:
                    old, self.store, self._own_store = self.store, view, view is not None
                    if old is not None:
                        self._retired.append(old)
                    self._close_retired()
            return True

    def reload_if_newer(self) -> bool:
        """:meth:`reload` when ``CURRENT`` changed on disk since the last look (a ``stat``)."""
        if self.run is None or self._pointer() == self._seen_pointer:
            return False
        return self.reload()

    def follow(self, poll_seconds: float = 0.2, on_swap: Callable[[], None] | None = None,
               prepare_view: Callable[[Any, EngineVersion], None] | None = None) -> None:
        """Follow the run's new versions in the background: a daemon thread looks at
        ``CURRENT`` every ``poll_seconds`` and, when it changed, loads and prepares the new
        version and swaps to it (:meth:`reload`) -- so several serving processes follow an
        updater's versions and no request ever waits for a load. A version that fails to
        load (e.g. a file that does not match its manifest) is not served: the engine keeps
        the one it has, says why once on stderr and in :attr:`reload_error`, and tries again
        when ``CURRENT`` changes. ``on_swap`` is called (in that thread) after each swap;
        ``prepare_view`` with the graph view reopened for a new version and that version,
        before the swap (e.g. to prepare the explanation statement on it). Stopped by
        :meth:`close`."""
        if self.run is None or self._follower is not None:
            return
        self._prepare_view = prepare_view
        import sys

        def loop() -> None:
            while not self._stop_following.wait(poll_seconds):
                try:
                    if self.reload_if_newer() and on_swap is not None:
                        on_swap()
                    self.reload_error = None
                except Exception as exc:  # noqa: BLE001 - keep serving the version we have
                    error = f"{type(exc).__name__}: {exc}"
                    if error != self.reload_error:
                        print(f"kgrec engine: {self.run.path}: not reloading ({error})", file=sys.stderr, flush=True)
                    self.reload_error = error

        self._follower = threading.Thread(target=loop, name="kgrec-engine-follower", daemon=True)
        self._follower.start()

    @property
    def version(self) -> str | None:
        """The name of the version served (None: the trained run itself)."""
        return self.current.name

    def close(self) -> None:
        """Stop following new versions; close the graph store if this engine opened it (the
        one a caller passed stays open)."""
        if self._follower is not None:
            self._stop_following.set()
            self._follower.join(timeout=60)
            self._follower = None
        if self._own_store and self.store is not None:
            self._retired.append(self.store)
            self.store, self._own_store = None, False
        self._close_retired()

    def _close_retired(self) -> None:
        for old in [s for s in self._retired if not self._store_users.get(id(s))]:
            old.close()
            self._retired.remove(old)

    @contextlib.contextmanager
    def _using_graph(self) -> Iterator:
        """The explanation store, counted as in use while the block runs (a reload retires
        the store it replaces only when no request still reads it)."""
        store = self.graph()
        with self._lock:
            self._store_users[id(store)] = self._store_users.get(id(store), 0) + 1
        try:
            yield store
        finally:
            with self._lock:
                self._store_users[id(store)] -= 1
                if not self._store_users[id(store)]:
                    del self._store_users[id(store)]
                self._close_retired()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.run.path) if self.run is not None else "<in memory>"
        return (f"Engine({where!r}, users={len(self.user_index):,}, items={len(self.catalogue.ids):,}, "
                f"candidates={self.candidates}, version={self.version!r})")

    # the served version's parts and building blocks (see EngineVersion)
    model = property(lambda self: self.current.model)
    tables = property(lambda self: self.current.tables)
    scorer = property(lambda self: self.current.scorer)
    user_index = property(lambda self: self.current.user_index)
    catalogue = property(lambda self: self.current.catalogue)
    seen = property(lambda self: self.current.seen)
    popularity = property(lambda self: self.current.popularity)
    candidates = property(lambda self: self.current.candidates)
    item_gnn_unit = property(lambda self: self.current.item_gnn_unit)
    cached_categories = property(lambda self: self.current.cached_categories)
    similar_vectors = property(lambda self: self.current.similar_vectors)

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        return self.current.user_rows(user_ids)

    def knows_user(self, user_id: str) -> bool:
        return self.current.knows_user(user_id)

    def knows_item(self, item_id: str) -> bool:
        return self.current.knows_item(item_id)

    def item_row(self, item_id: str) -> int:
        return self.current.item_row(item_id)

    def filter_mask(self, filters: Mapping[str, Any] | None) -> torch.Tensor | None:
        return self.current.filter_mask(filters)

    def rerank(self, users: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor, weights, k: int,
               query_text: torch.Tensor | None = None) -> list[list[Recommendation]]:
        return self.current.rerank(users, cands, valid, weights, k, query_text)

    def mask_seen(self, scores: torch.Tensor, users) -> torch.Tensor:
        return self.current.mask_seen(scores, users)

    def gnn_candidates(self, users: torch.Tensor, exclude_seen: bool, allowed: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.current.gnn_candidates(users, exclude_seen, allowed)

    def similar_index(self):
        return self.current.similar_index()

    # ------------------------------------------------------------------ text and graph
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
                    self._encoder = load_run_encoder(self.run, self.text_precision)
            return self._encoder

    def loaded_encoder(self):
        """The text encoder if it is loaded already, else None (never loads it)."""
        return self._encoder

    def has_query(self, text: str) -> bool:
        """Whether the embedding of ``text`` is cached (a search for it needs no encoding)."""
        return str(text) in self._queries

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """Query embeddings [len(texts), dt] (unit length) from the run's text encoder; the
        last :data:`QUERY_CACHE` distinct queries are kept (a shop's popular queries repeat)."""
        encoder = self.encoder
        texts = [str(t) for t in texts]
        with self._lock:  # tokenizers are not safe to share between threads
            missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
            if missing:
                for t, row in zip(missing, encoder.encode(missing)):
                    self._queries[t] = row.clone()  # not a view that keeps the whole batch alive
            for t in texts:
                self._queries.move_to_end(t)
            out = torch.stack([self._queries[t] for t in texts]) if texts else encoder.encode([])
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
            return out

    # ------------------------------------------------------------------ API
    def recommend(self, user_id: str, k: int = 10, weights: Mapping[str, float] | None = None,
                  exclude_seen: bool = True, filters: Mapping[str, Any] | None = None,
                  explain: bool = False, max_paths: int = 3) -> list[Recommendation]:
        """Top ``k`` products for ``user_id`` (cold start for an unknown user).

        ``weights``: objective weights (``ctr``, ``cvr``, ``value``, ``relevance``, ``exposure``
        (shops with impressions; default 0.5), and from the value stage ``potential`` and
        ``loyalty``) of the ranking score; ``filters``: ``category`` (a path or a level name), ``brand``,
        ``min_price``, ``max_price``; ``explain=True`` attaches knowledge-graph paths
        (needs ``Engine.open(..., store=...)``)."""
        return self.recommend_batch([user_id], k, weights, exclude_seen, filters, explain, max_paths)[0]

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, weights: Mapping[str, float] | None = None,
                        exclude_seen: bool = True, filters: Mapping[str, Any] | None = None,
                        explain: bool = False, max_paths: int = 3, batch_size: int = 256
                        ) -> list[list[Recommendation]]:
        """:meth:`recommend` for many users, scored in batches (offline scoring)."""
        k, user_ids = check_k(k), check_user_ids(user_ids)
        v = self.current  # this request's version, to its end
        weights = check_weights(weights, RECOMMEND_WEIGHTS, v.unscorable())
        allowed = v.filter_mask(filters)
        out: list[list[Recommendation]] = []
        for s in range(0, len(user_ids), batch_size):
            users = torch.from_numpy(v.user_rows(user_ids[s: s + batch_size]))
            cands, valid = v.gnn_candidates(users, exclude_seen, allowed)
            out += v.rerank(users, cands, valid, weights, k)
        if explain:  # one explanation query per user, for the whole list
            for uid, recs in zip(user_ids, out):
                recs[:] = self._with_explanation(uid, recs, max_paths, v)
        return out

    def search(self, query: str, user_id: str | None = None, k: int = 10,
               weights: Mapping[str, float] | None = None, filters: Mapping[str, Any] | None = None
               ) -> list[Recommendation]:
        """Top ``k`` products for a text query, personalised when ``user_id`` is known. A run
        in which no product has text a query can match (:attr:`EngineVersion.searchable`:
        no title, brand, category, description or feature, or only the product's id as its
        title) cannot search: :class:`InvalidRequestError` naming ``query`` (every product
        would have matched every query alike); a run where some products have text searches
        as usual."""
        weights, k = check_weights(weights, SEARCH_WEIGHTS, self.current.unscorable()), check_k(k)
        if not isinstance(query, str):
            raise InvalidRequestError(f"search: the query must be a string, got {query!r}"[:200], "query")
        if user_id is not None:
            check_user_ids([user_id])
        if not str(query).strip():
            raise InvalidRequestError("search: the query is empty", "query")
        if len(str(query)) > MAX_QUERY_CHARS:
            raise InvalidRequestError(f"search: the query has {len(str(query)):,} characters; at most "
                                      f"{MAX_QUERY_CHARS:,} are accepted", "query")
        v = self.current
        if not v.searchable:
            raise InvalidRequestError("search: no query can match this run's products: none has text (a title, "
                                      "brand, category, description or feature other than its id); give the "
                                      "products text and retrain the run to search them", "query")
        allowed = v.filter_mask(filters)
        qv = self.encode_queries([str(query)])                                    # [1, dt]
        cands = v.text_candidates(qv, v.candidates, allowed)
        user = torch.from_numpy(v.user_rows([user_id])) if user_id is not None else torch.tensor([-1])
        if int(user[0]) >= 0:
            gnn, ok = v.gnn_candidates(user, False, allowed)
            cands = torch.unique(torch.cat([cands, gnn[0][ok[0]]]))
        return v.rerank(user, cands[None], torch.ones(1, len(cands), dtype=torch.bool), weights, k,
                        query_text=qv)[0]

    def similar(self, item_id: str, k: int = 10, filters: Mapping[str, Any] | None = None
                ) -> list[Recommendation]:
        """Products most like ``item_id``: mean of the GNN and text cosine similarities
        (``objectives`` holds both).

        The mean of two cosines is one inner product of the concatenated unit vectors
        :math:`c_i = [g_i, t_i] / \\sqrt 2` (:attr:`similar_vectors`), so one scan answers it;
        catalogues of at least :data:`SIMILAR_IVF_MIN` products are searched through an
        inverted-file index over :math:`c` instead (:class:`fusion.text.index.IVFIndex`,
        built when the version is loaded; its recall against the exact scan is reported by
        ``bench/engine_latency.py``). With filters the index's candidates are filtered, and
        an exact scan answers when too few pass (:meth:`EngineVersion.nearest`). A product
        with neither a graph nor a text vector (all zeros) is like nothing: [] rather than
        an arbitrary list at score 0, and is in no other product's list. A product with no
        edge in the graph the GNN was trained over (no training interaction, and for the KG
        model no triple: :func:`graph_vector_items`) has no graph vector here -- its GNN vector
        had no signal to learn from, so its ``gnn`` cosine is 0 and only its text can make it
        like another product (runs trained before the GNN stage recorded this: every product
        counts)."""
        k = check_k(k)
        v = self.current
        i = v.item_row(item_id)
        index = v.similar_index()
        if not bool(index.vectors[i].any()):
            return []
        allowed = v.filter_mask(filters)
        if v.likeable is not None:
            allowed = v.likeable if allowed is None else allowed & v.likeable
        top_s, top_j = v.nearest(index, index.vectors[i][None], k, allowed, exclude=i)
        g = v.item_gnn_unit[top_j] @ v.item_gnn_unit[i]
        t = v.tables.item_text[top_j] @ v.tables.item_text[i]
        c = v.catalogue
        return [Recommendation(str(c.ids[j]), str(c.titles[j]), float(sc), {"gnn": float(gg), "text": float(tt)},
                               None if np.isnan(c.prices[j]) else float(c.prices[j]))
                for sc, j, gg, tt in zip(top_s.tolist(), top_j.tolist(), g.tolist(), t.tolist())]

    # ------------------------------------------------------------------ value (fusion.value)
    def customer_value(self, user_id: str):
        """The user's expected spend and P(any purchase) over the value horizon
        (:class:`fusion.value.results.CustomerValue`); a user without history gets the
        cold-start value, never an error. Read from the served version's value tables
        (``kgrec update`` refreshes them) or the trained run's, whichever are later
        (:func:`fusion.value.results.newest_tables`)."""
        return self.current.value_tables().customer(user_id)

    def product_potential(self, item_id: str):
        """The product's expected units, value and P(sells) over the value horizon
        (:class:`fusion.value.results.ProductPotential`); :class:`UnknownIdError` for an id
        that is not a product of the served version."""
        v = self.current
        return v.value_tables().product(item_id, known=v.knows_item(item_id))

    def brand_loyalty(self, user_id: str) -> list:
        """The user's brands, most loyal first (:class:`fusion.value.results.BrandLoyalty`);
        [] for a user without purchases of any brand."""
        return self.current.value_tables().loyalty(user_id)

    def value_table(self, by: str = "ltv") -> pd.DataFrame:
        """The whole value table as a DataFrame, best first: ``by="ltv"`` (users: ``ltv``,
        ``p_active`` …), ``"potential"`` (products: ``units``, ``value``, ``p_sell``, ``new``)
        or ``"loyalty"`` (brands: ``customers``, ``repurchase_rate``, ``past_share``)."""
        return self.current.value_tables().table(by)

    @contextlib.contextmanager
    def writable_graph(self) -> Iterator:
        """The run's graph store opened for writing while the block runs (the updater's
        ingest): the store given to :meth:`open` if there is one, else the one the run
        remembers; the engine's own read-only view is reopened afterwards (:meth:`reload`)."""
        from kg.stores import StoreConfig, open_store

        if self.store is not None and not self._own_store:
            yield self.store
            return
        if not self.location:
            raise StoreError("this run does not say which graph store it was trained on: open the engine with "
                             "Engine.open(run_dir, store=...)")
        with open_store(StoreConfig.from_location(self.location)) as store:
            yield store

    def graph(self):
        """The graph store explanations read: the one given to :meth:`open`, else the one
        the run was trained on (``run.json``), opened read-only on first use."""
        with self._lock:
            if self.store is None:
                self.store, self._own_store = self._open_graph_view(), True
            return self.store

    def _open_graph_view(self):
        """A connected read-only view of the run's graph store."""
        from kg.stores import StoreConfig, open_store

        if not self.location:
            raise StoreError("explanations read the graph, and this run does not say which one: "
                             "open the engine with Engine.open(run_dir, store=...)")
        config = StoreConfig.from_location(self.location)
        embedded = {"read_only": True, "query_threads": 1}  # point queries: see EmbeddedStore
        return open_store(config, **(embedded if config.kind == "embedded" else {})).connect()

    def explain(self, user_id: str, item_id: str, max_paths: int = 5):
        """Knowledge-graph paths from the user to the item (:func:`kg.explain.explain`, one
        query); :class:`kg.errors.UnknownIdError` for a user or item not in the graph."""
        return self.explain_many(user_id, [item_id], max_paths)[0]

    def explain_many(self, user_id: str, item_ids: Sequence[str], max_paths: int = 5, *, strict: bool = True) -> list:
        """:meth:`explain` for several items of one user in one query
        (:func:`kg.explain.explain_many`): a list of explanations in the order of
        ``item_ids``. An unknown user raises :class:`kg.errors.UnknownIdError`; so does an
        unknown item when ``strict``, else its place holds None."""
        return self._explain_many(user_id, item_ids, max_paths, strict, self.current)

    def explain_with(self, explainer: Explainer | None) -> None:
        """Answer explanations through ``explainer`` -- an object with ``explain_many(user_id,
        item_ids, max_paths, strict)``, e.g. a :class:`fusion.explainer.ExplainerProcess` --
        instead of a graph view of this process (None: back to the view). The explainer
        follows the run's versions itself, so during a swap an explanation may come from the
        version next to the one that ranked the items."""
        self._explainer = explainer

    @property
    def explains_elsewhere(self) -> bool:
        """Whether explanations go to an explainer (:meth:`explain_with`), not a graph view."""
        return self._explainer is not None

    def _explain_many(self, user_id: str, item_ids: Sequence[str], max_paths: int, strict: bool,
                      v: EngineVersion) -> list:
        from kg.explain import explain_many

        if self._explainer is not None:
            return self._explainer.explain_many(user_id, list(item_ids), max_paths, strict)
        if v.explain_embeddings is None:
            v.explain_embeddings = v.load_explain_embeddings()
        with self._using_graph() as store:
            return explain_many(store, user_id, item_ids, max_paths, v.explain_embeddings, strict=strict)

    def _with_explanation(self, user_id: str, recs: list[Recommendation], max_paths: int,
                          v: EngineVersion) -> list[Recommendation]:
        """``recs`` with their explanations, all from one query; None for a user the graph
        does not know (cold start) and for an item it lacks."""
        try:
            whys = self._explain_many(user_id, [r.item_id for r in recs], max_paths, False, v)
        except UnknownIdError:  # a cold-start user is not in the graph
            whys = [None] * len(recs)
        return [replace(r, explanation=why) for r, why in zip(recs, whys)]
