"""The narrow ``GraphStore`` interface and what both stores share.

Two implementations: :class:`kg.stores.neo4j.Neo4jStore` (production) and
:class:`kg.stores.embedded.EmbeddedStore` (in-process, on disk, the default when
no Neo4j server is configured); :func:`kg.stores.open_store` picks one.
Constructors do no I/O; :meth:`connect` does.

Write side: nodes and relationships arrive as DataFrames whose columns are
``id`` + the label's properties (nodes) or ``src``, ``dst`` + the type's
properties (relationships), exactly as :mod:`kg.schema` declares them. Both
upserts are idempotent: writing the same rows twice creates nothing the second
time; changed properties are updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd



@dataclass(frozen=True)
class EdgeIndex:
    """All edges of one relationship type as integer index arrays (GNN input).

    ``src_index``/``dst_index``: int64 arrays of shape [E], positions into
    ``src_ids``/``dst_ids``, which hold every node id of the source/target label
    sorted ascending (the id maps: index ``i`` is node ``src_ids[i]``). Edges are
    sorted by (src_index, dst_index). ``props`` holds any requested relationship
    properties as arrays of shape [E], in the same order.
    """

    rel_type: str
    src_ids: np.ndarray
    dst_ids: np.ndarray
    src_index: np.ndarray
    dst_index: np.ndarray
    props: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_edges(self) -> int:
        return int(self.src_index.shape[0])


@dataclass(frozen=True)
class Neighbour:
    rel_type: str
    outgoing: bool  # True: (node)-[rel]->(neighbour)
    label: str
    id: str
    name: str


@dataclass(frozen=True)
class WriteResult:
    """What one upsert call did: distinct rows given, and how many were new."""

    rows: int
    created: int
    updated: int | None = None  # rows already stored whose properties changed; None: unknown


@runtime_checkable
class GraphStore(Protocol):
    """What the rest of kgrec needs from a graph database.

    ``kind`` names the store (``"neo4j"`` | ``"embedded"``), ``dialect`` the Cypher it
    speaks (``"neo4j"`` | ``"kuzu"``): the few queries whose syntax differs (e.g. the
    bounded shortest path of :mod:`kg.explain`) are chosen by it. ``run`` executes one
    statement of kgrec's own (the queries of :mod:`kg.queries`) and returns its rows;
    ``cypher`` is the guarded entry point for user-written Cypher. ``location`` says
    where the graph lives without any secret (saved with a run, so the run can find
    its graph again; :meth:`kg.stores.StoreConfig.from_location` reopens it).
    """

    kind: str
    dialect: str

    def connect(self) -> GraphStore: ...
    def close(self) -> None: ...
    def ensure_schema(self) -> None: ...
    def upsert_nodes(self, label: str, rows: pd.DataFrame,
                     progress: Callable[[int], None] | None = None) -> WriteResult: ...
    def upsert_rels(self, rel_type: str, rows: pd.DataFrame,
                    progress: Callable[[int], None] | None = None, *,
                    touching: list[str] | None = None) -> WriteResult: ...
    def counts(self) -> dict[str, int]: ...
    def neighbours(self, label: str, node_id: str, limit: int = 50) -> list[Neighbour]: ...
    def node_ids(self, label: str) -> np.ndarray: ...
    def export_edges(self, rel_type: str, props: tuple[str, ...] = ()) -> EdgeIndex: ...
    def read_meta(self, key: str) -> str | None: ...
    def run(self, query: str, params: dict | None = None) -> pd.DataFrame: ...
    def records(self, query: str, params: dict | None = None) -> list[dict]: ...
    def bulk_writes(self): ...
    def cypher(self, query: str, write: bool = False, **params) -> pd.DataFrame: ...
    def location(self) -> dict[str, str]: ...
    def write_meta(self, key: str, value: str) -> None: ...
    def clear(self) -> None: ...
    def __enter__(self) -> GraphStore: ...
    def __exit__(self, *exc: object) -> None: ...


def redact_uri(uri: str) -> str:
    """``uri`` without any ``user:password@`` part (safe to print or save)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable uri>"
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def index_arrays(
    src_keys: np.ndarray, dst_keys: np.ndarray,
    src_nodes: tuple[np.ndarray, np.ndarray], dst_nodes: tuple[np.ndarray, np.ndarray],
    ties: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn store-internal node keys into positions in the id-sorted node lists.

    ``*_nodes`` = (internal keys, external ids) of every node of a label. Returns
    (src_ids sorted, dst_ids sorted, src_index, dst_index, order) where ``order``
    sorts the edges by (src_index, dst_index, *ties) -- ``ties`` are edge property
    arrays that order parallel edges (e.g. two relations between the same
    entities) the same way on every store. Vectorised: no per-edge Python.
    """

    def ranks(nodes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, pd.Index, np.ndarray]:
        keys, ids = np.asarray(nodes[0], dtype=np.int64), np.asarray(nodes[1], dtype=object)
        by_id = np.argsort(ids, kind="stable")
        rank = np.empty(len(ids), dtype=np.int64)
        rank[by_id] = np.arange(len(ids), dtype=np.int64)
        return ids[by_id], pd.Index(keys), rank

    s_ids, s_keys, s_rank = ranks(src_nodes)
    d_ids, d_keys, d_rank = ranks(dst_nodes)
    s_pos = s_keys.get_indexer(np.asarray(src_keys, dtype=np.int64))
    d_pos = d_keys.get_indexer(np.asarray(dst_keys, dtype=np.int64))
    if (s_pos < 0).any() or (d_pos < 0).any():
        raise RuntimeError("edge endpoint missing from the node list (store changed during export?)")
    src_index, dst_index = s_rank[s_pos], d_rank[d_pos]
    order = np.lexsort((dst_index, src_index))
    s_sorted, d_sorted = src_index[order], dst_index[order]
    parallel = (s_sorted[1:] == s_sorted[:-1]) & (d_sorted[1:] == d_sorted[:-1])
    if ties and parallel.any():  # only then do the (slower) tie-breaking sort
        tie_keys = tuple(_sortable(t) for t in reversed(ties))
        order = np.lexsort(tie_keys + (dst_index, src_index))
    return s_ids, d_ids, src_index[order], dst_index[order], order



def key_codes(frames: list[pd.DataFrame], key: list[str]) -> list[np.ndarray]:
    """One int64 code per row of each frame: two rows (of any of the frames) have the same
    code exactly when their ``key`` columns are equal (missing equals missing). Vectorised:
    one ``factorize`` per key column over all frames, the columns' codes combined pairwise."""
    sizes = [len(f) for f in frames]
    combined: np.ndarray | None = None
    for col in key:
        values = pd.concat([f[col] for f in frames], ignore_index=True) if len(frames) > 1 else frames[0][col]
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        codes = codes.astype(np.int64, copy=False)
        if combined is None:
            combined = codes
        else:  # < n**2: no int64 overflow below 3e9 rows; factorize again to keep codes < n
            combined = pd.factorize(combined * max(len(uniques), 1) + codes)[0].astype(np.int64, copy=False)
    if combined is None:
        combined = np.zeros(sum(sizes), dtype=np.int64)
    bounds = np.cumsum([0] + sizes)
    return [combined[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _cast_like(stored: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``stored`` with the dtypes of ``rows`` where the values allow it (a column that does
    not cast, e.g. nulls read back into an integer column, is compared as it is)."""
    out = {}
    for c in stored.columns:
        if c in rows.columns and stored[c].dtype != rows[c].dtype:
            try:
                out[c] = stored[c].astype(rows[c].dtype)
            except (TypeError, ValueError):
                pass
    return stored.assign(**out) if out else stored


def distinct_pending(rows: pd.DataFrame, stored: pd.DataFrame, key: list[str],
                     props: list[str]) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """The distinct rows of ``rows`` by ``key`` (the last of duplicates wins) and what an
    idempotent upsert of them still has to write: (``distinct``, ``fresh``: bool
    [len(distinct)], keys not stored yet; ``changed``: rows of ``distinct`` whose key is
    stored but whose ``props`` differ). One factorisation of the keys serves both the
    de-duplication and the anti-join; an empty store costs no join at all."""
    stored = _cast_like(stored, rows)
    if stored.empty:
        codes = key_codes([rows], key)[0]
        keep = ~pd.Series(codes).duplicated(keep="last").to_numpy()
        distinct = rows if keep.all() else rows[keep]
        return distinct, np.ones(len(distinct), dtype=bool), distinct.iloc[:0]
    row_codes, stored_codes = key_codes([rows, stored], key)
    keep = ~pd.Series(row_codes).duplicated(keep="last").to_numpy()
    if not keep.all():
        rows, row_codes = rows[keep], row_codes[keep]
    # code -> position of the first stored row with that key (-1: not stored)
    n_codes = int(max(row_codes.max(initial=-1), stored_codes.max(initial=-1))) + 1
    first = np.full(n_codes, -1, dtype=np.int64)
    once = ~pd.Series(stored_codes).duplicated().to_numpy()
    first[stored_codes[once]] = np.flatnonzero(once)
    match = first[row_codes]
    fresh = match < 0
    if not props or fresh.all():
        return rows, fresh, rows.iloc[:0]
    old = np.flatnonzero(~fresh)
    diff = np.zeros(len(old), dtype=bool)
    for p in props:
        new = rows[p].iloc[old].reset_index(drop=True)
        before = stored[p].iloc[match[old]].reset_index(drop=True)
        same = ((new == before) | (new.isna() & before.isna())).fillna(False)
        diff |= ~same.to_numpy(dtype=bool)
    return rows, fresh, rows.iloc[old[diff]]


def pending_rows(rows: pd.DataFrame, stored: pd.DataFrame, key: list[str],
                 props: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """What an idempotent upsert still has to write, vectorised (``rows`` distinct by ``key``).

    Returns (``fresh``: bool [len(rows)], rows whose key is not stored yet;
    ``changed``: the rows whose key is stored but whose ``props`` differ).
    """
    distinct, fresh, changed = distinct_pending(rows, stored, key, props)
    if len(distinct) != len(rows):
        raise ValueError("pending_rows needs rows that are distinct by their key; see distinct_pending")
    return fresh, changed


def _sortable(values) -> np.ndarray:
    """A property array both stores sort the same way: numbers as float64, else text."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64)
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        return arr.astype(str)


class CypherStore:
    """What both stores share, written once on top of their ``run(query, params)``."""

    def run(self, query: str, params: dict | None = None) -> pd.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def bulk_writes(self):
        """A context for the many large writes of a build (:func:`kg.build.build_graph`):
        the store may defer housekeeping to its end. Nothing here; the embedded store
        checkpoints once at the end instead of after every ``COPY``."""
        import contextlib

        return contextlib.nullcontext(self)

    def records(self, query: str, params: dict | None = None) -> list[dict]:
        """:meth:`run`'s rows as plain dicts, a missing value as None (the stores answer
        this without building a DataFrame: for the small results of a serving query, the
        DataFrame cost more than the query)."""
        frame = self.run(query, params)
        columns = list(frame.columns)
        return [{c: None if v is None or (isinstance(v, float) and v != v) else v for c, v in zip(columns, row)}
                for row in frame.itertuples(index=False, name=None)]

    def connect(self):  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts(self) -> dict[str, int]:
        """Nodes per label and relationships per type (schema order)."""
        from kg import queries as q
        from kg.schema import NODES, RELS

        out = {s.label: int(self.run(q.count_nodes_query(s))["c"].iloc[0]) for s in NODES}
        out.update({s.type: int(self.run(q.count_rels_query(s))["c"].iloc[0]) for s in RELS})
        return out

    def read_meta(self, key: str) -> str | None:
        from kg import queries as q

        df = self.run(q.META_READ, {"key": key})
        return None if df.empty else str(df["value"].iloc[0])

    def neighbours(self, label: str, node_id: str, limit: int = 50) -> list[Neighbour]:
        """Neighbours of a node, one portable query per relationship type and direction."""
        from kg import queries as q
        from kg.schema import RELS, node_spec

        node_spec(label)
        out: list[Neighbour] = []
        for spec in RELS:
            for outgoing, here, there in ((True, spec.src, spec.dst), (False, spec.dst, spec.src)):
                if here != label:
                    continue
                df = self.run(q.neighbours_query(spec, outgoing, node_spec(there)), {"id": node_id, "limit": limit})
                out += [Neighbour(spec.type, outgoing, there, str(i), "" if n is None else str(n))
                        for i, n in zip(df["id"], df["name"])]
        return out
