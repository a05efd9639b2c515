"""Shared fixtures: the real data sets in ../shared/data and the Neo4j test server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KGREC_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dataset(name: str) -> Path:
    """Path of a real data set in ../shared/data; skip (fail in CI) where it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        if IN_CI:
            pytest.fail(f"CI needs the shared data set {path}, and it is missing")
        pytest.skip(f"shared data set {path} is absent (a user's clone has no ../shared)")
    return path


@pytest.fixture
def gift_cards_dir() -> Path:
    return shared_dataset("amazon2018-gift-cards")


@pytest.fixture
def ml100k_dir() -> Path:
    return shared_dataset("ml-100k-kg")


@pytest.fixture
def amazon_book_dir() -> Path:
    return shared_dataset("amazon-book-kgat")


NEO4J_TEST_URI = os.environ.get("KGREC_TEST_NEO4J_URI", "bolt://127.0.0.1:7687")


def _neo4j_reachable(uri: str) -> str | None:
    import neo4j

    try:
        with neo4j.GraphDatabase.driver(uri, auth=None) as driver:
            driver.verify_connectivity()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return str(exc)


@pytest.fixture(scope="session")
def neo4j_uri() -> str:
    """The real Neo4j test server (scripts/neo4j-server/neo4j-server start); fails in CI if down."""
    problem = _neo4j_reachable(NEO4J_TEST_URI)
    if problem:
        message = f"Neo4j test server at {NEO4J_TEST_URI} is not reachable ({problem}); " \
                  "start it with scripts/neo4j-server/neo4j-server start"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return NEO4J_TEST_URI


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **kwargs):
    """A connected, empty store of ``kind``; closed after the test."""
    from kg.stores import StoreConfig, open_store

    if kind == "neo4j":
        config = StoreConfig(kind="neo4j", uri=request.getfixturevalue("neo4j_uri"))
    else:
        config = StoreConfig(kind="embedded", path=str(tmp_path / "graph"))
    store = open_store(config, **kwargs).connect()
    if kind == "neo4j":  # one shared server: start every test from an empty graph
        store.clear()
    request.addfinalizer(store.close)
    return store


STORE_KINDS = [pytest.param("embedded"), pytest.param("neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """``factory(**store_options)`` -> a connected empty store; tests run on both kinds."""
    return lambda **kwargs: make_store(request.param, tmp_path, request, **kwargs)


@pytest.fixture
def store(store_factory):
    """Each test using this runs on both stores (the GraphStore contract)."""
    return store_factory()


@pytest.fixture
def tiny():
    """A hand-made shop of 3 users and 3 products touching every table."""
    from loaders.dataset import Dataset, make_table

    ds = Dataset(name="tiny")
    ds.users = make_table("users", [{"user_id": u, "name": u.upper()} for u in ("u1", "u2", "u3")])
    ds.items = make_table("items", [
        {"item_id": "p1", "title": "Red Mug", "brand": "Acme", "price": 9.5,
         "categories": ["Home > Kitchen > Mugs"], "features": ["ceramic", "350 ml"]},
        {"item_id": "p2", "title": "Blue Mug", "brand": "Acme", "categories": ["Home > Kitchen > Mugs"]},
        {"item_id": "p3", "title": "Teapot", "brand": "", "price": 30.0,
         "categories": ["Home > Kitchen", "Gifts"]},
    ])
    ds.interactions = make_table("interactions", [
        {"user_id": "u1", "item_id": "p1", "event": "purchase", "value": 1, "timestamp": 100},
        {"user_id": "u1", "item_id": "p1", "event": "purchase", "value": 2, "timestamp": 200},  # repeat buy
        {"user_id": "u2", "item_id": "p2", "event": "purchase", "value": 1, "timestamp": 150},
        {"user_id": "u3", "item_id": "p3", "event": "rating", "value": 4, "timestamp": 120},
        {"user_id": "u2", "item_id": "p3", "event": "click", "value": 1, "timestamp": 90},
    ])
    ds.reviews = make_table("reviews", [{"review_id": "r1", "user_id": "u3", "item_id": "p3",
                                         "rating": 4, "text": "lovely pot", "timestamp": 120}])
    ds.item_links = make_table("item_links", [{"src_item": "p1", "dst_item": "p2", "relation": "also_buy"}])
    ds.triples = make_table("triples", [{"head": "m.1", "relation": "made_of", "tail": "m.2"},
                                        {"head": "m.1", "relation": "style", "tail": "m.2"}])
    ds.item_entities = make_table("item_entities", [{"item_id": "p1", "entity_id": "m.1"}])
    ds.judgements = make_table("judgements", [{"query": "red mug", "item_id": "p1", "relevance": 3},
                                              {"query": "red mug", "item_id": "p3", "relevance": 0}])
    return ds.validate()
