"""Explanations answered by a process of their own (the HTTP service over the embedded store).

Why a process: the embedded store (ladybug) prepares a statement while holding Python's
GIL, and the explanation statement (a ``UNION ALL`` of one part per template) takes ~110 ms
to prepare on a 2-core machine (~250 ms when it had one part per template and interaction
type). A read-only view sees the writes of other processes only once reopened, so a
serving worker reopens it after every run version the updater writes, and the first
explanation on the new view prepared the statement again: ~200 ms in which the worker's
event loop answered nothing (``bench/serve_latency.py``: /recommend p99 of 200--400 ms at
300 requests/s, p50 4--7 ms). In a process of its own the
prepare stalls explanations only, and at a lower CPU priority (:data:`NICENESS`) the
explanations (~10 ms of CPU each on the demo run, against ~4 ms for a recommendation) wait
for the cores while the workers' other requests need them.

:class:`ExplainerProcess` starts ``python -m fusion.explainer RUN [STORE]``, which opens an
:class:`~fusion.engine.Engine` over the run, follows its versions (:meth:`Engine.follow`)
and prepares the statement on each new view before it swaps it in (one explanation of a
known pair, in the follower thread at a still lower priority), then answers requests read
from its stdin. Messages both ways are pickles behind an 8-byte length; one request at a
time (a lock).
:meth:`ExplainerProcess.explain_many` is what :meth:`Engine.explain_many` calls once
:meth:`Engine.explain_with` set it. A child that died is started again by the next call
(which fails with :class:`~kg.errors.StoreError`, naming its exit status).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO, Sequence

from kg.errors import InvalidRequestError, KgrecError, StoreError, UnknownIdError

#: the child's CPU priority (``nice``): explanations yield to the workers' other requests
#: (``bench/serve_latency.py``, /recommend p99 at 300 requests/s, measured while the load
#: generator's own GC pauses still counted: 34--46 ms with the child at 0, 23--27 ms at 5,
#: 24 ms at 10 with slower explanations: p50 48 against 34 ms)
NICENESS = 5
#: the priority of the child's thread that opens and prepares the view of each new version
PREPARE_NICENESS = 10
#: seconds the child may take to load the run and warm up before the service gives up on it
START_SECONDS = 300.0
_HEADER = struct.Struct("<Q")
_ERRORS: dict[str, type[KgrecError]] = {c.__name__: c for c in (UnknownIdError, InvalidRequestError, StoreError,
                                                                 KgrecError)}


def send(stream: BinaryIO, message: Any) -> None:
    """Write one message (a pickle behind its length) and flush."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    """Read one message; EOFError when the other side closed the pipe."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the pipe closed")
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the pipe closed inside a message")
    return pickle.loads(data)  # noqa: S301 - our own child process, over its own pipe


class ExplainerProcess:
    """A child process that answers :meth:`explain_many` for the run at ``run_dir`` over the
    graph store at ``location`` (a ``GraphStore.location()`` record; default: the run's).
    Started by :meth:`start` (waits until the child has loaded and warmed up), stopped by
    :meth:`close`; safe to call from several threads (one request at a time)."""

    def __init__(self, run_dir, location: dict | None = None, follow_seconds: float = 0.2) -> None:
        self.run_dir = str(run_dir)
        self.location = location
        self.follow_seconds = follow_seconds
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        args = [sys.executable, "-m", "fusion.explainer", self.run_dir, json.dumps(self.location or {}),
                str(self.follow_seconds)]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            ready = self._call_unlocked(None, timeout=START_SECONDS)
        except BaseException:
            self._stop()
            raise
        if ready != "ready":
            self._stop()
            raise StoreError(f"the explanation process answered {ready!r} instead of 'ready'")

    @property
    def pid(self) -> int | None:
        """The child's process id (None: not running)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def explain_many(self, user_id: str, item_ids: Sequence[str], max_paths: int = 5, strict: bool = True) -> list:
        """:meth:`fusion.engine.Engine.explain_many`, answered by the child."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._call_unlocked((str(user_id), [str(i) for i in item_ids], int(max_paths), bool(strict)))

    def _call_unlocked(self, request, timeout: float | None = None):
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        try:
            if timer is not None:
                timer.start()
            if request is not None:
                send(proc.stdin, request)
            answer = receive(proc.stdout)
        except (EOFError, OSError):
            code = proc.wait(timeout=5)
            self._proc = None
            raise StoreError(f"the explanation process stopped (exit status {code}); the next request starts "
                             "it again") from None
        finally:
            if timer is not None:
                timer.cancel()
        if answer[0] == "ok":
            return answer[1]
        _, kind, message, field = answer
        if kind == InvalidRequestError.__name__:
            raise InvalidRequestError(message, field)
        raise _ERRORS.get(kind, KgrecError)(message)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # the child's loop ends at the end of its input
            except OSError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def warm_in_background(store, version) -> None:
    """:func:`warm` at a lower priority (:data:`PREPARE_NICENESS`) for the calling thread -- the
    engine's follower, which opens the view of each new version: on Linux the priority is
    per thread, so the thread answering requests keeps its own."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREPARE_NICENESS)
    warm(store, version)


def warm(store, version) -> None:
    """Prepare the explanation statement on ``store`` (a graph view) by explaining one pair
    of ``version`` (its first user and product): what the first request on that view would
    otherwise pay."""
    from kg.explain import explain_many

    users, items = version.user_index, version.catalogue.ids
    if len(users) == 0 or len(items) == 0:
        return
    with contextlib.suppress(KgrecError, OSError):  # what cannot answer now: the first request says why
        if version.explain_embeddings is None:
            version.explain_embeddings = version.load_explain_embeddings()
        explain_many(store, str(users[0]), [str(items[0])], 1, version.explain_embeddings, strict=False)


def main(argv: list[str] | None = None) -> int:
    """The child: ``python -m fusion.explainer RUN_DIR LOCATION_JSON FOLLOW_SECONDS``."""
    import torch

    from fusion.engine import Engine

    argv = sys.argv[1:] if argv is None else argv
    run_dir, location = argv[0], json.loads(argv[1]) if len(argv) > 1 and argv[1] else {}
    follow = float(argv[2]) if len(argv) > 2 else 0.2
    os.nice(NICENESS)
    torch.set_num_threads(1)
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe carries messages only
    engine = Engine.open(run_dir, location=location or None, indexes=False)  # it never searches
    with contextlib.suppress(KgrecError, OSError):  # no graph to read: each request says why
        warm(engine.graph(), engine.current)
    engine.follow(poll_seconds=follow, prepare_view=warm_in_background)
    send(outbox, ("ok", "ready"))
    try:
        while True:
            try:
                user_id, item_ids, max_paths, strict = receive(inbox)
            except EOFError:
                return 0
            try:
                answer = ("ok", engine.explain_many(user_id, item_ids, max_paths, strict=strict))
            except KgrecError as exc:
                answer = ("error", _closest(exc), str(exc), getattr(exc, "field", None))
            except Exception as exc:  # noqa: BLE001 - answered as a store failure, the child goes on
                answer = ("error", StoreError.__name__, f"{type(exc).__name__}: {exc}", None)
            send(outbox, answer)
    finally:
        engine.close()


def _closest(exc: KgrecError) -> str:
    """The name of the nearest class of ``exc`` the parent re-raises."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _ERRORS:
            return cls.__name__
    return KgrecError.__name__


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
