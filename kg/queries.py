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


def neo4j_rel_rows_query(spec: RelSpec) -> str:
    """Every relationship of a type as one list of ``[src, dst, props…]`` rows."""
    cols = ", ".join(["a.id", "b.id"] + [f"e.{quote(p.name)}" for p in spec.props])
    return (f"MATCH (a:{quote(spec.src)})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}) "
            f"RETURN collect([{cols}]) AS rows")


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
    return f"MATCH (:{quote(spec.src)})-[e:{quote(spec.type)}]->(:{quote(spec.dst)}) RETURN count(e) AS c"


def node_props_query(spec: NodeSpec) -> str:
    """Every node of a label with all its properties, columns ``id`` + props."""
    cols = "".join(f", n.{quote(p.name)} AS {quote(p.name)}" for p in spec.props)
    return f"MATCH (n:{quote(spec.label)}) RETURN n.id AS id{cols}"


def rel_rows_query(spec: RelSpec) -> str:
    """Every relationship of a type: ``src``, ``dst`` and its properties."""
    cols = "".join(f", e.{quote(p.name)} AS {quote(p.name)}" for p in spec.props)
    return (
        f"MATCH (a:{quote(spec.src)})-[e:{quote(spec.type)}]->(b:{quote(spec.dst)}) "
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
# (relationship type ``via``), to the recommended item ``i``. Each returns the
# product ``p`` (id, name), the time of the user's interaction, and the middle nodes.

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
