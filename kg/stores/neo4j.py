"""The Neo4j graph store (neo4j Python driver 6.x).

Unique constraints first, then batched ``UNWIND $rows AS r MERGE …`` in managed
write transactions (``session.execute_write``), one transaction per batch.
Values only ever travel as parameters; labels and types come from
:mod:`kg.schema`. Reads use ``driver.execute_query(…, routing_=READ)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from kg import queries as q
from kg.errors import ReadOnlyError, StoreError, StoreUnavailableError
from kg.schema import ALL_NODES, node_spec, rel_spec
from kg.stores.base import CypherStore, EdgeIndex, WriteResult, index_arrays, pending_rows, redact_uri


class Neo4jStore(CypherStore):
    """A :class:`~kg.stores.GraphStore` on a Neo4j server.

    Args:
        uri: e.g. ``bolt://127.0.0.1:7687`` or ``neo4j+s://…`` (Aura). Credentials inside
            it (``bolt://user:password@host``) are taken out of it -- the driver refuses
            them, and a URI is printed in messages -- and used when ``user``/``password``
            are not given; no message ever shows the password.
        user, password: credentials; an empty password connects without auth.
        database: database name (Community Edition has only ``neo4j``).
        batch_size: rows per write transaction (default: 10,000).
    """

    kind = "neo4j"
    dialect = "neo4j"

    def __init__(self, uri: str, user: str = "neo4j", password: str = "", database: str = "neo4j",
                 batch_size: int = 10_000):
        from urllib.parse import unquote, urlsplit

        try:
            parts = urlsplit(uri)
            inline_user, inline_password = parts.username, parts.password
        except ValueError:
            inline_user = inline_password = None
        if inline_user and user == "neo4j":
            user = unquote(inline_user)
        if inline_password and not password:
            password = unquote(inline_password)
        self.uri, self.user, self.database = redact_uri(uri), user, database
        self._password = password
        self.batch_size = batch_size
        self._driver = None

    def __repr__(self) -> str:  # never the password
        return f"Neo4jStore({self.uri!r}, user={self.user!r}, database={self.database!r})"

    def location(self) -> dict[str, str]:
        """Server, user and database (no password, none inside the URI either)."""
        return {"kind": self.kind, "uri": self.uri, "user": self.user, "database": self.database}

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Neo4jStore:
        import neo4j

        if self._driver is None:
            auth = (self.user, self._password) if self._password else None
            try:
                self._driver = neo4j.GraphDatabase.driver(self.uri, auth=auth, notifications_min_severity="OFF")
                self._driver.verify_connectivity()
            except Exception as exc:  # noqa: BLE001 - any failure: one line, host only, no password
                if self._driver is not None:
                    self._driver.close()
                self._driver = None
                detail = " ".join(str(exc).split())[:400] or type(exc).__name__
                if self._password:
                    detail = detail.replace(self._password, "***")
                raise StoreUnavailableError(f"cannot reach Neo4j at {self.uri}: {detail}") from None
        return self

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self._driver = None

    @property
    def driver(self):
        if self._driver is None:
            raise StoreError(f"{self!r} is not connected; call connect() first")
        return self._driver

    def run(self, query: str, params: dict | None = None, write: bool = False) -> pd.DataFrame:
        """Run one Cypher statement and return the records as a DataFrame."""
        import neo4j

        records, _, keys = self.driver.execute_query(
            query, params or {}, database_=self.database,
            routing_=neo4j.RoutingControl.WRITE if write else neo4j.RoutingControl.READ,
        )
        return pd.DataFrame([r.values() for r in records], columns=keys)

    def cypher(self, query: str, write: bool = False, **params) -> pd.DataFrame:
        """Run user Cypher; read-only unless ``write=True`` (see :mod:`kg.stores.guard`).

        Read-only: the statement check of :func:`kg.stores.guard.check_read_only`, then a
        managed read transaction in a READ access-mode session (the server refuses any
        write). A write raises :class:`~kg.errors.ReadOnlyError`."""
        import neo4j

        from kg.stores.guard import check_read_only

        if write:
            return self.run(query, params, write=True)
        check_read_only(query)

        def read(tx):
            result = tx.run(query, params)
            return [r.values() for r in result], result.keys()

        with self.driver.session(database=self.database, default_access_mode=neo4j.READ_ACCESS) as session:
            try:
                rows, keys = session.execute_read(read)
            except neo4j.exceptions.ClientError as exc:
                if exc.code == "Neo.ClientError.Statement.AccessMode":
                    raise ReadOnlyError(f"this query writes; pass write=True to allow it: {exc.message}") from exc
                raise
        return pd.DataFrame(rows, columns=keys)

    def ensure_schema(self) -> None:
        for spec in ALL_NODES:
            self.run(q.neo4j_constraint_query(spec), write=True)
        self.run("CALL db.awaitIndexes(300)", write=True)

    # ---------------------------------------------------------------------- write
    def _write_batches(self, query: str, rows: pd.DataFrame, created_counter: str,
                       progress: Callable[[int], None] | None) -> int:
        created = 0
        with self.driver.session(database=self.database) as session:
            for start in range(0, len(rows), self.batch_size):
                batch = _param_rows(rows.iloc[start : start + self.batch_size])
                counters = session.execute_write(lambda tx: tx.run(query, rows=batch).consume().counters)
                created += getattr(counters, created_counter)
                if progress:
                    progress(len(batch))
        return created

    def upsert_nodes(self, label: str, rows: pd.DataFrame,
                     progress: Callable[[int], None] | None = None) -> WriteResult:
        spec = node_spec(label)
        cols = ["id"] + [p.name for p in spec.props]
        rows = rows[cols].drop_duplicates("id", keep="last")
        fresh, changed = pending_rows(rows, self._stored(q.neo4j_node_rows_query(spec), cols), ["id"], cols[1:])
        todo = pd.concat([rows[fresh], changed])
        if progress and len(todo) < len(rows):
            progress(len(rows) - len(todo))
        created = self._write_batches(q.neo4j_merge_nodes_query(spec), todo, "nodes_created", progress)
        return WriteResult(len(rows), created, len(changed))

    def upsert_rels(self, rel_type: str, rows: pd.DataFrame,
                    progress: Callable[[int], None] | None = None) -> WriteResult:
        spec = rel_spec(rel_type)
        cols = ["src", "dst"] + [p.name for p in spec.props]
        key = ["src", "dst", *spec.key]
        rows = rows[cols].drop_duplicates(key, keep="last")
        props = [p.name for p in spec.props if p.name not in spec.key]
        fresh, changed = pending_rows(rows, self._stored(q.neo4j_rel_rows_query(spec), cols), key, props)
        todo = pd.concat([rows[fresh], changed])
        if progress and len(todo) < len(rows):
            progress(len(rows) - len(todo))
        created = self._write_batches(q.neo4j_merge_rels_query(spec), todo, "relationships_created", progress)
        return WriteResult(len(rows), created, len(changed))

    def _stored(self, query: str, columns: list[str]) -> pd.DataFrame:
        """What is stored already, fetched as one list of rows (fast in the driver)."""
        rows = self.run(query)["rows"].iloc[0]
        return pd.DataFrame(rows, columns=columns)

    def write_vectors(self, label: str, ids, vectors: np.ndarray, index: bool = True) -> int:
        """Store one float32 vector per node (property ``embedding``) and, by default,
        a cosine vector index on it (``db.index.vector.queryNodes``). Returns rows sent."""
        spec = node_spec(label)
        vectors = np.asarray(vectors, dtype=np.float32)
        query = q.neo4j_set_vectors_query(spec)
        with self.driver.session(database=self.database) as session:
            for start in range(0, len(vectors), self.batch_size):
                rows = [{"id": str(i), "v": v.tolist()}
                        for i, v in zip(ids[start : start + self.batch_size], vectors[start : start + self.batch_size])]
                session.execute_write(lambda tx: tx.run(query, rows=rows).consume())
        if index:
            self.run(q.neo4j_vector_index_query(spec), {"dim": int(vectors.shape[1])}, write=True)
            self.run("CALL db.awaitIndexes(300)", write=True)
        return len(vectors)

    def vector_neighbours(self, label: str, vector, k: int = 10) -> pd.DataFrame:
        """The ``k`` nodes whose embedding is most cosine-similar to ``vector`` (id, score)."""
        index = q.neo4j_vector_index_name(node_spec(label))
        return self.run(q.NEO4J_VECTOR_NEIGHBOURS, {"index": index, "k": k, "vector": list(map(float, vector))})

    def similar_items(self, item_id: str, k: int = 10, *, same_category: bool = False,
                      min_price: float | None = None, max_price: float | None = None,
                      candidates: int | None = None) -> pd.DataFrame:
        """Items nearest to ``item_id`` by embedding (vector index), filtered by the graph in
        the same Cypher query. Columns id, title, price, score. Needs ``write_vectors`` first."""
        index = q.neo4j_vector_index_name(node_spec("Product"))
        return self.run(q.NEO4J_SIMILAR_ITEMS, {
            "item": item_id, "index": index, "k": k, "candidates": candidates or max(10 * k, 100),
            "same_category": same_category, "min_price": min_price, "max_price": max_price,
        })

    def write_meta(self, key: str, value: str) -> None:
        self.run(q.META_WRITE, {"key": key, "value": value}, write=True)

    def clear(self) -> None:
        """Delete every node and relationship, and kgrec's vector indexes."""
        with self.driver.session(database=self.database) as session:
            session.run(q.NEO4J_DELETE_ALL).consume()
        for name in self.run(q.NEO4J_KGREC_VECTOR_INDEXES)["name"]:
            if q.is_kgrec_index_name(name):
                self.run(f"DROP INDEX {name} IF EXISTS", write=True)

    # ----------------------------------------------------------------------- read
    def node_ids(self, label: str) -> np.ndarray:
        ids = self.run(q.node_ids_query(node_spec(label)))["id"].to_numpy(dtype=object)
        return np.sort(ids)

    def _nodes(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        row = self.run(q.neo4j_node_internal_ids_query(node_spec(label))).iloc[0]
        return np.asarray(row["o"], dtype=np.int64), np.asarray(row["id"], dtype=object)

    def export_edges(self, rel_type: str, props: tuple[str, ...] = ()) -> EdgeIndex:
        spec = rel_spec(rel_type)
        src = self._nodes(spec.src)
        dst = src if spec.dst == spec.src else self._nodes(spec.dst)
        row = self.run(q.neo4j_edge_internal_ids_query(spec, props)).iloc[0]
        raw = {p: np.asarray(row[p], dtype=object) for p in props}
        s_ids, d_ids, s_idx, d_idx, order = index_arrays(
            np.asarray(row["s"], dtype=np.int64), np.asarray(row["d"], dtype=np.int64), src, dst,
            tuple(raw.values()),
        )
        extra = {p: values[order] for p, values in raw.items()}
        return EdgeIndex(spec.type, s_ids, d_ids, s_idx, d_idx, extra)


def _param_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as Cypher parameter maps with plain Python values; NaN becomes null."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
