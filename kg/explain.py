"""Why was this item recommended? Paths through the knowledge graph, found by Cypher.

:func:`explain` runs named meta-path templates (:mod:`kg.queries`, ``explain_*``)
on either store, from the user through a product they interacted with to the
recommended item:

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
recency, then ids, so both stores return the same list. The list shows the best
path of each template first (variety), then the remaining paths by score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kg import queries as q
from kg.errors import UnknownIdError
from kg.schema import NODE_BY_LABEL, REL_BY_TYPE

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


def _name(store, label: str, node_id: str) -> str:
    """The node's display name; :class:`UnknownIdError` when there is no such node."""
    rows = store.run(q.node_name_query(NODE_BY_LABEL[label]), {"id": node_id})
    if rows.empty:
        kind = "user" if label == "User" else "item"
        raise UnknownIdError(f"unknown {kind} id {node_id!r}: no (:{label}) with that id in the graph")
    return str(rows["name"].iloc[0] or node_id)


def _present_types(store) -> list[str]:
    counts = store.counts()
    return [t for t in VERBS if counts.get(t, 0) > 0]


def _rows(store, query: str, user: str, item: str, limit: int):
    return store.run(query, {"user": user, "item": item, "limit": limit}).to_dict("records")


def explain(store, user_id: str, item_id: str, max_paths: int = 5,
            embeddings: Embeddings | None = None) -> Explanation:
    """The best ``max_paths`` knowledge-graph paths from a user to an item.

    Raises :class:`kg.errors.UnknownIdError` for an id not in the graph; returns an
    :class:`Explanation` with no paths (and a ``reason``) when nothing connects them.
    """
    _name(store, "User", user_id)
    item = PathNode("Product", item_id, _name(store, "Product", item_id))
    user = PathNode("User", user_id, "you")
    emb = embeddings or Embeddings()
    found: list[tuple[float, int, str, KGPath]] = []  # (score, ts, tie, path)

    def add(template: str, via_type: str, row: dict, middle: list[PathNode], rels: list[str], sentence: str):
        product = PathNode("Product", str(row["p_id"]), str(row["p_name"] or row["p_id"]))
        nodes = (user, product, *middle, item) if template != "direct" else (user, item)
        score = WEIGHTS[template] * VERBS[via_type][1] * emb.agreement(user_id, product.id, item_id)
        path = KGPath(template, tuple(nodes), tuple([via_type, *rels]), round(score, 6), sentence)
        found.append((score, int(row.get("ts") or 0), "|".join(n.id for n in nodes) + template, path))

    for via in _present_types(store):
        spec, verb = REL_BY_TYPE[via], VERBS[via][0]
        for row in _rows(store, q.explain_direct_query(spec), user_id, item_id, 1):
            add("direct", via, row, [], [], f"You {verb} {item.name} before.")
        for template, link, label, phrase in (("same_brand", "HAS_BRAND", "Brand", "also by"),
                                              ("same_category", "IN_CATEGORY", "Category", "also in"),
                                              ("same_entity", "LINKED_TO", "Entity", "which shares")):
            query = q.explain_shared_node_query(spec, REL_BY_TYPE[link], NODE_BY_LABEL[label])
            for row in _rows(store, query, user_id, item_id, max_paths):
                m = PathNode(label, str(row["m_id"]), str(row["m_name"] or row["m_id"]))
                add(template, via, row, [m], [link, link],
                    f"Recommended because you {verb} {row['p_name']}, {phrase} {m.name}.")
        for link, phrase in LINK_PHRASES.items():
            for outgoing in (True, False):
                query = q.explain_item_link_query(spec, REL_BY_TYPE[link], outgoing)
                for row in _rows(store, query, user_id, item_id, max_paths):
                    add("item_link", via, row, [], [link],
                        f"Recommended because you {verb} {row['p_name']}, and {phrase}.")
        for outgoing in (True, False):
            for row in _rows(store, q.explain_related_entities_query(spec, outgoing), user_id, item_id, max_paths):
                m, n = PathNode("Entity", str(row["m_id"]), str(row["m_id"])), PathNode("Entity", str(row["n_id"]), str(row["n_id"]))
                add("related_entity", via, row, [m, n], ["LINKED_TO", "RELATED", "LINKED_TO"],
                    f"Recommended because you {verb} {row['p_name']}, linked to {m.name}, "
                    f"which is related ({row['relation']}) to {n.name}, linked to this item.")
        for row in _rows(store, q.explain_co_interaction_query(spec), user_id, item_id, max_paths):
            add("co_interaction", via, row, [PathNode("User", f"{int(row['n'])} customers", "")], [via, via],
                f"Recommended because {int(row['n'])} customers who {verb} {row['p_name']} also {verb} this.")

    if not found:
        fallback = _fallback(store, user_id, item_id, user, item)
        if fallback is None:
            return Explanation(user_id, item_id, (), "no path of at most 4 hops connects this user and item")
        return Explanation(user_id, item_id, (fallback,))
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    unique, seen = [], set()
    for _, _, tie, path in found:
        if tie not in seen:
            seen.add(tie)
            unique.append(path)
    # variety first: the best path of each template, then the rest, each part by score
    firsts, templates = [], set()
    for path in unique:
        if path.template not in templates:
            templates.add(path.template)
            firsts.append(path)
    rest = [p for p in unique if p not in firsts]
    return Explanation(user_id, item_id, tuple((firsts + rest)[:max_paths]))


def _fallback(store, user_id: str, item_id: str, user: PathNode, item: PathNode) -> KGPath | None:
    rows = store.run(q.EXPLAIN_FALLBACK[store.dialect], {"user": user_id, "item": item_id}).to_dict("records")
    if not rows:
        return None
    labels, ids, types = rows[0]["labels"], rows[0]["ids"], rows[0]["types"]
    nodes = tuple([user] + [PathNode(str(lb), str(i), str(i)) for lb, i in zip(labels[1:-1], ids[1:-1])] + [item])
    chain = " → ".join(f"{n.label} {n.id}" for n in nodes[1:-1])
    return KGPath("fallback", nodes, tuple(str(t) for t in types), WEIGHTS["fallback"] * 0.5,
                  f"Connected to you through {chain}.")
