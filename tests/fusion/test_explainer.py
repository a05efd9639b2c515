"""Explanations from a child process (:mod:`fusion.explainer`): the same answers as the
engine's own graph view, the same errors, and a child that died is started again."""

from __future__ import annotations

import os
import signal

import pytest

from fusion.engine import Engine
from fusion.explainer import ExplainerProcess
from fusion.tiny_run import make_tiny_run
from kg.errors import StoreError, UnknownIdError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    run, dataset = make_tiny_run(tmp_path_factory.mktemp("explainer"))
    explainer = ExplainerProcess(run.path)
    explainer.start()
    yield run, dataset, explainer
    explainer.close()


def test_the_child_answers_what_the_engine_answers(tiny):
    run, dataset, explainer = tiny
    user = str(dataset.interactions["user_id"].iloc[0])
    items = [str(i) for i in dataset.items["item_id"][:6]]
    with Engine.open(run.path) as local:
        expected = local.explain_many(user, items, 3)
        with Engine.open(run.path) as remote:
            remote.explain_with(explainer)
            assert remote.explains_elsewhere
            got = remote.explain_many(user, items, 3)
            recs = remote.recommend(user, k=4, explain=True)
    assert got == expected and any(why.paths for why in got)
    assert all(r.explanation is not None for r in recs)
    assert explainer.explain_many(user, items + ["no-such-item"], 3, strict=False)[-1] is None
    with pytest.raises(UnknownIdError, match="no-such-user"):
        explainer.explain_many("no-such-user", items[:1], 3)
    with pytest.raises(UnknownIdError, match="no-such-item"):
        explainer.explain_many(user, ["no-such-item"], 3)


def test_a_child_that_died_is_started_again(tiny):
    run, dataset, explainer = tiny
    user, item = str(dataset.interactions["user_id"].iloc[0]), str(dataset.items["item_id"].iloc[0])
    before = explainer.explain_many(user, [item], 3)
    pid = explainer.pid
    os.kill(pid, signal.SIGKILL)
    try:  # the request that meets the dead child fails with a clear error, or starts a new one
        again = explainer.explain_many(user, [item], 3)
    except StoreError as exc:
        assert "explanation process stopped" in str(exc)
        again = explainer.explain_many(user, [item], 3)
    assert again == before and explainer.pid not in (None, pid)


def test_a_store_that_is_not_there_is_a_store_error_not_a_dead_child(tiny, tmp_path):
    run, dataset, _ = tiny
    missing = tmp_path / "no-graph"
    explainer = ExplainerProcess(run.path, {"kind": "embedded", "path": str(missing)})
    explainer.start()  # the child starts (recommendations need no graph); each explanation says why
    try:
        user, item = str(dataset.interactions["user_id"].iloc[0]), str(dataset.items["item_id"].iloc[0])
        with pytest.raises(StoreError, match="no graph at"):
            explainer.explain_many(user, [item], 3)
        assert explainer.pid is not None
    finally:
        explainer.close()
    assert not missing.exists()  # read-only: nothing created


def test_an_engine_that_only_explains_builds_no_index_until_asked(tiny, monkeypatch):
    """``Engine.open(..., indexes=False)`` (the explanation process's engine) loads a
    version without building its similar/search indexes; a request that needs one builds
    it then, and answers as an engine that built it ahead."""
    from fusion.text import index

    run, dataset, _ = tiny
    built = []
    original = index.ExactIndex.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    item = str(dataset.items["item_id"].iloc[0])
    with Engine.open(run.path) as ahead:
        expected = ahead.similar(item, k=3)
    monkeypatch.setattr(index.ExactIndex, "__init__", counting)
    with Engine.open(run.path, indexes=False) as lazy:
        assert built == []
        assert lazy.similar(item, k=3) == expected
        assert len(built) == 1
    with Engine.open(run.path) as eager:
        assert len(built) == 3  # similar and search, ahead
        assert eager.similar(item, k=3) == expected
