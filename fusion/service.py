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
``GET|HEAD /health/live``          the process answers
``GET|HEAD /health/ready``         a run is loaded (503 before)
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
range, an empty or too long query, a query parameter given twice, malformed events) is a
422 naming the field, an unknown item a 404; the 422 never echoes the input (a string JSON
can carry but UTF-8 cannot encode, a lone surrogate, made the default handler fail with a
500). A request body
over ``KGREC_SERVE_MAX_BODY_MB`` (default :data:`MAX_BODY_MB`) is a 413, read no further.
With ``KGREC_API_KEY`` set, every route but the health probes (which answer ``GET`` and
``HEAD``) needs the header ``X-API-Key`` -- the API's schema and docs (``/openapi.json``,
``/docs``, ``/redoc``) too.

Ids: a product id may hold ``/`` (``/similar/{item_id}`` and ``/explain/{user}/{item_id}``
take the rest of the path); so may a user id of the trained data (``/recommend/{user_id}``),
but ``POST /events`` refuses a user id with ``/``: ``/explain/{user_id}/{item_id}`` could
not tell where such a user id ends. An event whose user or product id holds a control
character (NUL, tab, newline …, as the loaders refuse them) is rejected on its own, with
its index, field and reason, as an event of an unknown product is (:meth:`EventInbox.put
<fusion.update.EventInbox.put>`).
A query parameter given twice (``k=3&k=5``) is a 422 naming it (:func:`single_query_values`;
FastAPI took the last value). An answer's ``version`` and ``cold_start`` are those of the
version that computed it, also when a new version is swapped in meanwhile
(:func:`on_one_version`).
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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fusion.ranking.scoring import parse_weights
from kg.errors import InvalidRequestError, KgrecError, StoreError, UnknownIdError

if TYPE_CHECKING:
    from fusion.engine import Engine, EngineVersion

T = TypeVar("T")

MAX_K = 1_000
MAX_EVENTS = 10_000  #: events per POST /events
WORKER_HEALTHCHECK_SECONDS = 120  #: how long a worker may take to answer uvicorn's health ping
SWITCH_INTERVAL = 0.001  #: seconds a thread holds the GIL before another may take it (Python's default 0.005)
#: request body limit (MB; ``KGREC_SERVE_MAX_BODY_MB`` overrides it): a full batch of
#: :data:`MAX_EVENTS` events with 200-character ids is ~5 MB; without a limit any body was read whole
MAX_BODY_MB = 8.0
#: computations of one answer before a 503 when a version swap overlaps every one (:func:`on_one_version`)
SWAP_TRIES = 4


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

    @field_validator("value", "timestamp", mode="before")
    @classmethod
    def no_boolean(cls, v: Any) -> Any:
        """Refuse ``true`` / ``false``: pydantic reads them as 1 / 0 (a purchase on
        1970-01-01), never what a client meant."""
        if isinstance(v, bool):
            raise ValueError("a boolean is not a number here")
        return v

    @field_validator("user_id")
    @classmethod
    def addressable(cls, v: str) -> str:
        """Refuse a user id with ``/``: ``GET /explain/{user_id}/{item_id}`` could not tell
        where it ends (a product id may hold ``/``: it is the path's last part)."""
        if "/" in v:
            raise ValueError("a user id must not contain '/' (GET /explain/{user_id}/{item_id} could not address it)")
        return v


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

    # with a key, the schema and docs need it too (own routes below): the default ones answer anybody
    docs = {} if not api_key else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title="kgrec", description="Knowledge-graph search and recommendation over a trained run.",
                  version="1", lifespan=lifespan, **docs)
    app.add_middleware(BodyLimit, limit=max_body_bytes())

    def engine() -> Engine:
        e = state["engine"]
        if e is None:
            raise HTTPException(503, "the run is not loaded yet")
        return e

    async def authorised(x_api_key: str | None = Header(default=None)) -> None:
        if api_key and not hmac.compare_digest(x_api_key or "", api_key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    #: every data route's dependencies: the key first (a 401 before anything is read), then
    #: one value per query parameter (:func:`single_query_values`)
    guarded = [Depends(authorised), Depends(single_query_values)]

    if api_key:
        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorised)])
        async def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorised)])
        async def swagger() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="kgrec - docs")

        @app.get("/redoc", include_in_schema=False, dependencies=[Depends(authorised)])
        async def redoc() -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title="kgrec - docs")

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

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
    # HEAD too: load balancers probe with it (uvicorn sends the headers, not the body)
    @app.api_route("/health/live", methods=["GET", "HEAD"])
    async def live() -> dict:
        return {"status": "ok"}

    @app.api_route("/health/ready", methods=["GET", "HEAD"])
    async def ready() -> JSONResponse:
        e = state["engine"]
        if e is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        v = e.current  # one version for all three (a swap may come between two reads of e)
        return JSONResponse({"status": "ready", "version": v.name, "users": len(v.user_index),
                             "items": len(v.catalogue.ids)})

    # ---------------------------------------------------------------- queries
    def filters(category, brand, min_price, max_price) -> dict:
        return {k: v for k, v in (("category", category), ("brand", brand), ("min_price", min_price),
                                  ("max_price", max_price)) if v is not None}

    # ``:path``: an id may hold "/" (a client sends it as %2F, which the server decodes first)
    @app.get("/recommend/{user_id:path}", response_model=ResultsOut, dependencies=guarded)
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
        # explanations wait for the graph store: off the event loop
        recs, v = await on_one_version(e, call, lambda: explain)
        return results_json(recs, v.name, not v.knows_user(user_id), t)

    @app.get("/search", response_model=ResultsOut, dependencies=guarded)
    async def search(q: str = Query(min_length=1), user_id: str | None = None, k: int = Query(10, ge=1, le=MAX_K),
                     weights: str | None = None, category: str | None = None, brand: str | None = None,
                     min_price: float | None = None, max_price: float | None = None) -> Response:
        t = time.perf_counter()
        e = engine()
        call = functools.partial(e.search, q, user_id=user_id, k=k, weights=parse_weights(weights),
                                 filters=filters(category, brand, min_price, max_price) or None)
        # a query not seen lately is encoded by the text encoder (~10 ms): off the event loop
        recs, v = await on_one_version(e, call, lambda: not e.has_query(q))
        return results_json(recs, v.name, user_id is not None and not v.knows_user(user_id), t)

    @app.get("/similar/{item_id:path}", response_model=ResultsOut, dependencies=guarded)
    async def similar(item_id: str = Path(min_length=1, max_length=200), k: int = Query(10, ge=1, le=MAX_K),
                      category: str | None = None, brand: str | None = None,
                      min_price: float | None = None, max_price: float | None = None) -> Response:
        t = time.perf_counter()
        e = engine()
        call = functools.partial(e.similar, item_id, k=k,
                                 filters=filters(category, brand, min_price, max_price) or None)
        recs, v = await on_one_version(e, call, lambda: False)
        return results_json(recs, v.name, False, t)

    @app.get("/explain/{user_id}/{item_id:path}", response_model=ExplanationOut, dependencies=guarded)
    def explain(user_id: str = Path(min_length=1, max_length=200), item_id: str = Path(min_length=1, max_length=200),
                max_paths: int = Query(5, ge=1, le=50)) -> Response:
        # a plain def: FastAPI runs it on its thread pool, so the event loop goes on serving
        # while the graph store answers (its query releases the GIL)
        return FastJSON(explanation_dict(engine().explain(user_id, item_id, max_paths)))

    # ---------------------------------------------------------------- writes
    @app.post("/events", response_model=EventsOut, dependencies=guarded)
    def events(batch: EventsIn) -> EventsOut:
        t = time.perf_counter()
        if events_inbox is None:
            raise HTTPException(503, "this service takes no events (no inbox)")
        e = engine()
        accepted, rejects = events_inbox.put([ev.model_dump() for ev in batch.events], e)
        return EventsOut(accepted=accepted, rejected=len(rejects),
                         rejects=[RejectOut(index=i, field=f, reason=r) for i, f, r in rejects],
                         took_ms=(time.perf_counter() - t) * 1e3)

    @app.post("/admin/reload", response_model=ReloadOut, dependencies=guarded)
    def reload() -> ReloadOut:
        e = state["engine"]
        if e is None:
            raise HTTPException(503, "the run is not loaded yet")
        swapped = e.reload()
        return ReloadOut(version=e.version, swapped=swapped)

    return app


async def single_query_values(request: Request) -> None:
    """A dependency of every data route: a query parameter given more than once
    (``?k=3&k=5``) is a 422 naming it, as any malformed parameter is -- FastAPI reads the
    last value of a repeated parameter, so ``k=3&k=5`` answered 5 results without a word,
    and no route takes a list. Answered in the shape of :func:`validation_body` (never
    echoing the values)."""
    params = request.query_params
    if len(params) == len(params.multi_items()):  # the usual case: no name twice
        return
    counts: dict[str, int] = {}
    for name, _ in params.multi_items():
        counts[name] = counts.get(name, 0) + 1
    raise RequestValidationError([
        {"loc": ("query", name), "msg": f"query parameter {name!r} given {n} times: give it once",
         "type": "repeated_parameter"} for name, n in counts.items() if n > 1])


async def on_one_version(engine: Engine, call: Callable[[], T], off_loop: Callable[[], bool]
                         ) -> tuple[T, EngineVersion]:
    """``call()`` (a query of ``engine``; on the thread pool when ``off_loop()``) and the
    :class:`fusion.engine.EngineVersion` that answered it, for the answer's ``version`` and
    ``cold_start``. The engine's query runs on the version current when it starts, but
    ``Engine.follow`` may swap in another before the route reads ``engine.version`` again:
    the old version's answer went out under the new version's name (and the new version's
    knowledge of the user). A swap installs a new object, never an old one again, so when
    ``engine.current`` is the same object before and after the call, that version answered;
    otherwise the call runs again, at most :data:`SWAP_TRIES` times (swaps are seconds
    apart), then a 503."""
    for _ in range(SWAP_TRIES):
        before = engine.current
        out = await run_in_threadpool(call) if off_loop() else call()
        if engine.current is before:
            return out, before
    raise HTTPException(503, f"the run's version changed during each of {SWAP_TRIES} tries; try again")


def encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates, which JSON's ``\\ud800``
    escapes can carry) written as backslash escapes: the answer can always be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_body(errors: Sequence[Mapping[str, Any]]) -> dict:
    """The 422 answer for pydantic's ``errors`` of a request: where (``loc``), what
    (``msg``, ``type``) and ``field``, the first error's field name (as the engine's own
    422s name it) -- never the ``input``: FastAPI's default handler echoed it, and a lone
    surrogate in it made that answer fail to encode (a 500 and a traceback)."""
    detail = [{"loc": [encodable(p) if isinstance(p, str) else p for p in err.get("loc", ())],
               "msg": encodable(str(err.get("msg", ""))), "type": encodable(str(err.get("type", "")))}
              for err in errors]
    names = [p for p in detail[0]["loc"] if isinstance(p, str)] if detail else []
    return {"detail": detail, "field": names[-1] if names else None}


def max_body_bytes() -> int:
    """The request body limit, in bytes: ``KGREC_SERVE_MAX_BODY_MB`` (default :data:`MAX_BODY_MB`)."""
    raw = os.environ.get("KGREC_SERVE_MAX_BODY_MB", "")
    try:
        mb = float(raw) if raw else MAX_BODY_MB
    except ValueError:
        raise InvalidRequestError(f"KGREC_SERVE_MAX_BODY_MB={raw!r} is not a number of MB",
                                  "KGREC_SERVE_MAX_BODY_MB") from None
    if not mb > 0:
        raise InvalidRequestError(f"KGREC_SERVE_MAX_BODY_MB={raw!r}: the limit must be above 0",
                                  "KGREC_SERVE_MAX_BODY_MB")
    return int(mb * 1024 * 1024)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413. A ``Content-Length``
    over it is refused before anything is read; a body sent without one (chunked) is
    counted as it arrives and refused when it passes the limit -- so no request holds more
    than ``limit`` bytes of body in memory (before, a 200 MB body was read whole)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def too_large(self) -> str:
        """The 413's message."""
        return f"the request body is over {self.limit:,} bytes (KGREC_SERVE_MAX_BODY_MB)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": self.too_large()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # FastAPI passes an HTTPException from the body read on as it is
                    raise HTTPException(413, self.too_large())
            return message

        await self.app(scope, counted, send)


def explanation_dict(why) -> dict:
    """A :class:`kg.explain.Explanation` as the JSON of :class:`ExplanationOut`."""
    return {"user_id": why.user_id, "item_id": why.item_id, "sentence": why.sentence, "score": why.score,
            "paths": [{"template": p.template,
                       "nodes": [{"label": n.label, "id": n.id, "name": n.name} for n in p.nodes],
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
    its own, :func:`fusion.update.main`) until interrupted.

    The run's served version is loaded and checked here first (and let go: each worker
    loads its own): a damaged or unfinished run is refused by a :class:`kg.errors.KgrecError`
    that the CLI prints as one line -- raised inside uvicorn's startup, it came wrapped in
    uvicorn's traceback, and the updater had been started for nothing."""
    import subprocess

    import uvicorn

    from fusion.engine import EngineVersion
    from kg.run_dir import RunDir

    run = RunDir(run_dir)
    run.need(run.fusion_model, "fusion")
    max_body_bytes()  # a malformed KGREC_SERVE_MAX_BODY_MB is refused here, in one line
    EngineVersion.load(run.serving())  # what Engine.open loads (every file against its manifest); dropped
    gc.collect()
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
