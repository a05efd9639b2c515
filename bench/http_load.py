"""A light HTTP/1.1 load generator for the serving benchmark (asyncio streams, keep-alive).

Why not httpx: one httpx request costs ~0.5-1 ms of Python on this CPU, so 50 httpx
clients sharing the server's 2 cores took a good part of them (the load generator then
measures itself). This client is what a real HTTP client does and no more: it opens real
TCP connections, writes HTTP/1.1 requests with ``Host``/``Content-Length``, and reads the
status line, the headers and a ``Content-Length`` body (or a chunked one) of each answer;
a connection closed by the server is reopened for the next request (the failed request
counts as failed). Its own CPU time per request is printed by the bench.

:class:`Connection` is one keep-alive connection; :func:`closed_loop` runs ``n`` workers
each sending the next request of a shared plan as soon as its last answer came (the
throughput figure), :func:`open_loop` sends the plan at a fixed rate over a pool of
connections and times each request from the moment it was *due* (so a request that waits
for a free connection counts its wait: no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode


class HTTPFailure(Exception):
    """A transport-level failure (connection refused or closed, malformed answer)."""


@dataclass(frozen=True)
class Request:
    name: str                   #: the endpoint's name (rows of the table)
    method: str
    path: str                   #: already quoted
    params: dict | None = None
    body: bytes | None = None   #: JSON

    def target(self) -> str:
        return self.path + ("?" + urlencode(self.params) if self.params else "")


def path(*parts: str) -> str:
    """``/a/b`` from raw segments, each percent-quoted."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: Request, timeout: float = 60.0) -> tuple[int, bytes]:
        """(status, body) of one request; :class:`HTTPFailure` on a transport failure."""
        try:
            return await asyncio.wait_for(self._send(request), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError) as exc:
            self.close()
            raise HTTPFailure(f"{type(exc).__name__}: {exc}") from exc

    async def _send(self, request: Request) -> tuple[int, bytes]:
        if self.writer is None:
            await self._open()
        body = request.body or b""
        head = (f"{request.method} {request.target()} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}"
                + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if request.body is not None
                   else "") + "\r\n")
        self.writer.write(head.encode("latin-1") + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            payload = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(c[:-2] for c in chunks)
        else:
            raise HTTPFailure(f"an answer without a length (status {status})")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload


@dataclass
class Results:
    """Latencies (ms) per request name, failures, and the wall time of the run."""

    times: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    done: int = 0
    trace: list[tuple[float, str, float]] = field(default_factory=list)  # (answered at, name, ms)

    def record(self, name: str, ms: float, status: int | None, detail: str = "") -> None:
        self.times.setdefault(name, []).append(ms)
        self.trace.append((time.perf_counter(), name, ms))
        if status != 200:
            self.failures.append(f"{name} {status if status is not None else ''} {detail[:160]}".strip())
        self.done += 1


async def timed(conn: Connection, request: Request, results: Results, since: float | None = None) -> None:
    """Send ``request`` on ``conn`` and record its latency (from ``since`` if given)."""
    t = time.perf_counter() if since is None else since
    try:
        status, body = await conn.send(request)
        detail = body.decode("utf-8", "replace") if status != 200 else ""
    except HTTPFailure as exc:
        status, detail = None, str(exc)
    results.record(request.name, (time.perf_counter() - t) * 1e3, status, detail)


async def closed_loop(host: str, port: int, plan: list[Request], clients: int,
                      headers: dict[str, str] | None = None, results: Results | None = None) -> Results:
    """``clients`` connections, each sending the plan's next request when its last one
    answered (into ``results`` if given: its ``done`` shows the progress)."""
    results, queue = results or Results(), list(reversed(plan))
    conns = [Connection(host, port, headers) for _ in range(clients)]

    async def worker(conn: Connection) -> None:
        while queue:
            await timed(conn, queue.pop(), results)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    results.seconds = time.perf_counter() - start
    for c in conns:
        c.close()
    return results


async def open_loop(host: str, port: int, plan: list[Request], rate: float, clients: int,
                    headers: dict[str, str] | None = None, results: Results | None = None) -> Results:
    """The plan's request ``k`` is due at ``start + k / rate``; it is sent on a free one of
    ``clients`` connections (waiting for one if all are busy) and timed from when it was due."""
    results = results or Results()
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(clients):
        free.put_nowait(Connection(host, port, headers))
    tasks = []

    async def one(request: Request, due: float) -> None:
        conn = await free.get()
        try:
            await timed(conn, request, results, since=due)
        finally:
            free.put_nowait(conn)

    start = time.perf_counter()
    for k, request in enumerate(plan):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*tasks)
    results.seconds = time.perf_counter() - start
    while not free.empty():
        free.get_nowait().close()
    return results
