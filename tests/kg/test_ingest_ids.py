"""Ids a delta brings into a graph: one holding a control character is refused before anything is written."""

from __future__ import annotations

import pytest

from kg.build import BuildConfig, build_graph
from kg.ingest import ingest
from loaders.dataset import Dataset, make_table
from loaders.errors import DatasetError

QUIET = BuildConfig(progress=False)


def test_a_delta_naming_a_user_with_a_control_character_is_refused(store, tiny):
    """A delta made in Python (no loader to reject the row) with a NUL in a new user's id:
    the ingest refuses it naming the table, column and row, and the store is as it was."""
    build_graph(tiny, store, QUIET)
    before = store.counts()
    delta = Dataset(name="events")
    delta.interactions = make_table("interactions", [
        {"user_id": "u1", "item_id": "p2", "event": "click", "value": 1, "timestamp": 500},
        {"user_id": "new\x00x", "item_id": "p2", "event": "click", "value": 1, "timestamp": 500}])
    with pytest.raises(DatasetError, match=r"table 'users', column 'user_id', row \d+: control character in an id: "
                                           r"'new\\x00x'"):
        ingest(store, delta, QUIET)
    assert store.counts() == before
