"""HTTP serving under load: a real ``kgrec serve`` process, many concurrent clients.

Starts ``kgrec serve --run RUN --workers W`` on a free port, then runs two phases of
``--requests`` mixed requests each -- /recommend (60%; a tenth of them with a price
filter), /search (20%), /similar (12%), /explain (8%) -- for known users, unknown users
and real products over ``--clients`` keep-alive TCP connections
(:mod:`bench.http_load`, a light asyncio HTTP/1.1 client), while a stream of
``POST /events`` (a batch of 3 purchases every ``--event-interval`` seconds, known users
and new ones) runs and one ``POST /admin/reload`` happens half-way through each phase:

1. **throughput** (closed loop): every connection sends its next request as soon as its
   last one is answered -- requests/s is what the service sustains.
2. **latency at a fixed rate** (open loop): the requests are due at ``--rate`` per
   second, spread over the same connections; each is timed from when it was *due*, so a
   request that had to wait for a free connection counts its wait. p50 / p99 per endpoint.

Why two phases: with 50 clients in a closed loop, Little's law makes the mean latency
50 / (requests/s) -- 25 ms would need 2,000 requests/s -- so a closed loop measures
throughput, and latency is measured at a stated load (as wrk2 and Gorse's benchmarks do).

The server serves a copy of the run folder and of its embedded graph (a temporary folder,
deleted at the end; ``--in-place`` serves the run itself): the events it posts grow the
graph and add run versions (~400 events and ~6 versions a run), so on the run itself each
benchmark run measured a bigger graph than the one before and no two runs were alike.

Failed requests: any status but 200, or a transport error (connection closed or refused,
malformed answer, no answer within 60 s). Also printed: the load average before and after
(the machine is shared), the CPU seconds of the server's processes (workers, their
explanation processes, updater) and of the load generator, and how many run versions the
updater folded in.

    python bench/serve_latency.py --run runs/demo
    python bench/serve_latency.py --run runs/demo --requests 2000 --workers 1   # quick
    python bench/serve_latency.py --run runs/demo --trace out/serve   # + every request's time, to a CSV
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.http_load import Connection, HTTPFailure, Request, Results, closed_loop, open_loop, path  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def tree_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of ``pid`` and its descendants alive now (from /proc):
    ``updater`` (the ``fusion.update`` process), ``explainers`` (the workers' explanation
    processes, ``fusion.explainer``) and ``workers`` (the rest)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = {"workers": 0.0, "explainers": 0.0, "updater": 0.0}, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            except OSError:
                cmd = b""
            kind = ("updater" if b"fusion.update" in cmd else "explainers" if b"fusion.explainer" in cmd
                    else "workers")
            out[kind] += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo += children.get(p, [])
    return out


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_plan(n: int, users: list[str], items: list[str], titles: list[str], rng: random.Random) -> list[Request]:
    plan = []
    for _ in range(n):
        r = rng.random()
        if r < 0.60:
            user = rng.choice(users) if rng.random() < 0.9 else f"visitor-{rng.randrange(10**6)}"
            params = {"k": 10}
            if rng.random() < 0.1:
                params["max_price"] = 50
            plan.append(Request("recommend", "GET", path("recommend", user), params))
        elif r < 0.80:
            words = rng.choice(titles).split()[:3]
            plan.append(Request("search", "GET", "/search", {"q": " ".join(words) or "gift", "k": 10}))
        elif r < 0.92:
            plan.append(Request("similar", "GET", path("similar", rng.choice(items)), {"k": 10}))
        else:
            plan.append(Request("explain", "GET", path("explain", rng.choice(users), rng.choice(items)),
                                {"max_paths": 3}))
    return plan


async def phase(kind: str, port: int, plan: list[Request], args, users: list[str], items: list[str],
                rng: random.Random) -> tuple[Results, dict]:
    """One phase (``throughput`` or ``rate``) with the events stream and a reload half-way."""
    host = "127.0.0.1"
    events = {"posted": 0, "accepted": 0, "times": [], "failures": []}
    stop = asyncio.Event()

    async def event_stream():
        conn, n = Connection(host, port), 0
        while not stop.is_set():
            who = rng.choice(users) if n % 2 else f"live-shopper-{kind}-{n}"
            batch = [{"user_id": who, "item_id": rng.choice(items), "event": "purchase"} for _ in range(3)]
            t = time.perf_counter()
            try:
                status, body = await conn.send(Request("events", "POST", "/events",
                                                       body=json.dumps({"events": batch}).encode()))
                if status != 200:
                    events["failures"].append(f"events {status} {body[:120]!r}")
                else:
                    events["accepted"] += json.loads(body)["accepted"]
            except HTTPFailure as exc:
                events["failures"].append(f"events {exc}")
            events["times"].append((time.perf_counter() - t) * 1e3)
            events["posted"] += 1
            n += 1
            try:
                await asyncio.wait_for(stop.wait(), args.event_interval)
            except asyncio.TimeoutError:
                pass
        conn.close()

    async def reload_half_way(results: Results):
        while results.done < len(plan) // 2:
            await asyncio.sleep(0.02)
        conn, t = Connection(host, port), time.perf_counter()
        try:
            status, body = await conn.send(Request("reload", "POST", "/admin/reload"))
            results.trace.append((time.perf_counter(), "(reload)", (time.perf_counter() - t) * 1e3))
            if status != 200:
                events["failures"].append(f"reload {status} {body[:120]!r}")
        except HTTPFailure as exc:
            events["failures"].append(f"reload {exc}")
        conn.close()

    results = Results()
    side = [asyncio.create_task(event_stream()), asyncio.create_task(reload_half_way(results))]
    if kind == "throughput":
        await closed_loop(host, port, plan, args.clients, results=results)
    else:
        await open_loop(host, port, plan, args.rate, args.clients, results=results)
    stop.set()
    await asyncio.gather(*side)
    return results, events


async def wait_ready(port: int, server: subprocess.Popen) -> str | None:
    conn = Connection("127.0.0.1", port)
    deadline = time.perf_counter() + 900  # a busy machine: importing torch alone can take minutes
    while time.perf_counter() < deadline:
        try:
            status, body = await conn.send(Request("ready", "GET", "/health/ready"), timeout=5)
            if status == 200:
                conn.close()
                return json.loads(body).get("version")
        except HTTPFailure:
            pass
        if server.poll() is not None:
            raise SystemExit(f"kgrec serve exited with {server.returncode}")
        await asyncio.sleep(0.2)
    raise SystemExit("kgrec serve did not become ready")


def table(title: str, results: Results, events: dict) -> list[str]:
    out = [f"\n### {title}\n", "| endpoint | requests | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name in ("recommend", "search", "similar", "explain"):
        v = results.times.get(name, [])
        out.append(f"| {name} | {len(v)} | {statistics.median(v) if v else float('nan'):.1f} | "
                   f"{percentile(v, 99):.1f} | {max(v) if v else float('nan'):.1f} |")
    allv = [x for v in results.times.values() for x in v]
    out.append(f"| **all** | {len(allv)} | {statistics.median(allv):.1f} | {percentile(allv, 99):.1f} | "
               f"{max(allv):.1f} |")
    ev = events["times"]
    out.append(f"| POST /events (beside) | {len(ev)} | {statistics.median(ev) if ev else float('nan'):.1f} | "
               f"{percentile(ev, 99):.1f} | {max(ev) if ev else float('nan'):.1f} |")
    return out


async def main_async(args) -> int:
    from fusion.engine import Engine

    with Engine.open(args.run) as engine:  # ids to ask for
        users = [str(u) for u in engine.user_index[:2000]]
        items = [str(i) for i in engine.catalogue.ids]
        titles = [str(t) for t in engine.catalogue.titles[:500]]
        first_version = engine.version
    rng = random.Random(0)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scratch, source = None, args.run
    if not args.in_place:
        scratch = tempfile.TemporaryDirectory(prefix="kgrec-serve-bench-")
        source, (args.run, store) = args.run, copy_run(args.run, Path(scratch.name))
        if store is not None:
            env["KGREC_SERVE_STORE"] = json.dumps(store)
    load_before = os.getloadavg()
    server = subprocess.Popen([sys.executable, "-m", "fusion.cli", "serve", "--run", args.run, "--port", str(port),
                               "--workers", str(args.workers)], env=env, stdout=subprocess.DEVNULL,
                              stderr=None if args.verbose else subprocess.DEVNULL)
    lines: list[str] = []
    failures: list[str] = []
    try:
        await wait_ready(port, server)
        warm = make_plan(200, users, items, titles, random.Random(1))  # every worker's first requests
        await closed_loop("127.0.0.1", port, warm, 8)
        cpu0 = tree_cpu_seconds(server.pid)
        wall0 = time.perf_counter()
        summary = []
        for kind in ("throughput", "rate"):
            if kind not in args.phases:
                continue
            plan = make_plan(args.requests, users, items, titles, rng)
            own, cpu = own_cpu_seconds(), tree_cpu_seconds(server.pid)
            # the load generator's own garbage-collector pauses (up to ~120 ms here, with the
            # phase's tasks and results alive) would be timed as the server's latency: none
            # during a phase
            gc.collect()
            gc.disable()
            try:
                results, events = await phase(kind, port, plan, args, users, items, rng)
            finally:
                gc.enable()
            gen = own_cpu_seconds() - own
            cpu = {k: v - cpu[k] for k, v in tree_cpu_seconds(server.pid).items()}
            failures += results.failures + events["failures"]
            if args.trace:
                t0 = min(t for t, _, _ in results.trace)
                Path(f"{args.trace}.{kind}.csv").write_text("answered_s,name,ms,monotonic_s\n" + "".join(
                    f"{t - t0:.4f},{name},{ms:.2f},{t:.4f}\n" for t, name, ms in sorted(results.trace)))
            total = sum(len(v) for v in results.times.values())
            title = ("throughput: closed loop" if kind == "throughput"
                     else f"latency at {args.rate:g} requests/s offered (open loop)")
            lines += table(title, results, events)
            summary.append(f"{title}: {total:,} requests in {results.seconds:.1f} s = {total / results.seconds:.0f} "
                           f"requests/s, {len(results.failures) + len(events['failures'])} failed; {events['posted']} "
                           f"POST /events ({events['accepted']} events accepted); CPU per request: server "
                           f"workers {cpu['workers'] / max(total, 1) * 1e3:.2f} ms, load generator "
                           f"{gen / max(total, 1) * 1e3:.2f} ms; CPU per explanation in the explanation "
                           f"processes {cpu['explainers'] / max(len(results.times.get('explain', [])), 1) * 1e3:.1f} "
                           f"ms; the updater used {cpu['updater']:.0f} CPU s")
        server_cpu = sum(tree_cpu_seconds(server.pid).values()) - sum(cpu0.values())
        wall = time.perf_counter() - wall0
        # give the updater a moment, then ask which version is served
        conn = Connection("127.0.0.1", port)
        status, body = await conn.send(Request("ready", "GET", "/health/ready"))
        conn.close()
        version = json.loads(body).get("version") if status == 200 else None
    finally:
        server.terminate()
        server.wait(timeout=60)
        if scratch is not None:
            inbox_left = inbox_counts(args.run)
            scratch.cleanup()
    load_after = os.getloadavg()
    where = source if scratch is None else f"a copy of {source} and its graph"
    print(f"\nkgrec serve --workers {args.workers} on {where}: {args.clients} keep-alive connections, "
          f"{args.requests:,} mixed requests per phase, POST /events every {args.event_interval:g} s, one reload "
          f"half-way through each phase; {os.cpu_count()} CPUs shared by the server, its updater and the load "
          f"generator")
    for s in summary:
        print(f"- {s}")
    served = [first_version, version]
    print(f"- run version served: {served[0]} at the start, {served[1]} at the end; server processes' CPU "
          f"{server_cpu:.0f} s over {wall:.0f} s of wall time (workers, explanation processes, updater)")
    print(f"- load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("\n".join(lines))
    pending, refused = inbox_left if scratch is not None else inbox_counts(args.run)
    print(f"\nevent batches still in the inbox when the server stopped: {pending} (refused and set aside: "
          f"{refused}); the updater folds the rest in while the service runs")
    print(f"\nfailed requests: {len(failures)}")
    for f in failures[:20]:
        print(f"- {f}")
    return 0 if not failures else 1


def copy_run(run: str, into: Path) -> tuple[str, dict | None]:
    """A copy of the run folder ``run`` and of its embedded graph in ``into``: (the copy's
    path, the copied graph's store location; None for a Neo4j run, which is served as it
    is). The events the benchmark posts grow the graph and add run versions; served from a
    copy, every run of the benchmark starts from the same data."""
    from kg.run_dir import RunDir

    copy = into / "run"
    shutil.copytree(run, copy)
    store = RunDir(run).config().get("store") or {}
    if store.get("kind") != "embedded":
        print(f"(the run's graph is not embedded: the benchmark's events go into {store.get('kind')} as they are)")
        return str(copy), None
    source = Path(store["path"])
    for f in source.parent.glob(source.name + "*"):  # the database file and its write-ahead log
        (shutil.copytree if f.is_dir() else shutil.copy2)(f, into / f.name)
    return str(copy), {"kind": "embedded", "path": str(into / source.name)}


def inbox_counts(run: str) -> tuple[int, int]:
    """(event batches still in the run's inbox, batches refused and set aside)."""
    inbox = Path(run) / "inbox"
    pending = len(list(inbox.glob("*.parquet"))) if inbox.is_dir() else 0
    refused = len(list((inbox / "rejected").glob("*.parquet"))) if (inbox / "rejected").is_dir() else 0
    return pending, refused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per phase")
    ap.add_argument("--clients", type=int, default=50, help="concurrent keep-alive connections")
    ap.add_argument("--workers", type=int, default=2, help="kgrec serve --workers")
    ap.add_argument("--rate", type=float, default=300.0, help="offered requests/s of the latency phase")
    ap.add_argument("--phases", nargs="+", default=["throughput", "rate"], choices=["throughput", "rate"])
    ap.add_argument("--event-interval", type=float, default=0.5)
    ap.add_argument("--trace", metavar="PREFIX",
                    help="write every request's answer time, endpoint and latency to PREFIX.<phase>.csv")
    ap.add_argument("--verbose", action="store_true", help="show the server's stderr")
    ap.add_argument("--in-place", action="store_true",
                    help="serve the run itself, not a copy (the events it posts stay in its graph)")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
