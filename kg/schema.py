"""The property-graph schema, in one place.

Labels, relationship types, their properties and keys are declared here and only
here. Every Cypher statement that names a label or type takes it from these
specs (backtick-quoted); values always travel as ``$parameters``.

Graph::

    (:User)-[:PURCHASED|RATED|REVIEWED|VIEWED|CLICKED|ADDED_TO_CART|SHOWN {ts, value, split}]->(:Product)
    (:User)-[:WROTE]->(:Review)-[:REVIEW_OF]->(:Product)
    (:Product)-[:HAS_BRAND]->(:Brand)
    (:Product)-[:IN_CATEGORY]->(:Category)-[:SUBCATEGORY_OF]->(:Category)
    (:Product)-[:ALSO_BOUGHT|ALSO_VIEWED|BOUGHT_TOGETHER]->(:Product)
    (:Product)-[:LINKED_TO]->(:Entity)-[:RELATED {relation}]->(:Entity)
    (:Query)-[:RELEVANT {grade}]->(:Product)

Every node has a unique ``id`` (a string). A relationship is identified by its
endpoints plus its ``key`` properties (interactions: the timestamp, so repeat
purchases at different times are kept apart; entity relations: the relation
name), which is what makes builds idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from kg.errors import ConfigError

#: bump when the schema changes incompatibly (part of the build fingerprint)
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Prop:
    name: str
    type: str  # "STRING" | "DOUBLE" | "INT64"


@dataclass(frozen=True)
class NodeSpec:
    label: str
    props: tuple[Prop, ...]  # besides the key property ``id``
    name_prop: str = "id"  # the property shown to people (title, name …)
    doc: str = ""


@dataclass(frozen=True)
class RelSpec:
    type: str
    src: str
    dst: str
    props: tuple[Prop, ...] = ()
    key: tuple[str, ...] = ()  # props that, with the endpoints, identify the relationship
    doc: str = ""


S, D, I = "STRING", "DOUBLE", "INT64"

USER = NodeSpec("User", (Prop("name", S),), "name", "a shopper")
PRODUCT = NodeSpec(
    "Product",
    (Prop("title", S), Prop("description", S), Prop("price", D), Prop("features", S), Prop("available", I)),
    "title",
    "a catalogue item; features joined by newlines, price null when unknown; available 1 on sale, 0 withdrawn",
)
BRAND = NodeSpec("Brand", (Prop("name", S),), "name", "brand or store; id is the name")
CATEGORY = NodeSpec(
    "Category", (Prop("name", S), Prop("level", I)), "name",
    "id is the full path 'Top > Sub'; name the last level; level 0 = top",
)
ENTITY = NodeSpec("Entity", (), "id", "an external knowledge-graph entity (Freebase id …)")
REVIEW = NodeSpec(
    "Review", (Prop("rating", D), Prop("summary", S), Prop("text", S), Prop("ts", I)), "summary",
    "a review text",
)
QUERY = NodeSpec("Query", (), "id", "a search query with judged results; id is its text")
META = NodeSpec("KgrecMeta", (Prop("value", S),), "id", "build bookkeeping (not data)")

NODES: tuple[NodeSpec, ...] = (USER, PRODUCT, BRAND, CATEGORY, ENTITY, REVIEW, QUERY)
ALL_NODES: tuple[NodeSpec, ...] = NODES + (META,)

_INTERACTION_PROPS = (Prop("ts", I), Prop("value", D), Prop("split", S))

#: interaction event (loaders.dataset.EVENTS) -> relationship type
EVENT_TYPES: dict[str, str] = {
    "impression": "SHOWN",
    "view": "VIEWED",
    "click": "CLICKED",
    "cart": "ADDED_TO_CART",
    "purchase": "PURCHASED",
    "rating": "RATED",
    "review": "REVIEWED",
}
#: item link relation (loaders.dataset.LINK_RELATIONS) -> relationship type
LINK_TYPES: dict[str, str] = {
    "also_buy": "ALSO_BOUGHT",
    "also_view": "ALSO_VIEWED",
    "bought_together": "BOUGHT_TOGETHER",
}

RELS: tuple[RelSpec, ...] = tuple(
    RelSpec(t, "User", "Product", _INTERACTION_PROPS, ("ts",), f"interaction event '{e}'")
    for e, t in EVENT_TYPES.items()
) + (
    RelSpec("WROTE", "User", "Review"),
    RelSpec("REVIEW_OF", "Review", "Product"),
    RelSpec("HAS_BRAND", "Product", "Brand"),
    RelSpec("IN_CATEGORY", "Product", "Category"),
    RelSpec("SUBCATEGORY_OF", "Category", "Category"),
) + tuple(
    RelSpec(t, "Product", "Product", (), (), f"item link '{r}'") for r, t in LINK_TYPES.items()
) + (
    RelSpec("LINKED_TO", "Product", "Entity"),
    RelSpec("RELATED", "Entity", "Entity", (Prop("relation", S),), ("relation",),
            "external KG triple; the relation name is a property"),
    RelSpec("RELEVANT", "Query", "Product", (Prop("grade", I),), (), "graded search judgement"),
)

#: interaction types whose co-interaction counts the build keeps (every interaction but
#: ``SHOWN``: the ones an explanation's ``co_interaction`` template walks)
CO_COUNTED: tuple[str, ...] = tuple(t for t in EVENT_TYPES.values() if t != "SHOWN")


def co_type(interaction: str) -> str:
    """The derived relationship type holding the co-interaction counts of ``interaction``."""
    return f"CO_{interaction}"


#: derived relationships, not data: ``(:Product)-[:CO_PURCHASED {n}]->(:Product)`` holds how
#: many distinct users PURCHASED both products (n >= 1), once per unordered pair (``src``
#: id < ``dst`` id; read it undirected). :func:`kg.build.build_graph` keeps them current
#: from the interactions it writes (:func:`kg.build.update_co_counts`); they are not
#: exported to the GNN, nor counted by ``store.counts()``.
CO_RELS: tuple[RelSpec, ...] = tuple(
    RelSpec(co_type(t), "Product", "Product", (Prop("n", I),), (),
            f"derived: distinct users with a {t} of both products") for t in CO_COUNTED
)
#: every relationship type a store holds tables / relationships of
ALL_RELS: tuple[RelSpec, ...] = RELS + CO_RELS

NODE_BY_LABEL: dict[str, NodeSpec] = {n.label: n for n in ALL_NODES}
REL_BY_TYPE: dict[str, RelSpec] = {r.type: r for r in ALL_RELS}


def node_spec(label: str) -> NodeSpec:
    try:
        return NODE_BY_LABEL[label]
    except KeyError:
        raise ConfigError(f"unknown node label {label!r}; the schema has {sorted(NODE_BY_LABEL)}") from None


def rel_spec(rel_type: str) -> RelSpec:
    try:
        return REL_BY_TYPE[rel_type]
    except KeyError:
        raise ConfigError(f"unknown relationship type {rel_type!r}; the schema has {sorted(REL_BY_TYPE)}") from None


def quote(name: str) -> str:
    """Backtick-quote a label/type/property name that comes from this schema."""
    if name not in _KNOWN_NAMES:
        raise ConfigError(f"{name!r} is not a name from the kgrec schema")
    return f"`{name}`"


#: node property holding a learned embedding (written by the GNN stage, Neo4j only)
EMBEDDING_PROP = "embedding"

_KNOWN_NAMES = (
    {EMBEDDING_PROP}
    | {n.label for n in ALL_NODES}
    | {r.type for r in ALL_RELS}
    | {"id"}
    | {p.name for n in ALL_NODES for p in n.props}
    | {p.name for r in ALL_RELS for p in r.props}
)
