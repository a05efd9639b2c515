"""Explanations from the Engine cost one graph query per recommendation list, not one
per item (kg.explain.explain_many), and say the same as one explanation at a time."""

from __future__ import annotations

import pytest

from fusion.engine import Engine
from fusion.tiny_run import make_tiny_run


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    run, _ = make_tiny_run(tmp_path_factory.mktemp("explain"))
    with Engine.open(run.path) as engine:
        yield engine


def test_recommend_batch_explains_each_list_in_one_query(engine, monkeypatch):
    users = [u for u in engine.user_index[:3]]
    engine.recommend(users[0], k=2, explain=True)  # opens the graph, caches its relationship types
    store = engine.graph()
    statements: list[str] = []
    for name in ("run", "records"):  # every statement the store runs, whichever way it answers
        method = getattr(store, name)
        monkeypatch.setattr(store, name, lambda query, params=None, method=method: statements.append(query)
                            or method(query, params))
    lists = engine.recommend_batch(users + ["a-new-visitor"], k=5, explain=True)
    explanation_queries = [s for s in statements if "UNION ALL" in s]
    assert len(explanation_queries) == 4  # one per list (the visitor's finds no such user in the graph)
    assert all(r.explanation is None for r in lists[3])
    for user, recs in zip(users, lists):
        assert [r.explanation for r in recs] == [engine.explain(user, r.item_id, 3) for r in recs]
        assert all(r.explanation.user_id == user and r.explanation.sentence for r in recs)


def test_explain_many_keeps_the_order_and_marks_unknown_items(engine):
    user = engine.user_index[0]
    items = list(engine.catalogue.ids[:4])
    many = engine.explain_many(user, items[::-1] + ["no-such-item"], strict=False)
    assert [e.item_id for e in many[:4]] == items[::-1] and many[4] is None
    assert many[0] == engine.explain(user, items[-1])
