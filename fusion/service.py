"""The HTTP service over one run folder: ``kgrec serve``.

FastAPI + uvicorn; pydantic models for every request and response; OpenAPI docs at
``/docs``. Routes (Gorse-like):

=================================  ============================================================
``GET  /recommend/{user_id}``      top ``k`` products (``weights``, ``category``, ``brand``,
                                   ``min_price``, ``max_price``, ``include_seen``, ``explain``)
``GET  /search``                   ``q`` (at most 1,000 characters), ``user_id``, ``k``, filters
``GET  /similar/{item_id}``        products like a product
``GET  /explain/{user_id}/{item}`` knowledge-graph paths (needs the run's graph store)
``POST /events``                   a batch of interactions (the canonical schema: user_id,
                                   item_id, event, value, timestamp); answers accepted /
                                   rejected counts, a reason per rejected event, the time taken
``POST /admin/reload``             swap to the run's newest version now
``GET  /health/live``              the process answers
``GET  /health/ready``             a run is loaded (503 before)
=================================  ============================================================

Accepted events are written, durably and atomically, to the run's inbox
(:class:`fusion.update.EventInbox`) before the answer; the updater (a process of its own
under ``kgrec serve``, :class:`fusion.update.Updater`) appends them to the graph store and
folds the affected users in (:func:`fusion.update.update_run`) as a new version of the
run. Every worker follows the run's versions in a background thread
(:meth:`fusion.engine.Engine.follow`): a new version is loaded, checked and prepared off
the request path and swapped in by one reference assignment, so no request waits for a
load and none fails during a swap.

How a request runs (measured with ``bench/serve_latency.py``): ``/recommend``,
``/similar`` and ``/search`` for a query seen lately are ``async`` routes that answer on the
event loop (a few ms of torch: a hop to the thread pool and back cost more than that, and
threads of one process only share its GIL); ``/explain``, a recommendation with
explanations and a search for a new query (the text encoder, ~10 ms) run on the thread
pool, so the loop goes on serving while the graph store or the encoder works; over the
embedded store the explanations come from a child process of the worker
(:mod:`fusion.explainer`: ladybug prepares statements holding the GIL). The routes
answer with dicts serialised by orjson (:class:`FastJSON`), shaped like their documented
response models; building and validating a pydantic model per result was most of a
request's time. ``--workers N`` processes share the port (one per core).

Bad input never answers 500: a malformed request (unknown weight or filter, ``k`` out of
range, an empty or too long query, malformed events) is a 422 naming the field, an
unknown item a 404. With ``KGREC_API_KEY`` set, every route but the health probes needs
the header ``X-API-Key``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hmac
import os
import sys
import threading
import time
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fusion.ranking.scoring import parse_weights
from kg.errors import InvalidRequestError, KgrecError, StoreError, UnknownIdError

MAX_K = 1_000
MAX_EVENTS = 10_000  #: events per POST /events
WORKER_HEALTHCHECK_SECONDS = 120  #: how long a worker may take to answer uvicorn's health ping
SWITCH_INTERVAL = 0.001  #: seconds a thread holds the GIL before another may take it (Python's default 0.005)


# ------------------------------------------------------------------ response / request models

class PathNodeOut(BaseModel):
    label: str
    id: str
    name: str


class PathOut(BaseModel):
    template: str
    nodes: list[PathNodeOut]
    rel_types: list[str]
    score: float
    sentence: str


class ExplanationOut(BaseModel):
    user_id: str
    item_id: str
    sentence: str
    score: float
    paths: list[PathOut]


class RecommendationOut(BaseModel):
    item_id: str
    title: str
    score: float = Field(description="ranking score (log scale; higher is better)")
    price: float | None = None
    objectives: dict[str, float] = Field(
        description="ctr, cvr, ctcvr, value, relevance, exposure (shops with impressions; or gnn, text for similar)")
    explanation: ExplanationOut | None = None


class ResultsOut(BaseModel):
    results: list[RecommendationOut]
    version: str | None = Field(description="the run version that answered (None: the trained run)")
    cold_start: bool = False
    took_ms: float


class EventIn(BaseModel):
    """One interaction, in the canonical interactions schema (``loaders.dataset``)."""

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    event: str = Field(description="impression | view | click | cart | purchase | rating | review "
                                   "(or a synonym the CSV reader takes: addtocart, transaction, pageview …)")
    value: float = 1.0
    timestamp: int | None = Field(default=None, description="Unix seconds; default: now")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(max_length=MAX_EVENTS)


class RejectOut(BaseModel):
    index: int
    field: str | None
    reason: str


class EventsOut(BaseModel):
    accepted: int
    rejected: int
    rejects: list[RejectOut]
    took_ms: float


class ReloadOut(BaseModel):
    version: str | None
    swapped: bool


class FastJSON(Response):
    """A JSON answer serialised by orjson from plain dicts and lists. The hot routes build
    their answer as dicts shaped like their ``response_model`` (which still documents them
    in OpenAPI): FastAPI passes a returned ``Response`` through as it is, so no pydantic
    model is built and validated per result (that was most of a request's time)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# ------------------------------------------------------------------ the app

def create_app(run_dir, *, location: dict | None = None, inbox: bool = True, updater: bool = False,
               poll_seconds: float = 0.5, follow_seconds: float = 0.2,
               explain_process: bool | None = None) -> FastAPI:
    """The service over ``run_dir``. ``location``: the graph store for explanations and
    events (a ``GraphStore.location()`` record; default: the one the run remembers);
    ``updater``: also run the events updater as a thread of this process (``kgrec serve``
    runs it as a process of its own instead: :func:`serve`); ``explain_process``: answer
    explanations from a child process (:mod:`fusion.explainer`; default: when the store is
    the embedded one, whose statement preparation holds the GIL)."""
    from fusion.engine import Engine
    from fusion.explainer import ExplainerProcess
    from fusion.update import EventInbox, Updater

    state: dict[str, Any] = {"engine": None, "updater": None, "explainer": None}
    api_key = os.environ.get("KGREC_API_KEY", "")
    events_inbox = EventInbox(run_dir) if inbox else None
    lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        with lock:
            state["engine"] = Engine.open(run_dir, location=location)
            own = explain_process
            if own is None:
                own = (state["engine"].location or {}).get("kind") == "embedded"
            if own:
                explainer = ExplainerProcess(run_dir, location, follow_seconds)
                try:
                    explainer.start()
                except (KgrecError, OSError) as exc:  # serve anyway; explanations from this process
                    print(f"kgrec serve: explanations stay in the worker ({exc})", file=sys.stderr, flush=True)
                else:
                    state["explainer"] = explainer
                    state["engine"].explain_with(explainer)
            warm_up(state["engine"])
            gc.freeze()  # see "cyclic garbage collector" above warm_up()
            state["engine"].follow(poll_seconds=follow_seconds, on_swap=gc.freeze)
            if updater and events_inbox is not None:
                state["updater"] = Updater(run_dir, state["engine"], events_inbox, poll_seconds=poll_seconds,
                                           location=location)
                state["updater"].start()
        yield
        if state["updater"] is not None:
            state["updater"].stop()
        state["engine"].close()
        if state["explainer"] is not None:
            state["explainer"].close()

    app = FastAPI(title="kgrec", description="Knowledge-graph search and recommendation over a trained run.",
                  version="1", lifespan=lifespan)

    def engine() -> Engine:
        e = state["engine"]
        if e is None:
            raise HTTPException(503, "the run is not loaded yet")
        return e

    async def authorised(x_api_key: str | None = Header(default=None)) -> None:
        if api_key and not hmac.compare_digest(x_api_key or "", api_key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    @app.exception_handler(InvalidRequestError)
    async def invalid(_: Request, exc: InvalidRequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)

    @app.exception_handler(UnknownIdError)
    async def unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(KgrecError)
    async def kgrec_error(_: Request, exc: KgrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # ---------------------------------------------------------------- health
    @app.get("/health/live")
    async def live() -> dict:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        e = state["engine"]
        if e is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "version": e.version, "users": len(e.user_index),
                             "items": len(e.catalogue.ids)})

    # ---------------------------------------------------------------- queries
    def filters(category, brand, min_price, max_price) -> dict:
        return {k: v for k, v in (("category", category), ("brand", brand), ("min_price", min_price),
                                  ("max_price", max_price)) if v is not None}

    @app.get("/recommend/{user_id}", response_model=ResultsOut, dependencies=[Depends(authorised)])
    async def recommend(user_id: str = Path(min_length=1, max_length=200), k: int = Query(10, ge=1, le=MAX_K),
                        weights: str | None = Query(
                            None, description="e.g. ctr=1,cvr=1,value=0.5 (default: ctr=1,cvr=1,exposure=0.5)"),
                        category: str | None = None, brand: str | None = None,
                        min_price: float | None = None, max_price: float | None = None,
                        include_seen: bool = False, explain: bool = False) -> Response:
        t = time.perf_counter()
        e = engine()
        call = functools.partial(e.recommend, user_id, k=k, weights=parse_weights(weights),
                                 exclude_seen=not include_seen,
                                 filters=filters(category, brand, min_price, max_price) or None, explain=explain)
        recs = await run_in_threadpool(call) if explain else call()  # explanations wait for the graph store
        return results_json(recs, e.version, not e.knows_user(user_id), t)

    @app.get("/search", response_model=ResultsOut, dependencies=[Depends(authorised)])
    async def search(q: str = Query(min_length=1), user_id: str | None = None, k: int = Query(10, ge=1, le=MAX_K),
                     weights: str | None = None, category: str | None = None, brand: str | None = None,
                     min_price: float | None = None, max_price: float | None = None) -> Response:
        t = time.perf_counter()
        e = engine()
        call = functools.partial(e.search, q, user_id=user_id, k=k, weights=parse_weights(weights),
                                 filters=filters(category, brand, min_price, max_price) or None)
        # a query not seen lately is encoded by the text encoder (~10 ms): off the event loop
        recs = call() if e.has_query(q) else await run_in_threadpool(call)
        return results_json(recs, e.version, user_id is not None and not e.knows_user(user_id), t)

    @app.get("/similar/{item_id}", response_model=ResultsOut, dependencies=[Depends(authorised)])
    async def similar(item_id: str = Path(min_length=1, max_length=200), k: int = Query(10, ge=1, le=MAX_K),
                      category: str | None = None, brand: str | None = None,
                      min_price: float | None = None, max_price: float | None = None) -> Response:
        t = time.perf_counter()
        e = engine()
        recs = e.similar(item_id, k=k, filters=filters(category, brand, min_price, max_price) or None)
        return results_json(recs, e.version, False, t)

    @app.get("/explain/{user_id}/{item_id}", response_model=ExplanationOut, dependencies=[Depends(authorised)])
    def explain(user_id: str = Path(min_length=1, max_length=200), item_id: str = Path(min_length=1, max_length=200),
                max_paths: int = Query(5, ge=1, le=50)) -> Response:
        # a plain def: FastAPI runs it on its thread pool, so the event loop goes on serving
        # while the graph store answers (its query releases the GIL)
        return FastJSON(explanation_dict(engine().explain(user_id, item_id, max_paths)))

    # ---------------------------------------------------------------- writes
    @app.post("/events", response_model=EventsOut, dependencies=[Depends(authorised)])
    def events(batch: EventsIn) -> EventsOut:
        t = time.perf_counter()
        if events_inbox is None:
            raise HTTPException(503, "this service takes no events (no inbox)")
        e = engine()
        accepted, rejects = events_inbox.put([ev.model_dump() for ev in batch.events], e)
        return EventsOut(accepted=accepted, rejected=len(rejects),
                         rejects=[RejectOut(index=i, field=f, reason=r) for i, f, r in rejects],
                         took_ms=(time.perf_counter() - t) * 1e3)

    @app.post("/admin/reload", response_model=ReloadOut, dependencies=[Depends(authorised)])
    def reload() -> ReloadOut:
        e = state["engine"]
        if e is None:
            raise HTTPException(503, "the run is not loaded yet")
        swapped = e.reload()
        return ReloadOut(version=e.version, swapped=swapped)

    return app


def explanation_dict(why) -> dict:
    """A :class:`kg.explain.Explanation` as the JSON of :class:`ExplanationOut`."""
    return {"user_id": why.user_id, "item_id": why.item_id, "sentence": why.sentence, "score": why.score,
            "paths": [{"template": p.template, "nodes": [{"label": n.label, "id": n.id, "name": n.name} for n in p.nodes],
                       "rel_types": list(p.rel_types), "score": p.score, "sentence": p.sentence} for p in why.paths]}


def rec_dict(r) -> dict:
    """A :class:`fusion.engine.Recommendation` as the JSON of :class:`RecommendationOut`."""
    return {"item_id": r.item_id, "title": r.title, "score": r.score, "price": r.price, "objectives": r.objectives,
            "explanation": explanation_dict(r.explanation) if r.explanation is not None else None}


def results_json(recs, version: str | None, cold_start: bool, started: float) -> FastJSON:
    """The JSON of :class:`ResultsOut`."""
    return FastJSON({"results": [rec_dict(r) for r in recs], "version": version, "cold_start": cold_start,
                     "took_ms": (time.perf_counter() - started) * 1e3})


# Python's cyclic garbage collector: a worker holds ~480,000 objects once the run, torch,
# transformers and the store are loaded, and a full (generation 2) collection walks them
# all: ~240 ms (measured on the demo run) during which the worker answers nothing, and at a
# few hundred requests/s the young objects of the requests trigger one every so often. So
# each worker freezes what it has loaded (``gc.freeze()``: later collections skip those
# objects, ~0 ms; refcounting still frees them) after its warm-up and after every version
# swap. (The explanation view reopened after each swap stalled the loop too: explanations
# over the embedded store come from a child process, :mod:`fusion.explainer`.)


def warm_up(engine) -> None:
    """Load before the first request what the first search / explanation would load (the
    text encoder, the graph store's read-only view) -- seconds, which a request must not wait."""
    from kg.errors import RunFolderError

    with contextlib.suppress(RunFolderError, OSError):
        engine.encode_queries(["warm up"])
    if not engine.explains_elsewhere:
        with contextlib.suppress(StoreError, OSError):
            engine.graph()


def app_from_env() -> FastAPI:
    """The app each ``kgrec serve`` worker runs (its settings from the environment the
    command set: ``KGREC_SERVE_RUN``, ``KGREC_SERVE_STORE`` -- a store location as JSON;
    ``KGREC_SERVE_EXPLAIN_PROCESS``: 1 / 0 to answer explanations from a child process or
    not, default: for the embedded store, see :mod:`fusion.explainer`)."""
    import json

    import torch

    # workers (--workers) and the thread pool already run requests in parallel: torch's own
    # intra-op threads on top of them only oversubscribe the cores (KGREC_SERVE_TORCH_THREADS)
    torch.set_num_threads(int(os.environ.get("KGREC_SERVE_TORCH_THREADS", "1")))
    # the event loop gives the GIL back to a background thread (a reload, an explanation, a
    # new query's encoding) at every torch op; with Python's 5 ms switch interval each
    # re-take can wait 5 ms behind it, so a request would pay that many times over
    sys.setswitchinterval(SWITCH_INTERVAL)
    run = os.environ["KGREC_SERVE_RUN"]
    location = json.loads(os.environ["KGREC_SERVE_STORE"]) if os.environ.get("KGREC_SERVE_STORE") else None
    own = os.environ.get("KGREC_SERVE_EXPLAIN_PROCESS", "")  # 1 / 0; default: for the embedded store
    return create_app(run, location=location, explain_process=None if own == "" else own != "0")


def serve(run_dir, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> int:
    """Run the service (uvicorn, ``workers`` processes) and the events updater (a process of
    its own, :func:`fusion.update.main`) until interrupted."""
    import subprocess

    import uvicorn

    from kg.run_dir import RunDir

    run = RunDir(run_dir)
    run.need(run.fusion_model, "fusion")
    os.environ["KGREC_SERVE_RUN"] = str(run.path)
    updater = subprocess.Popen([sys.executable, "-m", "fusion.update", str(run.path),
                                os.environ.get("KGREC_SERVE_STORE", "")])
    try:
        # keep-alive 30 s, not uvicorn's 5: with the default, bench/serve_latency.py saw 4 of
        # 10,000 requests fail in transit (a closed keep-alive connection, likely while a worker
        # was busy loading a new run version); with 30 s, none
        # a worker answers uvicorn's health pings from a thread, which starves while the
        # worker imports torch and loads the run (the import holds the GIL): with the
        # default 5 s, a busy machine saw every worker killed and restarted, forever
        uvicorn.run("fusion.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                    timeout_keep_alive=30, timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
                    log_level=os.environ.get("KGREC_SERVE_LOG", "warning"))
    finally:
        updater.terminate()
        updater.wait(timeout=60)
    return 0
