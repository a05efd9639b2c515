"""All Cypher of the knowledge graph.

Fixed statements are UPPER_SNAKE constants; statements that name a label or a
relationship type are built by the small ``*_query`` functions below, which take
the names only from :mod:`kg.schema` specs (backtick-quoted by
:func:`kg.schema.quote`). Values are always ``$parameters``.

Where Neo4j and the embedded store (ladybug, Kùzu's Cypher dialect) differ, the
function name says which one it is for; the read queries used for parity run
unchanged on both.
"""

from __future__ import annotations

from kg.schema import (CATEGORY, EMBEDDING_PROP, ENTITY, META, PRODUCT, USER, NodeSpec, RelSpec, quote,
                       rel_spec)

_USER, _PRODUCT, _ENTITY, _CATEGORY = (quote(s.label) for s in (USER, PRODUCT, ENTITY, CATEGORY))
_TITLE = quote(PRODUCT.name_prop)

# ---------------------------------------------------------------- Neo4j (write)


def neo4j_constraint_query(spec: NodeSpec) -> str:
    """Unique constraint on ``id`` for one label (idempotent)."""
    name = f"kgrec_{spec.label.lower()}_id"
    return (
        f"CREATE CONSTRAINT {name} IF NOT EXISTS "
        f"FOR (n:{quote(spec.label)}) REQUIRE n.id IS UNIQUE"
    )


def neo4j_merge_nodes_query(spec: NodeSpec) -> str:
    """``$rows``: list of maps with ``id`` and every property of ``spec``."""
    sets = ", ".join(f"n.{quote(p.name)} = r.{quote(p.name)}" for p in spec.props)
    query = f"UNWIND $rows AS r MERGE (n:{quote(spec.label)} {{id: r.id}})"
    return query + (f" SET {sets}" if sets else "")


def neo4j_merge_rels_query(spec: RelSpec) -> str:
    """``$rows``: list of maps with ``src``, ``dst`` and the properties of ``spec``."""
    key = ", ".join(f"{quote(k)}: r.{quote(k)}" for k in spec.key)
    sets = ", ".join(f"e.{quote(p.name)} = r.{quote(p.name)}" for p in spec.props if p.name not in spec.key)
    query = (
        f"UNWIND $rows AS r "
        f"MATCH (a:{quote(spec.src)} {{id: r.src}}) "
        f"MATCH (b:{quote(spec.dst)} {{id: r.dst}}) "
        f"MERGE (a)-[e:{quote(spec.type)}{(' {' + key + '}') if key else ''}]->(b)"
    )
    return query + (f" SET {sets}" if sets else "")


def neo4j_column_params(columns: list[str]) -> dict[str, str]:
    """Parameter name of each column for the column-wise write queries below: ``$c0``,
    ``$c1`` … in column order (one list per column, row ``i`` at index ``i``)."""
    return {c: f"c{k}" for k, c in enumerate(columns)}


def neo4j_create_nodes_query(spec: NodeSpec) -> str:
    """Create nodes that are known not to exist (the anti-join said so; the unique
    constraint refuses a duplicate). Parameters: one list per column of ``id`` + the
    properties of ``spec`` (:func:`neo4j_column_params`); a null property is not stored."""
    cols = ["id"] + [p.name for p in spec.props]
    par = neo4j_column_params(cols)
    props = ", ".join(f"{quote(c) if c != 'id' else 'id'}: ${par[c]}[i]" for c in cols)
    return f"UNWIND range(0, size($c0) - 1) AS i CREATE (n:{quote(spec.label)} {{{props}}})"


def neo4j_update_nodes_query(spec: NodeSpec) -> str:
    """Set the properties of existing nodes (rows whose values changed); same parameters
    as :func:`neo4j_create_nodes_query`. A null removes the property."""
    cols = ["id"] + [p.name for p in spec.props]
    par = neo4j_column_params(cols)
    sets = ", ".join(f"n.{quote(p.name)} = ${par[p.name]}[i]" for p in spec.props)
    return f"UNWIND range(0, size($c0) - 1) AS i MATCH (n:{quote(spec.label)} {{id: $c0[i]}}) SET {sets}"


def neo4j_create_rels_query(spec: RelSpec) -> str:
    """Create relationships that are known not to exist. Each endpoint is looked up once per
    batch by its unique id: ``$src_ids`` / ``$dst_ids`` are the batch's distinct endpoint
    ids, ``$s[i]`` / ``$d[i]`` the position of row ``i``'s endpoints in them, and the
    properties of ``spec`` come as one list per column (``$c2`` … after ``src``, ``dst``:
    :func:`neo4j_column_params`). A row whose endpoint does not exist creates nothing
    (as a ``MATCH`` would)."""
    cols = ["src", "dst"] + [p.name for p in spec.props]
    par = neo4j_column_params(cols)
    props = ", ".join(f"{quote(p.name)}: ${par[p.name]}[i]" for p in spec.props)
    return (
        f"CALL () {{ UNWIND $src_ids AS k OPTIONAL MATCH (n:{quote(spec.src)} {{id: k}}) RETURN collect([n]) AS a_ }} "
        f"CALL () {{ UNWIND $dst_ids AS k OPTIONAL MATCH (n:{quote(spec.dst)} {{id: k}}) RETURN collect([n]) AS b_ }} "
        "UNWIND range(0, size($s) - 1) AS i "
        "WITH a_[$s[i]][0] AS a, b_[$d[i]][0] AS b, i WHERE a IS NOT NULL AND b IS NOT NULL "
        f"CREATE (a)-[:{quote(spec.type)}{(' {' + props + '}') if props else ''}]->(b)"
    )


def neo4j_update_rels_query(spec: RelSpec) -> str:
    """Set the non-key properties of existing relationships (rows whose values changed);
    parameters: one list per column of ``src``, ``dst`` + props (``$c0``, ``$c1`` …)."""
    cols = ["src", "dst"] + [p.name for p in spec.props]
    par = neo4j_column_params(cols)
    cond = " AND ".join(f"e.{quote(k)} = ${par[k]}[i]" for k in spec.key)
    sets = ", ".join(f"e.{quote(p.name)} = ${par[p.name]}[i]" for p in spec.props if p.name not in spec.key)
    return (
        f"UNWIND range(0, size($c0) - 1) AS i "
        f"MATCH (a:{quote(spec.src)} {{id: $c0[i]}})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)} {{id: $c1[i]}})"
        f"{(' WHERE ' + cond) if cond else ''} SET {sets}"
    )


def neo4j_set_vectors_query(spec: NodeSpec) -> str:
    """``$rows``: maps ``{id, v}``; stores ``v`` as a float32 vector property."""
    return (
        f"UNWIND $rows AS r MATCH (n:{quote(spec.label)} {{id: r.id}}) "
        f"CALL db.create.setNodeVectorProperty(n, '{EMBEDDING_PROP}', r.v)"
    )


def neo4j_vector_index_name(spec: NodeSpec) -> str:
    return f"kgrec_{spec.label.lower()}_{EMBEDDING_PROP}"


def neo4j_vector_index_query(spec: NodeSpec) -> str:
    """Cosine vector index on the embedding property; ``$dim`` = its dimension.

    Quantization is off: with it (Neo4j's default) scores drift by a few percent."""
    return (
        f"CREATE VECTOR INDEX {neo4j_vector_index_name(spec)} IF NOT EXISTS "
        f"FOR (n:{quote(spec.label)}) ON n.{quote(EMBEDDING_PROP)} "
        "OPTIONS {indexConfig: {`vector.dimensions`: toInteger($dim), "
        "`vector.similarity_function`: 'cosine', `vector.quantization.enabled`: false}}"
    )


#: ``$index``, ``$k``, ``$vector`` -> the k nearest nodes by cosine similarity
NEO4J_VECTOR_NEIGHBOURS = (
    "CALL db.index.vector.queryNodes($index, $k, $vector) YIELD node, score "
    "RETURN node.id AS id, score"
)

#: items most similar to ``$item`` by the vector index ``$index``, with graph filters in the
#: same query: ``$same_category`` (shares a category), ``$min_price`` / ``$max_price``
#: (null = no bound). ``$candidates`` nearest neighbours are fetched, then filtered to ``$k``.
NEO4J_SIMILAR_ITEMS = (
    f"MATCH (src:{_PRODUCT} {{id: $item}}) WHERE src.{quote(EMBEDDING_PROP)} IS NOT NULL "
    f"CALL db.index.vector.queryNodes($index, $candidates, src.{quote(EMBEDDING_PROP)}) YIELD node, score "
    "WITH src, node, score WHERE node.id <> $item "
    "AND ($min_price IS NULL OR node.price >= $min_price) "
    "AND ($max_price IS NULL OR node.price <= $max_price) "
    f"AND (NOT $same_category OR EXISTS {{ (src)-[:{quote(rel_spec('IN_CATEGORY').type)}]->(:{_CATEGORY})"
    f"<-[:{quote(rel_spec('IN_CATEGORY').type)}]-(node) }}) "
    f"RETURN node.id AS id, node.{_TITLE} AS title, node.price AS price, score "
    "ORDER BY score DESC, id LIMIT $k"
)

NEO4J_KGREC_VECTOR_INDEXES = (
    "SHOW VECTOR INDEXES YIELD name WHERE name STARTS WITH 'kgrec_' RETURN name"
)


def is_kgrec_index_name(name: str) -> bool:
    """Only names kgrec itself makes (kgrec_<label>_embedding) may be formatted into DROP INDEX."""
    import re

    return re.fullmatch(r"kgrec_[a-z]+_" + EMBEDDING_PROP, name) is not None


def neo4j_node_rows_query(spec: NodeSpec) -> str:
    """Every node of a label as one list of ``[id, props…]`` rows (nulls kept in place)."""
    cols = ", ".join(["n.id"] + [f"n.{quote(p.name)}" for p in spec.props])
    return f"MATCH (n:{quote(spec.label)}) RETURN collect([{cols}]) AS rows"


def neo4j_rel_rows_query(spec: RelSpec, touching: bool = False) -> str:
    """Every relationship of a type as one list of ``[src, dst, props…]`` rows; ``touching``:
    only those with an endpoint whose id is in ``$ids``, found from those endpoints (looked
    up by id: never a scan of the type)."""
    cols = ", ".join(["a.id", "b.id"] + [f"e.{quote(p.name)}" for p in spec.props])
    src, rel, dst = quote(spec.src), quote(spec.type), quote(spec.dst)
    if touching:
        return (f"CALL () {{ UNWIND $ids AS k MATCH (a:{src} {{id: k}})-[e:{rel}]->(b:{dst}) RETURN e, a, b "
                f"UNION UNWIND $ids AS k MATCH (a:{src})-[e:{rel}]->(b:{dst} {{id: k}}) RETURN e, a, b }} "
                f"RETURN collect([{cols}]) AS rows")
    return f"MATCH (a:{src})-[e:{rel}]->(b:{dst}) RETURN collect([{cols}]) AS rows"


#: relationships first, in transactions of a bounded size: a DETACH DELETE of 10,000 nodes can
#: take millions of relationships with it, past the server's transaction memory limit
NEO4J_DELETE_RELS = "MATCH ()-[e]->() CALL (e) { DELETE e } IN TRANSACTIONS OF 50000 ROWS"
NEO4J_DELETE_ALL = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"

# ------------------------------------------------------- embedded store (DDL, write)

_LADYBUG_TYPES = {"STRING": "STRING", "DOUBLE": "DOUBLE", "INT64": "INT64"}


def embedded_node_table_query(spec: NodeSpec) -> str:
    cols = ", ".join(f"{quote(p.name)} {_LADYBUG_TYPES[p.type]}" for p in spec.props)
    return (
        f"CREATE NODE TABLE IF NOT EXISTS {quote(spec.label)}"
        f"(id STRING{', ' + cols if cols else ''}, PRIMARY KEY(id))"
    )


def embedded_rel_table_query(spec: RelSpec) -> str:
    cols = "".join(f", {quote(p.name)} {_LADYBUG_TYPES[p.type]}" for p in spec.props)
    return f"CREATE REL TABLE IF NOT EXISTS {quote(spec.type)}(FROM {quote(spec.src)} TO {quote(spec.dst)}{cols})"


def embedded_copy_query(table: str) -> str:
    """Bulk-load a DataFrame passed as ``$df`` (columns in table order)."""
    return f"COPY {quote(table)} FROM $df"


def embedded_update_nodes_query(spec: NodeSpec) -> str:
    """Update properties of existing nodes from a DataFrame ``$df`` (columns id + props)."""
    sets = ", ".join(f"n.{quote(p.name)} = {quote(p.name)}" for p in spec.props)
    return f"LOAD FROM $df MATCH (n:{quote(spec.label)} {{id: id}}) SET {sets}"


def embedded_update_rels_query(spec: RelSpec) -> str:
    """Update properties of existing relationships from ``$df`` (src, dst + props)."""
    cond = " AND ".join(f"e.{quote(k)} = {quote(k)}" for k in spec.key)
    sets = ", ".join(f"e.{quote(p.name)} = {quote(p.name)}" for p in spec.props if p.name not in spec.key)
    return (
        f"LOAD FROM $df MATCH (a:{quote(spec.src)} {{id: src}})-[e:{quote(spec.type)}]->"
        f"(b:{quote(spec.dst)} {{id: dst}}){(' WHERE ' + cond) if cond else ''} SET {sets}"
    )


def embedded_offsets_query(spec: NodeSpec) -> str:
    """Row offset and id of every node of a label (for index arrays)."""
    return f"MATCH (n:{quote(spec.label)}) RETURN offset(id(n)) AS o, n.id AS id"


def embedded_edge_offsets_query(spec: RelSpec, props: tuple[str, ...] = ()) -> str:
    extra = "".join(f", e.{quote(p)} AS {quote(p)}" for p in props)
    return (
        f"MATCH (a:{quote(spec.src)})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}) "
        f"RETURN offset(id(a)) AS s, offset(id(b)) AS d{extra}"
    )


# --------------------------------------------------------- Neo4j (export, internal ids)


def neo4j_node_internal_ids_query(spec: NodeSpec) -> str:
    return f"MATCH (n:{quote(spec.label)}) RETURN collect(id(n)) AS o, collect(n.id) AS id"


def neo4j_edge_internal_ids_query(spec: RelSpec, props: tuple[str, ...] = ()) -> str:
    extra = "".join(f", collect(e.{quote(p)}) AS {quote(p)}" for p in props)
    return (
        f"MATCH (a:{quote(spec.src)})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}) "
        f"RETURN collect(id(a)) AS s, collect(id(b)) AS d{extra}"
    )


# ------------------------------------------------------------ portable reads (both)


def count_nodes_query(spec: NodeSpec) -> str:
    return f"MATCH (n:{quote(spec.label)}) RETURN count(n) AS c"


def count_rels_query(spec: RelSpec) -> str:
    """Relationships of one type. One end labelled only: Neo4j answers a pattern with at
    most one label from its counts store without reading a relationship (with both ends
    labelled it expanded all of them: ~1 s for the 800k SHOWN of the synthetic build's
    closing ``counts()``); a type's other end is fixed by the schema anyway."""
    return f"MATCH (:{quote(spec.src)})-[e:{quote(spec.type)}]->() RETURN count(e) AS c"


def node_props_query(spec: NodeSpec, by_id: bool = False) -> str:
    """Every node of a label with all its properties, columns ``id`` + props; ``by_id``: only
    the nodes whose id is in ``$ids``."""
    cols = "".join(f", n.{quote(p.name)} AS {quote(p.name)}" for p in spec.props)
    where = " WHERE n.id IN $ids" if by_id else ""
    return f"MATCH (n:{quote(spec.label)}){where} RETURN n.id AS id{cols}"


def rel_rows_query(spec: RelSpec, touching: bool = False) -> str:
    """Every relationship of a type: ``src``, ``dst`` and its properties; ``touching``: only
    those with an endpoint whose id is in ``$ids``."""
    cols = "".join(f", e.{quote(p.name)} AS {quote(p.name)}" for p in spec.props)
    where = " WHERE a.id IN $ids OR b.id IN $ids" if touching else ""
    return (
        f"MATCH (a:{quote(spec.src)})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}){where} "
        f"RETURN a.id AS src, b.id AS dst{cols}"
    )


def neighbours_query(spec: RelSpec, outgoing: bool, other: NodeSpec) -> str:
    """Neighbours of ``$id`` through one relationship type, one direction; ``$limit`` rows."""
    here, there = (spec.src, spec.dst) if outgoing else (spec.dst, spec.src)
    arrow_l, arrow_r = ("-", "->") if outgoing else ("<-", "-")
    return (
        f"MATCH (n:{quote(here)} {{id: $id}}){arrow_l}[e:{quote(spec.type)}]{arrow_r}(m:{quote(there)}) "
        f"RETURN m.id AS id, m.{quote(other.name_prop)} AS name ORDER BY id LIMIT $limit"
    )


def node_ids_query(spec: NodeSpec) -> str:
    return f"MATCH (n:{quote(spec.label)}) RETURN n.id AS id"


def delete_label_query(spec: NodeSpec) -> str:
    """Remove every node of a label and its relationships (small graphs; tests)."""
    return f"MATCH (n:{quote(spec.label)}) DETACH DELETE n"


def node_name_query(spec: NodeSpec) -> str:
    """The display name of node ``$id`` (no row when it does not exist)."""
    return f"MATCH (n:{quote(spec.label)} {{id: $id}}) RETURN n.{quote(spec.name_prop)} AS name"


META_READ = f"MATCH (m:{quote(META.label)} {{id: $key}}) RETURN m.value AS value"
META_WRITE = f"MERGE (m:{quote(META.label)} {{id: $key}}) SET m.value = $value"


# ------------------------------------------------------------- explanations (both)
# Meta-path templates from a user, through a product ``p`` the user interacted with
# (relationship type ``via``), to the recommended item ``i``.
#
# :func:`explain_query` asks for all of them in one statement (what kg.explain runs);
# the ``explain_*_query`` builders after it are the first implementation, one round trip
# per template, direction and interaction type, kept as the reference that
# bench/explain.py times the single query against (and that tests/kg/test_readonly.py
# runs through the read-only guard).

from dataclasses import dataclass  # noqa: E402 -- the imports of this section only
from typing import Collection, Sequence  # noqa: E402

from kg.schema import NODE_BY_LABEL  # noqa: E402


@dataclass(frozen=True)
class ExplainBranch:
    """One meta-path template for one interaction type: one ``UNION ALL`` branch of
    :func:`explain_query`.

    ``template`` is one of :data:`EXPLAIN_TEMPLATES`; ``via`` the user's interaction with
    the product on the path; ``link`` the relationship the template goes through
    (``HAS_BRAND`` / ``IN_CATEGORY`` / ``LINKED_TO`` for the shared-node templates, the item
    link type for ``item_link``, ``RELATED`` for ``related_entity``, the co-interaction
    counts ``CO_<via>`` for ``co_interaction`` when the store keeps them complete -- None:
    counted live from the interactions --; None for ``direct``); ``outgoing`` its direction
    where the pattern allows both."""

    template: str
    via: RelSpec
    link: RelSpec | None = None
    outgoing: bool = True

    @property
    def needs(self) -> tuple[str, ...]:
        """The relationship types the pattern walks: without one of them it matches nothing.
        (``co_interaction`` through the build's counts needs only ``via``: when every pair
        has one co-customer at most, there are no counts, and no path either.)"""
        if self.template == "co_interaction":
            return (self.via.type,)
        extra = {"same_entity": ("LINKED_TO",), "related_entity": ("LINKED_TO", "RELATED")}.get(self.template)
        return (self.via.type,) + (extra or ((self.link.type,) if self.link is not None else ()))


#: the templates, in the order their branches run for each interaction type
EXPLAIN_TEMPLATES = ("direct", "same_brand", "same_category", "same_entity", "item_link", "related_entity",
                     "co_interaction")
_SHARED_LINKS = {"same_brand": "HAS_BRAND", "same_category": "IN_CATEGORY", "same_entity": "LINKED_TO"}
_ITEM_LINKS = ("ALSO_BOUGHT", "ALSO_VIEWED", "BOUGHT_TOGETHER")

#: every column of :func:`explain_query`, in order, and its type (the embedded store's
#: ``UNION ALL`` wants typed nulls). ``branch`` 0 is the head row of an item (``p_id`` /
#: ``p_name``: the item's id and title, null when there is no such product); branch
#: ``b > 0`` is a path row of ``explain_branches(...)[b - 1]``. ``user_found`` and
#: ``fresh`` (the store's ``last_build`` record equals ``$build``) are read off head rows.
EXPLAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("item", "STRING"), ("user_found", "BOOL"), ("fresh", "BOOL"), ("branch", "INT64"), ("p_id", "STRING"),
    ("p_name", "STRING"), ("ts", "INT64"), ("m_id", "STRING"), ("m_name", "STRING"), ("relation", "STRING"),
    ("n_id", "STRING"), ("n", "INT64"),
)


#: the columns of each entry of ``rows`` in the Neo4j explanation query's records
EXPLAIN_ROW_COLUMNS: tuple[str, ...] = tuple(c for c, _ in EXPLAIN_COLUMNS if c not in ("item", "user_found", "fresh"))


def explain_branches(vias: Sequence[RelSpec], present: Collection[str],
                     counted: Collection[str] = ()) -> tuple[ExplainBranch, ...]:
    """Every template of every interaction type in ``vias`` (in that order) whose
    relationship types are all in ``present`` -- the branches of :func:`explain_query`,
    in the order the first implementation ran its queries. ``co_interaction`` of an
    interaction type in ``counted`` (the store's co-interaction counts of that type are
    complete: :func:`kg.build.co_counts_complete`) reads them; else it counts live."""
    from kg.schema import co_type

    branches = []
    for via in vias:
        for template in EXPLAIN_TEMPLATES:
            if template in _SHARED_LINKS:
                candidates = [ExplainBranch(template, via, rel_spec(_SHARED_LINKS[template]))]
            elif template == "item_link":
                candidates = [ExplainBranch(template, via, rel_spec(t), outgoing) for t in _ITEM_LINKS
                              for outgoing in (True, False)]
            elif template == "related_entity":
                candidates = [ExplainBranch(template, via, rel_spec("RELATED"), outgoing)
                              for outgoing in (True, False)]
            elif template == "co_interaction" and via.type in counted:
                candidates = [ExplainBranch(template, via, rel_spec(co_type(via.type)))]
            else:
                candidates = [ExplainBranch(template, via)]
            branches += [b for b in candidates if set(b.needs) <= set(present)]
    return tuple(branches)


#: how the rows of each template's branch are ordered before its limit (column, descending):
#: the most recent interaction first (the largest count first for ``co_interaction``),
#: then ids. Every order is total, so the rows kept never depend on the store.
EXPLAIN_ORDER: dict[str, tuple[tuple[str, bool], ...]] = {
    "direct": (("ts", True),),
    **{t: (("ts", True), ("p_id", False), ("m_id", False)) for t in _SHARED_LINKS},
    "item_link": (("ts", True), ("p_id", False)),
    "related_entity": (("ts", True), ("p_id", False), ("m_id", False), ("relation", False), ("n_id", False)),
    "co_interaction": (("n", True), ("ts", True), ("p_id", False)),
}


def _explain_groups(branches: Sequence[ExplainBranch],
                    merge_types: bool = False) -> list[list[tuple[int, ExplainBranch]]]:
    """The branches (numbered from 1) as the parts of the ``UNION``: one each, except that
    the ``item_link`` branches of one interaction type and direction share one part
    (``-[l:ALSO_BOUGHT|ALSO_VIEWED]->``: one expansion instead of one per link type).
    ``merge_types``: the branches of one template (and link, and direction) share one part
    for all interaction types too (``-[r:CLICKED|PURCHASED]->``), except ``co_interaction``,
    whose pattern needs one type on both of its sides."""
    groups: dict[object, list[tuple[int, ExplainBranch]]] = {}
    for k, b in enumerate(branches, 1):
        via = None if merge_types and b.template != "co_interaction" else b.via.type
        if b.template == "item_link":
            key: object = ("item_link", via, b.outgoing)
        elif via is None:
            key = (b.template, b.link.type if b.link is not None else None, b.outgoing)
        else:
            key = k
        groups.setdefault(key, []).append((k, b))
    return list(groups.values())


def _branch_number(group: Sequence[tuple[int, ExplainBranch]], neo4j: bool) -> str:
    """Column ``branch`` of a part: its branch's number, or where the part holds several,
    a ``CASE`` on the type of the interaction ``r`` (several interaction types), within it
    one on the type of the item link ``l`` (several link types)."""
    if len(group) == 1:
        return str(group[0][0])
    kind = "type" if neo4j else "label"
    by_via: dict[RelSpec, dict[RelSpec | None, int]] = {}
    for k, b in group:
        by_via.setdefault(b.via, {})[b.link] = k

    def case(variable: str, arms: dict) -> str:
        if len(arms) == 1:
            return str(next(iter(arms.values())))
        return (f"CASE {kind}({variable}) " + " ".join(f"WHEN {_type_name(t)} THEN {v}" for t, v in arms.items())
                + " END")

    return case("r", {via: case("l", links) for via, links in by_via.items()})


def _type_name(spec: RelSpec) -> str:
    """A relationship type of the schema as a Cypher string literal (checked by ``quote``)."""
    quote(spec.type)
    return f"'{spec.type}'"


def _explain_branch(group: Sequence[tuple[int, ExplainBranch]], u: str, i: str, item_filter: str,
                    neo4j: bool) -> tuple[str, dict[str, str]]:
    """(MATCH … WHERE … [WITH …], {column: expression}) of one part (see
    :func:`_explain_groups`); column ``branch`` says which branch a row belongs to. ``u`` and
    ``i`` are the user and item node patterns, ``item_filter`` a condition on ``i`` ("" when
    ``i`` is bound already); the item's id is column ``item``. Path rows always carry the
    product ``p`` and the time ``ts`` of the user's interaction with it (``direct``: only
    ``ts`` -- ladybug 0.22 crashes on a ``UNION ALL`` branch that returns one expression
    twice, ``i.id AS item, i.id AS p_id``, under ``ORDER BY … LIMIT``).

    On Neo4j nodes are told apart by identity (no property read), and ``co_interaction``
    joins the item's co-users with those of the user's products by hash (``USING JOIN
    ON v``: with user and item bound by ``CALL``, the planner otherwise re-expanded the
    user's products once per co-user of the item -- 26,000 db hits instead of 600 for one
    Gift Cards pair) and counts them per product and interaction node."""
    k, b = group[0]
    t = "|".join(dict.fromkeys(quote(br.via.type) for _, br in group))
    branch = _branch_number(group, neo4j)
    p_fields = {"branch": branch, "item": "i.id", "p_id": "p.id", "p_name": f"p.{_TITLE}", "ts": "r.ts"}
    user_via = f"MATCH {u}-[r:{t}]->(p:{_PRODUCT})"
    differ = (lambda a, b: f"{a} <> {b}") if neo4j else (lambda a, b: f"{a}.id <> {b}.id")  # noqa: E731
    where = " AND ".join(c for c in (item_filter, differ("p", "i")) if c)
    if b.template == "direct":
        return (f"MATCH {u}-[r:{t}]->{i}" + (f" WHERE {item_filter}" if item_filter else ""),
                {"branch": branch, "item": "i.id", "ts": "r.ts"})  # p is i: its id and title are on the head row
    if b.template in _SHARED_LINKS:
        link, middle = quote(b.link.type), NODE_BY_LABEL[b.link.dst]
        return (f"{user_via}-[:{link}]->(m:{quote(middle.label)})<-[:{link}]-{i} WHERE {where}",
                {**p_fields, "m_id": "m.id", "m_name": f"m.{quote(middle.name_prop)}"})
    if b.template == "item_link":
        links = "|".join(dict.fromkeys(quote(br.link.type) for _, br in group))
        arrow = f"-[l:{links}]->" if b.outgoing else f"<-[l:{links}]-"
        return f"{user_via}{arrow}{i} WHERE {where}", p_fields
    if b.template == "related_entity":
        related, linked = quote(b.link.type), quote(rel_spec("LINKED_TO").type)
        arrow = f"-[k:{related}]->" if b.outgoing else f"<-[k:{related}]-"
        return (f"{user_via}-[:{linked}]->(m:{_ENTITY}){arrow}(m2:{_ENTITY})<-[:{linked}]-{i} "
                f"WHERE {where} AND {differ('m', 'm2')}",
                {**p_fields, "m_id": "m.id", "m_name": "m.id", "relation": "k.relation", "n_id": "m2.id"})
    if b.template == "co_interaction" and b.link is not None:  # the build's counts (see explain_query)
        co = quote(b.link.type)
        if neo4j:  # from the item's counted pairs, joined with the user's products by hash
            return f"MATCH (u)-[r:{t}]->(p)-[c:{co}]-(i) USING JOIN ON p", {**p_fields, "n": "c.n"}
        return (f"{user_via}-[c:{co}]-{i}" + (f" WHERE {item_filter}" if item_filter else ""),
                {**p_fields, "n": "c.n"})
    if b.template == "co_interaction":  # how many other users did both: distinct users, repeat buys count once
        co = f"{user_via}<-[:{t}]-(v:{_USER})-[:{t}]->{i}"
        if neo4j:  # grouped by the nodes, not their properties: 21,000 db hits instead of 54,000 (ml-100k)
            return (f"{co} USING JOIN ON v WHERE {where} AND {differ('v', 'u')} WITH p, r, count(DISTINCT v) AS n",
                    {**p_fields, "n": "n"})
        return (f"{co} WHERE {where} AND {differ('v', 'u')} "
                f"WITH i.id AS item, p.id AS p_id, p.{_TITLE} AS p_name, r.ts AS ts, count(DISTINCT v) AS n",
                {"branch": str(k), "item": "item", "p_id": "p_id", "p_name": "p_name", "ts": "ts", "n": "n"})
    raise ValueError(f"unknown explanation template {b.template!r}")


def _explain_return(fields: dict[str, str], names: Sequence[str], typed_nulls: bool) -> str:
    columns = dict(EXPLAIN_COLUMNS)
    null = (lambda c: f"CAST(NULL AS {columns[c]})") if typed_nulls else (lambda c: "null")
    return "RETURN " + ", ".join(f"{fields[c] if c in fields else null(c)} AS {c}" for c in names)


def explain_item_params(items: Sequence[str]) -> dict[str, str]:
    """``{"item0": items[0], …}``: the items one by one, for :func:`explain_query`."""
    return {f"item{k}": item for k, item in enumerate(items)}


def explain_query(dialect: str, branches: Sequence[ExplainBranch], n_items: int = 1,
                  merge_types: bool = True) -> str:
    """All explanation paths from ``$user`` to every product of ``$items`` in one statement.

    Parameters: ``$user``, ``$items`` (a list of ``n_items`` distinct product ids; the
    embedded store's query also takes them one by one, :func:`explain_item_params`),
    ``$fetch`` (rows kept per branch and item, the most recent first -- the largest counts
    first for ``co_interaction``; ``direct`` keeps 1), ``$meta`` (the key of the build
    record) and ``$build`` (the record the caller's cache was made from: column ``fresh``
    says whether it still is the store's). Columns: :data:`EXPLAIN_COLUMNS`; one head row
    per item, then the rows of each branch -- on Neo4j one record per item, ``item``,
    ``user_found``, ``fresh`` and ``rows``: the item's rows as lists of the other columns,
    in order (:data:`EXPLAIN_ROW_COLUMNS`): one Bolt record per path row cost more on the
    client than the query did on the server.

    ``dialect`` "neo4j": ``UNWIND $items``, then per item one ``CALL (u, i) { … UNION ALL … }``
    whose branches each have their own ``ORDER BY … LIMIT``, so the limits hold per item
    (the shared ``item_link`` parts have none: their rows, the user's products linked to
    the item, are cut by the caller); ``n_items`` does not change the statement.

    "kuzu" (the embedded store has no ``CALL`` subquery): a top-level ``UNION ALL``. Its
    branches anchor the user by id and the items by ``i.id IN $items`` -- one branch for
    all items -- except ``co_interaction``, which gets one branch per item anchored by
    ``{id: $item<k>}``: ladybug plans that one as a lookup at both ends, but with ``IN``
    it expanded every co-rater's products first (ml-100k: 53 ms against 10 ms for one
    item; ``UNWIND`` + ``{id: item}`` was slower still, for every branch). A single item
    anchors every branch so (``IN`` scans the whole product table in each branch: 12.6
    against 10.5 ms of CPU per ml-100k-kg explanation, 12.5 against 8.0 on Gift Cards). The branches
    have no ``LIMIT``: one would count the rows of all items together, and ladybug 0.22
    runs ``ORDER BY … LIMIT`` branches of a ``UNION`` several times slower (and crashed
    on some), so the caller keeps the first ``$fetch`` rows of each (item, branch)
    itself, in the order the Neo4j branches sort by (:data:`EXPLAIN_ORDER`). A template's
    branches share one part for all interaction types (``-[r:CLICKED|PURCHASED]->``, column
    ``branch`` from ``label(r)``; not ``co_interaction``): ladybug prepares a statement in
    time linear in its parts, holding Python's GIL (demo run, 4 interaction types: 13 parts
    instead of 37, prepared in ~110 instead of ~250 ms -- what a one-off explanation and the
    first one on a reopened view pay --, while each explanation runs ~7% slower: 16.2
    against 15.2 ms of CPU, mean of 1,000 pairs run alternately).
    ``merge_types=False``: one part per interaction type, the statement before (the tests
    check that both return the same rows).
    """
    names = [c for c, _ in EXPLAIN_COLUMNS]
    if dialect == "neo4j":
        inner = list(EXPLAIN_ROW_COLUMNS)
        parts = [_explain_return({"branch": "0", "p_id": "i.id", "p_name": f"i.{_TITLE}"}, inner, False)]
        shared: list[str] = []  # the user's side of the shared-node templates, read once for all items
        lists: list[str] = []
        for group in _explain_groups(branches):
            template = group[0][1].template
            if template in _SHARED_LINKS:
                k, b = group[0]
                link, middle = quote(b.link.type), NODE_BY_LABEL[b.link.dst]
                label = quote(middle.label)
                shared.append(f"CALL (u) {{ OPTIONAL MATCH (u)-[r:{quote(b.via.type)}]->(p:{_PRODUCT})-[:{link}]->"
                              f"(m:{label}) RETURN collect([r.ts, p.id, p.{_TITLE}, m.id, "
                              f"m.{quote(middle.name_prop)}, m]) AS s{k} }}")
                lists.append(f"s{k}")
                match = (f"WITH i, s{k}, [(i)-[:{link}]->(x:{label}) | x] AS ms UNWIND s{k} AS x "
                         "WITH x WHERE x[5] IN ms AND x[1] <> i.id")
                fields = {"branch": str(k), "item": "i.id", "p_id": "x[1]", "p_name": "x[2]", "ts": "x[0]",
                          "m_id": "x[3]", "m_name": "x[4]"}
            else:
                match, fields = _explain_branch(group, "(u)", "(i)", "", True)
            order = ", ".join(c + (" DESC" if desc else "") for c, desc in EXPLAIN_ORDER[template])
            limit = "1" if template == "direct" else "$fetch"
            parts.append(f"{match} {_explain_return(fields, inner, False)}"
                         + (f" ORDER BY {order} LIMIT {limit}" if len(group) == 1 else ""))
        return (f"OPTIONAL MATCH (u:{_USER} {{id: $user}}) "
                f"OPTIONAL MATCH (meta:{quote(META.label)} {{id: $meta}}) "
                "WITH u, coalesce(meta.value, '') = $build AS fresh "
                + "".join(s + " " for s in shared)
                + f"UNWIND $items AS item OPTIONAL MATCH (i:{_PRODUCT} {{id: item}}) "
                f"CALL ({', '.join(['u', 'i'] + lists)}) {{ " + " UNION ALL ".join(parts) + " } "
                f"RETURN item, u IS NOT NULL AS user_found, fresh, collect([{', '.join(inner)}]) AS rows")
    if dialect == "kuzu":
        user = f"(u:{_USER} {{id: $user}})"
        parts = [f"OPTIONAL MATCH {user} OPTIONAL MATCH (meta:{quote(META.label)} {{id: $meta}}) "
                 f"UNWIND $items AS item OPTIONAL MATCH (i:{_PRODUCT} {{id: item}}) "
                 + _explain_return({"item": "item", "user_found": "u.id IS NOT NULL",
                                    "fresh": "coalesce(meta.value, '') = $build", "branch": "0", "p_id": "i.id",
                                    "p_name": f"i.{_TITLE}"}, names, True)]
        for group in _explain_groups(branches, merge_types):
            anchors = ([(f"(i:{_PRODUCT} {{id: $item{j}}})", "") for j in range(n_items)]
                       if group[0][1].template == "co_interaction" or n_items == 1
                       else [(f"(i:{_PRODUCT})", "i.id IN $items")])
            for item, item_filter in anchors:
                match, fields = _explain_branch(group, user, item, item_filter, False)
                parts.append(f"{match} {_explain_return(fields, names, True)}")
        return " UNION ALL ".join(parts)
    raise ValueError(f"no explanation query for the Cypher dialect {dialect!r}")


def explain_presence_query(types: Sequence[RelSpec]) -> str:
    """The build record ``$meta`` (column ``build``, null when none), the record of
    complete co-interaction counts ``$co`` (column ``co_counts``, null when none) and, in
    columns ``t0``, ``t1`` …, whether the store holds at least one relationship of each of
    ``types`` (an ``EXISTS`` each: the first match answers it). Portable."""
    exists = ", ".join(f"EXISTS {{ MATCH (:{quote(s.src)})-[:{quote(s.type)}]->(:{quote(s.dst)}) }} AS t{k}"
                       for k, s in enumerate(types))
    meta = quote(META.label)
    return (f"OPTIONAL MATCH (meta:{meta} {{id: $meta}}) OPTIONAL MATCH (co:{meta} {{id: $co}}) "
            f"RETURN meta.value AS build, co.value AS co_counts, {exists}")


# one template, direction and interaction type per query (the first implementation; see above)

_USER_VIA = f"MATCH (u:{_USER} {{{{id: $user}}}})-[r:{{via}}]->(p:{_PRODUCT})"
_NOT_ITEM = "WHERE p.id <> $item"
_ORDER = "ORDER BY ts DESC, p_id{extra} LIMIT $limit"
_ITEM = f"(i:{_PRODUCT} {{id: $item}})"
_P_FIELDS = f"p.id AS p_id, p.{_TITLE} AS p_name, r.ts AS ts"


def _via(via: RelSpec) -> str:
    return _USER_VIA.format(via=quote(via.type))


def explain_direct_query(via: RelSpec) -> str:
    """The user already interacted with the item itself."""
    return (f"MATCH (u:{_USER} {{id: $user}})-[r:{quote(via.type)}]->(p:{_PRODUCT} {{id: $item}}) "
            f"RETURN {_P_FIELDS} ORDER BY ts DESC LIMIT $limit")


def explain_shared_node_query(via: RelSpec, link: RelSpec, middle: NodeSpec) -> str:
    """user -via-> p -link-> (m) <-link- item: same brand / category / entity."""
    return (
        f"{_via(via)}-[:{quote(link.type)}]->(m:{quote(middle.label)})<-[:{quote(link.type)}]-"
        f"{_ITEM} {_NOT_ITEM} "
        f"RETURN {_P_FIELDS}, m.id AS m_id, "
        f"m.{quote(middle.name_prop)} AS m_name " + _ORDER.format(extra=", m_id")
    )


def explain_item_link_query(via: RelSpec, link: RelSpec, outgoing: bool) -> str:
    """user -via-> p -[also_bought …]- item (either direction)."""
    arrow = f"-[:{quote(link.type)}]->" if outgoing else f"<-[:{quote(link.type)}]-"
    return f"{_via(via)}{arrow}{_ITEM} {_NOT_ITEM} RETURN {_P_FIELDS} " + _ORDER.format(extra="")


def explain_related_entities_query(via: RelSpec, outgoing: bool) -> str:
    """user -via-> p -LINKED_TO-> e1 -RELATED- e2 <-LINKED_TO- item."""
    related, linked = quote(rel_spec("RELATED").type), quote(rel_spec("LINKED_TO").type)
    arrow = f"-[k:{related}]->" if outgoing else f"<-[k:{related}]-"
    return (
        f"{_via(via)}-[:{linked}]->(m:{_ENTITY}){arrow}(n:{_ENTITY})<-[:{linked}]-"
        f"{_ITEM} {_NOT_ITEM} AND m.id <> n.id "
        f"RETURN {_P_FIELDS}, m.id AS m_id, m.id AS m_name, "
        "k.relation AS relation, n.id AS n_id " + _ORDER.format(extra=", m_id, relation, n_id")
    )


def explain_co_interaction_query(via: RelSpec) -> str:
    """user -via-> p <-via- other users -via-> item: how many did both."""
    t = quote(via.type)
    return (
        f"{_via(via)}<-[:{t}]-(v:{_USER})-[:{t}]->{_ITEM} "
        f"{_NOT_ITEM} AND v.id <> $user "
        f"WITH p.id AS p_id, p.{_TITLE} AS p_name, r.ts AS ts, count(DISTINCT v) AS n "
        "RETURN p_id, p_name, ts, n ORDER BY n DESC, ts DESC, p_id LIMIT $limit"
    )


#: bounded variable-length fallback, by Cypher dialect (``GraphStore.dialect``): node
#: labels and ids, relationship types of the shortest path of at most 4 hops
EXPLAIN_FALLBACK: dict[str, str] = {
    "neo4j": (
        f"MATCH p = shortestPath((u:{_USER} {{id: $user}})-[*..4]-{_ITEM}) "
        "RETURN [n IN nodes(p) | labels(n)[0]] AS labels, [n IN nodes(p) | n.id] AS ids, "
        "[r IN relationships(p) | type(r)] AS types LIMIT 1"
    ),
    "kuzu": (
        f"MATCH p = (u:{_USER} {{id: $user}})-[* SHORTEST 1..4]-{_ITEM} "
        "RETURN list_transform(nodes(p), x -> label(x)) AS labels, "
        "list_transform(nodes(p), x -> x.id) AS ids, "
        "list_transform(rels(p), x -> label(x)) AS types LIMIT 1"
    ),
}


#: between a product id and a node id in :func:`stale_links_query`'s ``$keep`` pairs (no id holds it)
PAIR_SEP = "\u001f"


def stale_links_query(rel_type: str, delete: bool) -> str:
    """The ``rel_type`` relationships (``HAS_BRAND``, ``IN_CATEGORY``) of the products
    ``$src`` to nodes their catalogue row no longer names -- ``$keep``: the pairs
    ``product + $sep + node id`` that stay --, counted (``n``) or deleted. A product row
    changed by an ingest replaces its brand and categories, as it replaces its properties.
    (String pairs, not a list per product: Kùzu's ``IN`` takes no nested list parameter.)"""
    spec = rel_spec(rel_type)
    match = (f"UNWIND $src AS s MATCH (a:{quote(spec.src)} {{id: s}})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}) "
             "WHERE NOT (s + $sep + b.id) IN $keep ")
    return match + ("DELETE e" if delete else "RETURN count(e) AS n")
