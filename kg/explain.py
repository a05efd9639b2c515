"""Why was this item recommended? Paths through the knowledge graph, found by Cypher.

:func:`explain` (one item) and :func:`explain_many` (a whole recommendation list) look
for named meta-path templates on either store, from the user through a product they
interacted with to the recommended item:

=================  ============================================================
``direct``         the user already interacted with the item
``same_brand``     user → product → (:Brand) ← item
``same_category``  user → product → (:Category) ← item
``item_link``      user → product –[ALSO_BOUGHT | ALSO_VIEWED | BOUGHT_TOGETHER]– item
``same_entity``    user → product → (:Entity) ← item
``related_entity`` user → product → (:Entity) –[RELATED]– (:Entity) ← item
``co_interaction`` user → product ← other users → item
=================  ============================================================

and, only when none of them matches, a bounded variable-length fallback (the
shortest path of at most 4 hops). Each path is scored

.. math::
    s(\\text{path}) = w_{\\text{template}} \\, w_{\\text{interaction}} \\cdot \\tfrac{1}{2}\\bigl(1 + \\tfrac{1}{2}
        (\\cos(\\mathbf{e}_u, \\mathbf{e}_p) + \\cos(\\mathbf{e}_p, \\mathbf{e}_i))\\bigr)

where ``e`` are the trained embeddings (user, the product on the path, the item),
when given; without embeddings the agreement term is 1/2. Ties are broken by
recency, then ids, so both stores return the same list. Which ``max_paths`` paths are
kept puts variety first: the best path of each template, then the best of the remaining
paths; the kept paths are listed by score (ties as above), so the first, whose sentence is
the explanation's, is the best path of all.

**One query.** Every template of every interaction type the store holds is one branch
of a single statement (:func:`kg.queries.explain_query`: ``CALL (u, i) { … UNION ALL … }``
per item on Neo4j, a ``UNION ALL`` of anchored branches on the embedded store), asked
for all items of a list at once (``$items``) -- one round trip per explanation or per
recommendation list, where the first implementation ran ``store.counts()`` (~24
queries), two name lookups and 13 template queries per interaction type. Each branch
reads its :data:`PATHS_PER_TEMPLATE` most recent rows (largest counts first for
``co_interaction``); the ranking by score comes after, in Python, so the best path
does not depend on ``max_paths``. Which relationship types the store holds (hence which
branches exist) is read once per store and build, see :func:`explain_plan`.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from kg import queries as q
from kg.build import CO_COUNTS_RECORD, parse_co_counts
from kg.errors import UnknownIdError
from kg.schema import REL_BY_TYPE, RELS

#: interaction types a path may start with, the verb used in sentences, and how much
#: such an interaction says about the user's taste
VERBS: dict[str, tuple[str, float]] = {
    "PURCHASED": ("bought", 1.0), "REVIEWED": ("reviewed", 1.0), "RATED": ("rated", 0.9),
    "ADDED_TO_CART": ("added to your cart", 0.8), "CLICKED": ("clicked", 0.6), "VIEWED": ("viewed", 0.5),
}
#: prior weight of each template (how convincing such a reason is)
WEIGHTS: dict[str, float] = {
    "direct": 1.0, "item_link": 0.9, "same_brand": 0.8, "same_entity": 0.75,
    "co_interaction": 0.7, "related_entity": 0.6, "same_category": 0.5, "fallback": 0.2,
}
LINK_PHRASES = {"ALSO_BOUGHT": "customers who bought it also bought this",
                "ALSO_VIEWED": "customers who viewed it also viewed this",
                "BOUGHT_TOGETHER": "it is often bought together with this"}


@dataclass(frozen=True)
class PathNode:
    label: str
    id: str
    name: str


@dataclass(frozen=True)
class KGPath:
    """One reason: the nodes from the user to the item and the relationship types between them."""

    template: str
    nodes: tuple[PathNode, ...]
    rel_types: tuple[str, ...]
    score: float
    sentence: str


@dataclass(frozen=True)
class Explanation:
    user_id: str
    item_id: str
    paths: tuple[KGPath, ...] = ()
    reason: str = ""  # why there are no paths, when there are none

    @property
    def sentence(self) -> str:
        return self.paths[0].sentence if self.paths else self.reason

    @property
    def score(self) -> float:
        return self.paths[0].score if self.paths else 0.0


@dataclass
class Embeddings:
    """Trained vectors by external id (from a GNN run's ``embeddings.npz``)."""

    users: dict[str, np.ndarray] = field(default_factory=dict)
    items: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_npz(cls, path) -> Embeddings:
        z = np.load(path)
        norm = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
        return cls(dict(zip(z["user_ids"], norm(z["user"]))), dict(zip(z["item_ids"], norm(z["item"]))))

    def agreement(self, user: str, via: str, item: str) -> float:
        u, p, i = self.users.get(user), self.items.get(via), self.items.get(item)
        if u is None or p is None or i is None:
            return 0.5
        return 0.5 * (1.0 + 0.5 * (float(u @ p) + float(p @ i)))


#: rows read per template branch (and item): the most recent interactions first (the
#: largest counts first for ``co_interaction``). Fixed, not ``max_paths``: the best path of
#: a pair is then the same whatever ``max_paths`` is (the ranking by score happens after).
PATHS_PER_TEMPLATE = 20
#: the store's record of its last build (kg.build writes it at the end of every build)
BUILD_RECORD = "last_build"


@dataclass(frozen=True)
class ExplainPlan:
    """What a store can explain with: the relationship types it holds (of those the
    templates walk), the interaction types paths start from (in :data:`VERBS` order),
    and the query branches (:func:`kg.queries.explain_branches`). ``build`` is the store's
    build record the plan was read with (None: the store has none)."""

    build: str | None
    present: frozenset[str]
    interactions: tuple[str, ...]
    branches: tuple[q.ExplainBranch, ...]
    counted: frozenset[str] = frozenset()  # interaction types whose co-interaction counts are complete


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> ExplainPlan
_PLANS_LOCK = threading.Lock()


def explain_plan(store, refresh: bool = False) -> ExplainPlan:
    """The store's :class:`ExplainPlan`, computed once per store and build.

    Which relationship types a store holds changes only when something writes to it,
    and every build (:func:`kg.build.build_graph`) ends by writing the ``last_build``
    record, whose JSON holds the build's timing and counts. So the plan is read with one
    query (:func:`kg.queries.explain_presence_query`: the record and an ``EXISTS`` per
    relationship type, replacing the ~24 count queries of ``store.counts()``) and kept
    per store object (weakly: it goes with the store), keyed by that record; the
    explanation query itself compares the record with the key (``$build``, column
    ``fresh``), so a build in any process is noticed by the next explanation without an
    extra round trip, and the plan is read again. A store without a build record (written
    by upserts only) is not cached: its plan is read on every call.
    """
    plan = None if refresh else _cached_plan(store)
    if plan is not None:
        return plan
    rels = [s for s in RELS if s.type in _WALKED]
    row = store.run(q.explain_presence_query(rels), {"meta": BUILD_RECORD, "co": CO_COUNTS_RECORD}
                    ).to_dict("records")[0]
    present = frozenset(s.type for k, s in enumerate(rels) if bool(row[f"t{k}"]))
    build = row["build"] if isinstance(row["build"], str) else None
    counted = frozenset(parse_co_counts(row["co_counts"] if isinstance(row["co_counts"], str) else None))
    interactions = tuple(t for t in VERBS if t in present)
    branches = q.explain_branches([REL_BY_TYPE[t] for t in interactions], present, counted)
    plan = ExplainPlan(build, present, interactions, branches, counted)
    if build is not None:
        try:
            with _PLANS_LOCK:
                _PLANS[store] = plan
        except TypeError:  # a store object that cannot be weakly referenced: not cached
            pass
    return plan


def _cached_plan(store) -> ExplainPlan | None:
    try:
        with _PLANS_LOCK:
            return _PLANS.get(store)
    except TypeError:
        return None


def interaction_types(store) -> tuple[str, ...]:
    """The interaction types the store holds that paths start from (cached per build)."""
    return explain_plan(store).interactions


def _query_rows(store, plan: ExplainPlan, user_id: str, items: list[str]) -> list[dict]:
    params = {"user": user_id, "items": items, "meta": BUILD_RECORD, "build": plan.build or ""}
    if store.dialect == "kuzu":  # no LIMIT there (see kg.queries.explain_query), the items one by one
        params.update(q.explain_item_params(items))
    else:
        params["fetch"] = PATHS_PER_TEMPLATE
    records = store.records(explain_statement(store.dialect, plan.branches, len(items)), params)
    if store.dialect == "kuzu":
        return records
    columns = q.EXPLAIN_ROW_COLUMNS  # one record per item, its rows as lists
    return [{"item": r["item"], "user_found": r["user_found"], "fresh": r["fresh"], **dict(zip(columns, row))}
            for r in records for row in r["rows"]]


@functools.lru_cache(maxsize=256)
def _statement(dialect: str, branches: tuple[q.ExplainBranch, ...], n_items: int) -> str:
    return q.explain_query(dialect, branches, n_items)


def explain_statement(dialect: str, branches: tuple[q.ExplainBranch, ...], n_items: int = 1) -> str:
    """:func:`kg.queries.explain_query`, built once per (dialect, branches, number of items);
    Neo4j's statement does not depend on the number of items (one cached plan on the server)."""
    return _statement(dialect, branches, n_items if dialect == "kuzu" else 1)


def _order_key(template: str, row: dict) -> tuple:
    """The order of :data:`kg.queries.EXPLAIN_ORDER`, as Neo4j sorts (nulls first when descending)."""
    key: list = []
    for column, descending in q.EXPLAIN_ORDER[template]:
        v = row[column]
        key.append((v is not None, -float(v) if v is not None else 0.0) if descending
                   else (v is None, "" if v is None else str(v)))
    return tuple(key)


def explain(store, user_id: str, item_id: str, max_paths: int = 5,
            embeddings: Embeddings | None = None) -> Explanation:
    """The best ``max_paths`` knowledge-graph paths from a user to an item (one query).

    Raises :class:`kg.errors.UnknownIdError` for an id not in the graph; returns an
    :class:`Explanation` with no paths (and a ``reason``) when nothing connects them.
    """
    return explain_many(store, user_id, [item_id], max_paths, embeddings)[0]


def explain_many(store, user_id: str, item_ids, max_paths: int = 5, embeddings: Embeddings | None = None,
                 *, strict: bool = True) -> list[Explanation | None]:
    """:func:`explain` for a whole list of items of one user, in one query
    (``UNWIND $items``; plus one bounded shortest-path query per item that no template
    connects). Returns one :class:`Explanation` per item, in order.

    Raises :class:`kg.errors.UnknownIdError` for an unknown user, and for an unknown item
    when ``strict`` (else that item's place holds None).
    """
    items = [str(i) for i in item_ids]
    unique = list(dict.fromkeys(items))
    if not unique:
        return []
    plan = _cached_plan(store)
    cached = plan is not None
    if plan is None:
        plan = explain_plan(store, refresh=True)
    rows = _query_rows(store, plan, user_id, unique)
    heads = {r["item"]: r for r in rows if int(r["branch"]) == 0}
    if cached and not all(bool(h["fresh"]) for h in heads.values()):  # a build wrote since: read again
        plan = explain_plan(store, refresh=True)
        rows = _query_rows(store, plan, user_id, unique)
        heads = {r["item"]: r for r in rows if int(r["branch"]) == 0}
    if not any(bool(h["user_found"]) for h in heads.values()):
        raise UnknownIdError(f"unknown user id {user_id!r}: no (:User) with that id in the graph")
    by_item: dict[str, list[dict]] = {i: [] for i in unique}
    for r in rows:
        if int(r["branch"]) > 0:
            by_item[r["item"]].append(r)
    emb = embeddings or Embeddings()
    answers: dict[str, Explanation | None] = {}
    for item_id in unique:
        head = heads.get(item_id)
        if head is None or head["p_id"] is None:
            if strict:
                raise UnknownIdError(f"unknown item id {item_id!r}: no (:Product) with that id in the graph")
            answers[item_id] = None
            continue
        item = PathNode("Product", item_id, str(head["p_name"] or item_id))
        answers[item_id] = _explanation(store, user_id, item, plan.branches, by_item[item_id], max_paths, emb)
    return [answers[i] for i in items]


def _explanation(store, user_id: str, item: PathNode, branches: tuple[q.ExplainBranch, ...], rows: list[dict],
                 max_paths: int, emb: Embeddings) -> Explanation:
    """Score one item's path rows and keep ``max_paths`` of them (variety first: the best
    of each template, then the best of the rest), listed by score. Rows are scored and
    ranked as they are; only the paths kept become :class:`KGPath` objects."""
    user = PathNode("User", user_id, "you")
    found: list[tuple[float, int, str, int, dict]] = []  # (score, ts, tie, branch number, row)
    kept: dict[int, list[dict]] = {}
    for r in rows:
        kept.setdefault(int(r["branch"]), []).append(r)
    # the user's own interactions with the item, by type (a "direct" row): a count of
    # co-customers read from the build's counts includes the user, then
    done = {b.via.type for k, b in enumerate(branches, 1) if b.template == "direct" and kept.get(k)}
    agreement: dict[str, float] = {}  # by the product on the path
    for k, branch in enumerate(branches, 1):  # branch order = the order the first implementation ran them
        template, via = branch.template, branch.via.type
        limit = 1 if template == "direct" else PATHS_PER_TEMPLATE
        candidates = kept.get(k, [])
        if template == "co_interaction" and branch.link is not None and via in done:
            candidates = [{**r, "n": int(r["n"]) - 1} for r in candidates if int(r["n"]) > 1]
        weight = WEIGHTS[template] * VERBS[via][1]
        for row in sorted(candidates, key=lambda r: _order_key(template, r))[:limit]:
            product = item.id if template == "direct" else str(row["p_id"])
            if product not in agreement:
                agreement[product] = emb.agreement(user_id, product, item.id)
            found.append((weight * agreement[product], int(row["ts"] or 0), _tie(template, row, user_id, item.id),
                          k, row))
    if not found:
        fallback = _fallback(store, user_id, item.id, user, item)
        if fallback is None:
            return Explanation(user_id, item.id, (), "no path of at most 4 hops connects this user and item")
        return Explanation(user_id, item.id, (fallback,))
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    unique, seen = [], set()
    for f in found:
        if f[2] not in seen:
            seen.add(f[2])
            unique.append(f)
    # which paths: variety first -- the best path of each template, then the best of the rest
    # -- so five reasons are not five co-customers; shown by score (``unique``'s order), so
    # the printed scores fall and the first path, the sentence's, is the best
    first, templates = [], set()
    for n, f in enumerate(unique):
        if branches[f[3] - 1].template not in templates:
            templates.add(branches[f[3] - 1].template)
            first.append(n)
    rest = [n for n in range(len(unique)) if n not in set(first)]
    chosen = sorted((first + rest)[:max_paths])
    return Explanation(user_id, item.id, tuple(
        replace(_path(branches[k - 1], row, user, item), score=round(score, 6))
        for score, _, _, k, row in (unique[n] for n in chosen)))


def _tie(template: str, row: dict, user_id: str, item_id: str) -> str:
    """The ids of the nodes of a row's path, joined, and its template (what tells two paths
    apart: :func:`_path` builds the nodes from the same columns)."""
    if template == "direct":
        ids: tuple[str, ...] = (user_id, item_id)
    elif template in _MIDDLE_LABELS:
        ids = (user_id, str(row["p_id"]), str(row["m_id"]), item_id)
    elif template == "item_link":
        ids = (user_id, str(row["p_id"]), item_id)
    elif template == "related_entity":
        ids = (user_id, str(row["p_id"]), str(row["m_id"]), str(row["n_id"]), item_id)
    else:  # co_interaction: the count is the third node
        ids = (user_id, str(row["p_id"]), customers(int(row["n"])), item_id)
    return "|".join(ids) + template


def customers(n: int) -> str:
    """``1 customer``, ``2 customers``."""
    return f"{n} customer" + ("" if n == 1 else "s")


def _path(branch: q.ExplainBranch, row: dict, user: PathNode, item: PathNode) -> KGPath:
    """The path and sentence of one row of a branch (score filled in by the caller)."""
    template, via = branch.template, branch.via.type
    verb = VERBS[via][0]
    if template == "direct":
        return KGPath(template, (user, item), (via,), 0.0, f"You {verb} {item.name} before.")
    product = PathNode("Product", str(row["p_id"]), str(row["p_name"] or row["p_id"]))
    if template in _MIDDLE_LABELS:
        link, label = branch.link.type, _MIDDLE_LABELS[template]
        m = PathNode(label, str(row["m_id"]), str(row["m_name"] or row["m_id"]))
        phrase = {"same_brand": "also by", "same_category": "also in", "same_entity": "which shares"}[template]
        return KGPath(template, (user, product, m, item), (via, link, link), 0.0,
                      f"Recommended because you {verb} {product.name}, {phrase} {m.name}.")
    if template == "item_link":
        return KGPath(template, (user, product, item), (via, branch.link.type), 0.0,
                      f"Recommended because you {verb} {product.name}, and {LINK_PHRASES[branch.link.type]}.")
    if template == "related_entity":
        m, n = (PathNode("Entity", str(row[c]), str(row[c])) for c in ("m_id", "n_id"))
        return KGPath(template, (user, product, m, n, item), (via, "LINKED_TO", "RELATED", "LINKED_TO"), 0.0,
                      f"Recommended because you {verb} {product.name}, linked to {m.name}, "
                      f"which is related ({row['relation']}) to {n.name}, linked to this item.")
    if template == "co_interaction":
        who = customers(int(row["n"]))
        return KGPath(template, (user, product, PathNode("User", who, ""), item), (via, via, via), 0.0,
                      f"Recommended because {who} who {verb} {product.name} also {verb} this.")
    raise ValueError(f"unknown explanation template {template!r}")


_MIDDLE_LABELS = {"same_brand": "Brand", "same_category": "Category", "same_entity": "Entity"}
#: relationship types the templates walk (whether a store holds them decides the branches)
_WALKED = frozenset(VERBS) | {"HAS_BRAND", "IN_CATEGORY", "LINKED_TO", "RELATED", *LINK_PHRASES}


def _fallback(store, user_id: str, item_id: str, user: PathNode, item: PathNode) -> KGPath | None:
    rows = store.run(q.EXPLAIN_FALLBACK[store.dialect], {"user": user_id, "item": item_id}).to_dict("records")
    if not rows:
        return None
    labels, ids, types = rows[0]["labels"], rows[0]["ids"], rows[0]["types"]
    nodes = tuple([user] + [PathNode(str(lb), str(i), str(i)) for lb, i in zip(labels[1:-1], ids[1:-1])] + [item])
    chain = " → ".join(f"{n.label} {n.id}" for n in nodes[1:-1])
    return KGPath("fallback", nodes, tuple(str(t) for t in types), WEIGHTS["fallback"] * 0.5,
                  f"Connected to you through {chain}.")
