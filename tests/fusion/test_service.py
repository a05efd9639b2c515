"""``kgrec serve``: a real server process on a free port, called by a real HTTP client.

The run is a tiny one (:func:`fusion.tiny_run.make_tiny_run`) over a real embedded graph
store; the service runs as ``python -m fusion.cli serve`` with an API key.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
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


def test_head_probes_answer(service):
    client, *_ = service
    for probe in ("/health/live", "/health/ready"):  # load balancers probe with HEAD
        response = httpx.head(f"{client.base_url}{probe}")
        assert response.status_code == 200 and response.content == b"", probe


def test_the_schema_and_docs_need_the_key_too(service):
    client, *_ = service
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{client.base_url}{path}").status_code == 401, path
        assert httpx.get(f"{client.base_url}{path}", headers={"X-API-Key": "wrong"}).status_code == 401, path
        assert client.get(path).status_code == 200, path
    assert "/recommend/{user_id}" in client.get("/openapi.json").json()["paths"]
    assert "/openapi.json" in client.get("/docs").text


def test_serve_refuses_a_damaged_run_in_one_line(service, tmp_path):
    _, run, _ = service
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("inbox", "versions", "CURRENT"))
    tables = RunDir(copy).fusion_tables
    data = bytearray(tables.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tables.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "fusion.cli", "serve", "--run", str(copy), "--port", str(free_port())],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kgrec serve: error:") and "tables.pt" in lines[0], lines
    assert not (copy / "inbox").exists()  # refused before the updater started


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


def test_malformed_events_are_422_naming_the_field_never_500(service):
    client, _, dataset = service
    item = str(dataset.items["item_id"].iloc[0])
    for field in ("user_id", "item_id", "event"):  # a lone surrogate: JSON can carry it, UTF-8 cannot encode it
        event = {"user_id": "u", "item_id": item, "event": "purchase", field: "x\ud800y"}
        body = json.dumps({"events": [event]})  # ASCII: the surrogate as the escape \ud800
        assert "\\ud800" in body
        response = client.post("/events", content=body.encode(), headers={"content-type": "application/json"})
        if field == "event":  # an unknown event: rejected by name, as any other
            assert response.status_code == 200 and response.json()["rejects"][0]["field"] == field, response.text
        else:
            assert response.status_code == 422 and response.json()["field"] == field, response.text
    for field in ("timestamp", "value"):  # a boolean is not read as 1
        response = client.post("/events", json={"events": [{"user_id": "u", "item_id": item, "event": "click",
                                                            field: True}]})
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    response = client.post("/events", json={"events": [{"user_id": "a/b", "item_id": item, "event": "click"}]})
    assert response.status_code == 422 and response.json()["field"] == "user_id", response.text
    assert "'/'" in response.text
    assert client.post("/events", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422
    assert httpx.get(f"{client.base_url}/health/live").status_code == 200


def test_ids_with_a_slash_are_addressable(service):
    client, *_ = service
    for path in ("/recommend/a%2Fb", "/recommend/a/b"):  # a user of the trained data may have one
        response = client.get(path, params={"k": 2})
        assert response.status_code == 200 and response.json()["cold_start"], response.text
    assert client.get("/similar/no/such/item").status_code == 404  # an unknown product, not an unknown route
    assert client.get(f"/explain/{USER}/no/such").status_code == 404


def _read_answer(sock: socket.socket) -> str:
    """A whole HTTP answer from ``sock``: its head and ``content-length`` bytes of body (one
    ``recv`` may return the head alone: the body can come in a segment of its own)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return data.decode(errors="replace")
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def test_request_bodies_over_the_limit_are_413(service):
    client, *_ = service
    port = int(client.base_url.port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # announced: refused unread
        sock.sendall(f"POST /events HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json"
                     f"\r\ncontent-length: {200 * 2**20}\r\n\r\n".encode())
        head = _read_answer(sock)
    assert head.startswith("HTTP/1.1 413") and "KGREC_SERVE_MAX_BODY_MB" in head, head

    def chunks():  # not announced (chunked): refused once past the limit
        yield b'{"events": ['
        for _ in range(200):
            yield b" " * 2**16
        yield b"]}"

    with httpx.Client(base_url=str(client.base_url), headers={"X-API-Key": KEY}, timeout=30) as c:
        try:
            response = c.post("/events", content=chunks(), headers={"content-type": "application/json"})
        except httpx.TransportError:  # the server may close the connection before the client has sent all
            response = None
    assert response is None or response.status_code == 413, response.text
    assert client.post("/events", json={"events": []}).status_code == 200  # it serves on


def test_an_answer_is_labelled_with_the_version_that_computed_it():
    from fastapi import HTTPException

    from fusion.service import SWAP_TRIES, on_one_version

    class Swapping:
        """An engine whose version is swapped (a new object) during the first ``swaps`` calls."""

        def __init__(self, swaps: int) -> None:
            self.current, self.swaps, self.calls = object(), swaps, 0

        def recommend(self) -> object:
            answered_by = self.current
            self.calls += 1
            if self.calls <= self.swaps:
                self.current = object()  # Engine.follow swapped in a newer version meanwhile
            return answered_by

    for off_loop in (False, True):
        engine = Swapping(swaps=1)
        answer, version = asyncio.run(on_one_version(engine, engine.recommend, lambda: off_loop))
        assert engine.calls == 2 and answer is version is engine.current
        steady = Swapping(swaps=0)
        assert asyncio.run(on_one_version(steady, steady.recommend, lambda: off_loop)) == (steady.current,) * 2
    always = Swapping(swaps=10**6)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(on_one_version(always, always.recommend, lambda: False))
    assert refused.value.status_code == 503 and always.calls == SWAP_TRIES


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


def test_events_with_a_control_character_in_an_id_are_rejected_one_by_one(service):
    """A user id holding a NUL was accepted and ingested (and printed raw later, ``kgrec
    value``); such an event is rejected on its own now -- index, field, the character by its
    code point, never echoed -- and the others of the batch flow, their rejects at the index
    they were posted at."""
    client, _, dataset = service
    item = str(dataset.items["item_id"].iloc[0])
    batch = [{"user_id": "ctl-ok-1", "item_id": item, "event": "click"},
             {"user_id": "u\u0000x", "item_id": item, "event": "click"},
             {"user_id": "ctl-ok-2", "item_id": f"{item}\u001b[31m", "event": "click"},
             {"user_id": "ctl-ok-2", "item_id": item, "event": "view"},
             {"user_id": "tab\there", "item_id": item, "event": "click"},
             {"user_id": "ctl-ok-3", "item_id": "no-such", "event": "click"},
             {"user_id": "c1\u0085", "item_id": item, "event": "click"}]
    response = client.post("/events", json={"events": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 5)
    rejects = {r["index"]: (r["field"], r["reason"]) for r in body["rejects"]}
    assert rejects[1] == ("user_id", "control character in an id: U+0000 at position 2")
    assert rejects[2] == ("item_id", f"control character in an id: U+001B at position {len(item) + 1}")
    assert rejects[4] == ("user_id", "control character in an id: U+0009 at position 4")
    assert rejects[6] == ("user_id", "control character in an id: U+0085 at position 3")
    assert rejects[5][0] == "item_id" and "unknown product" in rejects[5][1]  # put's reject, at its posted index
    assert "\u0000" not in response.text and "\\u0000" not in response.text


@pytest.mark.parametrize("method, path, query, field", [
    ("GET", "/recommend/{user}", "k=3&k=5", "k"),
    ("GET", "/recommend/{user}", "weights=ctr%3D1&weights=cvr%3D1", "weights"),
    ("GET", "/recommend/{user}", "k=3&explain=true&explain=false", "explain"),
    ("GET", "/search", "q=shoes&q=mat", "q"),
    ("GET", "/search", "q=a%20gift&user_id={user}&user_id=other", "user_id"),
    ("GET", "/similar/{item}", "k=1&k=2", "k"),
    ("GET", "/explain/{user}/{item}", "max_paths=1&max_paths=2", "max_paths"),
    ("POST", "/events", "x=1&x=1", "x"),
    ("POST", "/admin/reload", "now=1&now=2", "now"),
])
def test_a_query_parameter_given_twice_is_422_naming_it(service, method, path, query, field):
    """``k=3&k=5`` answered 5 results, ``q=shoes&q=mat`` searched "mat": the last value won
    without a word. Every route now answers 422 naming the parameter (after the key check:
    without the key it is still a 401); given once, the same request is answered."""
    client, _, dataset = service
    item = str(dataset.items["item_id"].iloc[0])
    url = f"{path.format(user=USER, item=item)}?{query.format(user=USER)}"
    body = {"json": {"events": []}} if method == "POST" and path == "/events" else {}
    response = client.request(method, url, **body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and f"'{field}' given 2 times" in response.text
    assert httpx.request(method, f"{client.base_url}{url}", **body).status_code == 401  # no key: 401 first
    once = "&".join({p.split("=")[0]: p for p in reversed(query.format(user=USER).split("&"))}.values())  # firsts
    if path != "/admin/reload":  # a reload now swaps versions: not done here
        assert client.request(method, f"{path.format(user=USER, item=item)}?{once}", **body).status_code == 200


def test_explanations_list_their_paths_by_score_as_the_python_api_does(service):
    """The paths of ``/explain`` and of ``/recommend?explain=true`` come by score, as the
    Python API's (``Engine.explain``) and ``kgrec explain``'s do (one function, kg.explain)."""
    client, run, _ = service
    from fusion.engine import Engine

    recs = client.get(f"/recommend/{USER}", params={"k": 5, "explain": "true"}).json()["results"]
    assert recs and all(r["explanation"] is not None for r in recs)
    with Engine.open(run.path) as engine:
        for r in recs:
            scores = [p["score"] for p in r["explanation"]["paths"]]
            assert scores == sorted(scores, reverse=True), r["explanation"]
            why = client.get(f"/explain/{USER}/{r['item_id']}", params={"max_paths": 8}).json()
            local = engine.explain(USER, r["item_id"], max_paths=8)
            assert [(p["template"], p["score"], p["sentence"]) for p in why["paths"]] == \
                [(p.template, p.score, p.sentence) for p in local.paths]
            assert [p["score"] for p in why["paths"]] == sorted((p["score"] for p in why["paths"]), reverse=True)
