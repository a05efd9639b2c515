"""``kgrec serve``: a real server process on a free port, called by a real HTTP client.

The run is a tiny one (:func:`fusion.tiny_run.make_tiny_run`) over a real embedded graph
store; the service runs as ``python -m fusion.cli serve`` with an API key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from fusion.tiny_run import make_tiny_run
from kg.run_dir import RunDir

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key-123"
USER = ""  # set by the fixture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    run, dataset = make_tiny_run(tmp_path_factory.mktemp("service"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "KGREC_API_KEY": KEY}
    store = RunDir(run.path).store_location()["path"]  # named with --db, as a user serving another copy would
    proc = subprocess.Popen([sys.executable, "-m", "fusion.cli", "serve", "--run", str(run.path), "--db", store,
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600  # a worker imports torch and loads the run (minutes on a busy machine)
    while True:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"kgrec serve exited: {proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("kgrec serve was not ready within 600 s")
        time.sleep(0.3)
    client = httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30)
    global USER
    USER = str(dataset.interactions["user_id"].iloc[0])  # a user with events
    yield client, run, dataset
    client.close()
    proc.terminate()
    proc.wait(timeout=30)


def test_health_probes_need_no_key_and_the_rest_does(service):
    client, *_ = service
    assert httpx.get(f"{client.base_url}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{client.base_url}/health/ready").json()
    assert ready["status"] == "ready" and ready["items"] == 40
    assert httpx.get(f"{client.base_url}/recommend/{USER}").status_code == 401
    assert httpx.get(f"{client.base_url}/recommend/{USER}", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get(f"/recommend/{USER}").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_queries_answer_typed_results(service):
    client, *_ = service
    from fusion.service import ExplanationOut, ResultsOut

    body = client.get(f"/recommend/{USER}", params={"k": 5, "weights": "ctr=1,cvr=1,value=1"}).json()
    assert len(body["results"]) == 5 and not body["cold_start"]
    ResultsOut.model_validate(body)  # the answers are built as dicts: they match the documented models
    assert set(body["results"][0]["objectives"]) == {"ctr", "cvr", "ctcvr", "value", "relevance", "exposure"}
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert client.get("/recommend/somebody-new", params={"k": 3}).json()["cold_start"]
    assert len(client.get("/search", params={"q": "a gift", "k": 4}).json()["results"]) == 4
    item = body["results"][0]["item_id"]
    assert len(client.get(f"/similar/{item}", params={"k": 3}).json()["results"]) == 3
    why = client.get(f"/explain/{USER}/{item}").json()
    assert why["user_id"] == USER and why["item_id"] == item and "sentence" in why
    ExplanationOut.model_validate(why)
    explained = client.get(f"/recommend/{USER}", params={"k": 2, "explain": "true"}).json()
    assert all(r["explanation"] is not None for r in explained["results"])
    ResultsOut.model_validate(explained)
    ResultsOut.model_validate(client.get("/search", params={"q": "a gift", "user_id": USER, "k": 2}).json())


@pytest.mark.parametrize("path, params, status, field", [
    ("/recommend/{user}", {"k": 0}, 422, "k"),
    ("/recommend/{user}", {"k": 100_000}, 422, "k"),
    ("/recommend/{user}", {"weights": "margin=1"}, 422, "weights"),
    ("/recommend/{user}", {"weights": "ctr"}, 422, "weights"),
    ("/recommend/{user}", {"max_price": "cheap"}, 422, "max_price"),
    ("/search", {"q": "x" * 5_000}, 422, "query"),
    ("/search", {}, 422, "q"),
    ("/similar/no-such-item", {}, 404, None),
    ("/explain/{user}/no-such-item", {}, 404, None),
])
def test_bad_requests_are_4xx_naming_the_field(service, path, params, status, field):
    client, *_ = service
    response = client.get(path.format(user=USER), params=params)
    assert response.status_code == status, response.text
    if field:
        assert field in response.text


def test_posted_events_reach_the_store_and_the_users_recommendations(service):
    client, run, dataset = service
    items = list(dataset.items["item_id"][:3])
    batch = [{"user_id": "shopper-x", "item_id": i, "event": "purchase"} for i in items]
    batch += [{"user_id": "shopper-x", "item_id": "no-such", "event": "purchase"},
              {"user_id": "shopper-x", "item_id": items[0], "event": "teleport"},
              {"user_id": "shopper-x", "item_id": items[0], "event": "click", "timestamp": 10**12}]
    body = client.post("/events", json={"events": batch}).json()
    assert body["accepted"] == 3 and body["rejected"] == 3
    assert {(r["index"], r["field"]) for r in body["rejects"]} == {(3, "item_id"), (4, "event"), (5, "timestamp")}
    assert client.post("/events", json={"events": [{"user_id": "x"}]}).status_code == 422
    deadline = time.time() + 180
    while time.time() < deadline:  # folded in within seconds, no restart (minutes on a busy machine)
        answer = client.get("/recommend/shopper-x", params={"k": 5}).json()
        if not answer["cold_start"]:
            break
        time.sleep(0.5)
    assert not answer["cold_start"] and answer["version"] is not None
    assert not set(items) & {r["item_id"] for r in answer["results"]}  # what they bought is seen now
    from kg.stores import StoreConfig, open_store

    with open_store(StoreConfig.from_location(run.store_location()), read_only=True) as store:
        bought = store.cypher("MATCH (:User {id: 'shopper-x'})-[:PURCHASED]->(p:Product) RETURN p.id AS id")
    assert set(bought["id"]) == set(items)
    deadline = time.time() + 180
    while time.time() < deadline:  # the explanations (a process of their own) follow the new version too
        why = client.get(f"/explain/shopper-x/{items[0]}")
        if why.status_code == 200 and why.json()["paths"]:
            break
        time.sleep(0.5)
    assert why.status_code == 200 and why.json()["paths"][0]["template"] == "direct", why.text


def test_a_reload_during_requests_fails_none(service):
    client, *_ = service
    failures, stop = [], threading.Event()

    def hammer():
        with httpx.Client(base_url=str(client.base_url), headers={"X-API-Key": KEY}, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"/recommend/{USER}", params={"k": 5})
                if r.status_code != 200:
                    failures.append(r.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert client.post("/admin/reload").status_code == 200
        time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
