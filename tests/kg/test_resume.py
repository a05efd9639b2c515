"""Builds killed with SIGKILL at any moment and run again end where a clean build ends.

Each build runs in its own process (``python -c BUILD``) that kills itself with SIGKILL
after its ``crash_after``-th batch -- or is killed from outside at a random moment, in the
middle of a statement -- and is then run again to the end. The store must then hold
exactly what one clean build holds: the same counts and the same checksum of every
label's ids and every relationship type's edges (:func:`kg.build.store_digest`). Both
one-shot builds (into an empty store) and incremental ones (new data into a store that
already holds part of it: the case a live shop meets every day) are tried, on both stores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kg.build import store_digest
from kg.stores import StoreConfig, open_store

REPO = Path(__file__).resolve().parents[2]

#: a small shop; ``part`` "half" is a random half of its interactions (an earlier build: the rows
#: it stored are scattered through every step of the full build, as in a shop's daily delta)
BUILD = r"""
import json, os, signal, sys
from dataclasses import replace
from kg.build import BuildConfig, build_graph
from kg.stores import StoreConfig, open_store
from loaders.synthetic import SyntheticConfig, generate

kind, where, part, crash_after, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ds = generate(SyntheticConfig(n_users=max(150, size // 40), n_items=max(80, size // 75), n_interactions=size,
                              n_queries=10, seed=4))
if part == "half":
    ds = replace(ds, interactions=ds.interactions.sample(frac=0.5, random_state=0).sort_index().reset_index(drop=True))
config = StoreConfig(kind="neo4j", uri=where) if kind == "neo4j" else StoreConfig(kind="embedded", path=where)
store = open_store(config, batch_size=max(400, size // 15)).connect()
calls = [0]
for name in ("upsert_nodes", "upsert_rels"):
    def wrapped(label, rows, progress=None, _real=getattr(store, name), **options):  # e.g. upsert_rels' touching
        def counted(n):
            progress(n)
            calls[0] += 1
            print(json.dumps({"calls": calls[0]}), flush=True)
            if calls[0] == crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return _real(label, rows, progress=counted, **options)
    setattr(store, name, wrapped)
report = build_graph(ds, store, BuildConfig(progress=False))
store.close()
print(json.dumps({"calls": calls[0], "created": report.created, "up_to_date": report.up_to_date,
                  "resumed": report.resumed, "table": report.table()}), flush=True)
"""


def build(kind: str, where: str, part: str, crash_after: int = 0, kill_after: float | None = None,
          size: int = 6_000) -> dict:
    """Run one build process of the shop with ``size`` interactions (``part`` "half" or
    "all"); returns its last JSON line ({} when it was killed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", BUILD, kind, where, part, str(crash_after), str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    if proc.returncode == -signal.SIGKILL:
        return {}
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def digest(kind: str, where: str) -> dict:
    config = StoreConfig(kind="neo4j", uri=where) if kind == "neo4j" else StoreConfig(kind="embedded", path=where)
    with open_store(config, **({"read_only": True} if kind == "embedded" else {})) as store:
        return store_digest(store)


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def target(request, tmp_path):
    """``new()`` -> the location of an empty store of the kind (Neo4j: the one test server, cleared)."""
    def new() -> str:
        if request.param == "embedded":
            new.n += 1
            return str(tmp_path / f"graph{new.n}")
        uri = request.getfixturevalue("neo4j_uri")
        with open_store(StoreConfig(kind="neo4j", uri=uri)) as store:
            store.clear()
        return uri

    new.n = 0
    return request.param, new


@pytest.mark.slow
@pytest.mark.parametrize("incremental", [False, True], ids=["one-shot", "incremental"])
def test_killed_builds_resume_to_the_clean_result(target, incremental):
    kind, new = target
    clean_at = new()
    if incremental:
        build(kind, clean_at, "half")
    clean = build(kind, clean_at, "all")
    expected = digest(kind, clean_at)
    assert expected["PURCHASED"][0] > 0 and not clean["resumed"]
    total = clean["calls"]
    # SIGKILL after the first batch, in the middle, just before the end; and from outside, mid-statement
    moments = [("after batch", 1), ("after batch", total // 2), ("after batch", total - 1), ("at", 1.5)]
    for how, when in moments:
        at = new()
        if incremental:
            build(kind, at, "half")
        killed = build(kind, at, "all", crash_after=when if how == "after batch" else 0,
                       kill_after=when if how == "at" else None)
        if how == "after batch":
            assert killed == {}, "the build was meant to be killed"
        again = build(kind, at, "all")
        got = digest(kind, at)
        assert got == expected, (how, when, {k: (got[k], expected[k]) for k in got if got[k] != expected[k]})
        if killed == {}:  # (a kill from outside may land after the build finished: then nothing is left)
            assert again["resumed"] or again["created"] > 0 or (how == "at" and again["up_to_date"])
        if kind == "neo4j":
            continue
        rerun = build(kind, at, "all")  # a finished build of the same data writes nothing
        assert rerun["up_to_date"] and rerun["created"] == 0 and "nothing new" in rerun["table"]


CHECKPOINT = r"""
import sys
import ladybug, pandas as pd
db = ladybug.Database(sys.argv[1]); conn = ladybug.Connection(db)
conn.execute("CREATE NODE TABLE IF NOT EXISTS N(id STRING, PRIMARY KEY(id))")
conn.execute("COPY N FROM $df", {"df": pd.DataFrame({"id": [f"n{i}" for i in range(int(sys.argv[2]))]})})
print("copied", flush=True)
import time; started = time.perf_counter()
conn.execute("CHECKPOINT")
print(time.perf_counter() - started, flush=True)
"""


@pytest.mark.slow
def test_a_store_killed_during_its_checkpoint_opens_read_only(tmp_path):
    """ladybug refuses a read-only open while the recovery of an interrupted checkpoint is
    pending; the embedded store finishes that recovery and then opens read-only."""
    import ladybug

    from kg.stores.embedded import EmbeddedStore

    rows, pending = 200_000, 0

    def start(path):
        proc = subprocess.Popen([sys.executable, "-c", CHECKPOINT, str(path), str(rows)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "copied"
        return proc

    # How long a checkpoint takes on this machine: the kills are spread over that window.
    timing = start(tmp_path / "timing")
    window = float(timing.stdout.readline())
    timing.wait()
    for attempt in range(40):
        path = tmp_path / f"db{attempt}"
        proc = start(path)
        time.sleep(window * (attempt % 10) / 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            ladybug.Database(str(path), read_only=True).close()
        except RuntimeError as exc:
            assert "recovery is pending" in str(exc)
            pending += 1
        with EmbeddedStore(path, read_only=True) as store:
            assert int(store.run("MATCH (n:N) RETURN count(n) AS c")["c"].iloc[0]) == rows
        if pending >= 2:
            break
    assert pending >= 1, f"no kill landed inside a checkpoint ({window * 1000:.0f} ms) in 40 attempts"
