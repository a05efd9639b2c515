"""Graph stores: the ``GraphStore`` protocol, its two implementations, and how to open one.

* :mod:`kg.stores.base` -- the protocol, the shared Cypher-backed code
  (:class:`~kg.stores.base.CypherStore`), edge exports (:class:`~kg.stores.base.EdgeIndex`);
* :mod:`kg.stores.neo4j` -- :class:`~kg.stores.neo4j.Neo4jStore`, the production store;
* :mod:`kg.stores.embedded` -- :class:`~kg.stores.embedded.EmbeddedStore` (ladybug, a Kùzu
  fork: in-process, on disk), the default when no Neo4j is configured.

::

    from kg.stores import StoreConfig, open_store
    with open_store(StoreConfig(kind="embedded", path=".kgrec/graph")) as store:
        store.counts()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kg.errors import ConfigError, ReadOnlyError
from kg.stores.base import (CypherStore, EdgeIndex, GraphStore, Neighbour, WriteResult, index_arrays, pending_rows,
                            redact_uri)


@dataclass(frozen=True)
class StoreConfig:
    """Where the graph lives. ``password`` is never printed (repr=False) nor saved."""

    kind: str = "embedded"  # "embedded" | "neo4j"
    path: str = ".kgrec/graph"  # embedded store directory
    uri: str = ""
    user: str = "neo4j"
    password: str = field(default="", repr=False)
    database: str = "neo4j"

    @classmethod
    def from_env(cls, uri: str | None = None, path: str | None = None) -> StoreConfig:
        """Neo4j when ``uri`` or ``NEO4J_URI`` is set, else the embedded store at ``path``."""
        uri = uri or os.environ.get("NEO4J_URI", "")
        if uri:
            return cls(
                kind="neo4j", uri=uri,
                user=os.environ.get("NEO4J_USER", "neo4j"),
                password=os.environ.get("NEO4J_PASSWORD", ""),
                database=os.environ.get("NEO4J_DATABASE", "neo4j"),
            )
        return cls(kind="embedded", path=path or os.environ.get("KGREC_STORE", ".kgrec/graph"))

    @classmethod
    def from_location(cls, location: dict[str, str]) -> StoreConfig:
        """The store a :meth:`GraphStore.location` record names (a run's ``store``);
        a Neo4j password comes from ``NEO4J_PASSWORD``, as it is never saved."""
        kind = location.get("kind")
        if kind == "embedded":
            return cls(kind="embedded", path=str(location["path"]))
        if kind == "neo4j":
            return cls(kind="neo4j", uri=str(location["uri"]),
                       user=str(location.get("user") or os.environ.get("NEO4J_USER", "neo4j")),
                       password=os.environ.get("NEO4J_PASSWORD", ""),
                       database=str(location.get("database") or "neo4j"))
        raise ConfigError(f"unknown store kind {kind!r} in a store location (embedded or neo4j)")

    def location(self) -> dict[str, str]:
        """What :meth:`GraphStore.location` of the store this names records (no password):
        the absolute directory of an embedded store; a Neo4j server, user and database."""
        if self.kind == "neo4j":
            return {"kind": "neo4j", "uri": self.uri, "user": self.user, "database": self.database}
        return {"kind": "embedded", "path": str(Path(self.path).resolve())}

    def describe(self) -> str:
        if self.kind == "neo4j":
            return f"neo4j {redact_uri(self.uri)} (database {self.database})"
        return f"embedded {self.path}"


def same_store(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two store locations (:meth:`StoreConfig.location`) name one store: the same
    embedded directory, or the same Neo4j server and database (the user does not matter)."""
    if a.get("kind") != b.get("kind"):
        return False
    if a.get("kind") == "embedded":
        return Path(str(a.get("path"))).resolve() == Path(str(b.get("path"))).resolve()
    return (redact_uri(str(a.get("uri"))) == redact_uri(str(b.get("uri")))
            and (a.get("database") or "neo4j") == (b.get("database") or "neo4j"))


def open_store(config: StoreConfig | None = None, **kwargs) -> GraphStore:
    """Create (not yet connected) the store ``config`` describes."""
    config = config or StoreConfig.from_env()
    if config.kind == "neo4j":
        from kg.stores.neo4j import Neo4jStore

        return Neo4jStore(config.uri, config.user, config.password, config.database, **kwargs)
    if config.kind == "embedded":
        from kg.stores.embedded import EmbeddedStore

        return EmbeddedStore(Path(config.path), **kwargs)
    raise ConfigError(f"unknown store kind {config.kind!r} (embedded or neo4j)")


__all__ = ["CypherStore", "EdgeIndex", "GraphStore", "Neighbour", "ReadOnlyError", "StoreConfig", "WriteResult",
           "index_arrays", "open_store", "pending_rows", "redact_uri", "same_store"]
