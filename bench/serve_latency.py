"""HTTP serving under load: a real ``kgrec serve`` process, many concurrent clients.

Starts ``kgrec serve --run RUN`` (one process by default, ``--workers N`` for more) on a
free port, then ``--clients`` concurrent HTTP clients (asyncio + httpx, keep-alive) send
``--requests`` mixed requests -- /recommend (60%; a tenth of them with a price filter),
/search (20%), /similar (12%), /explain (8%) -- for known users, unknown users and real
products, while a stream of ``POST /events`` (a small batch every ``--event-interval``
seconds: purchases of known users and of new ones) runs and one ``POST /admin/reload``
happens half-way. Prints p50 / p99 per endpoint, requests per second over the whole run,
and the count of failed requests (any status other than 200, or a transport error).

The load generator runs on the same machine (2 cores here), so it takes CPU from the
server: the requests/s is a lower bound of what the service does with its own cores.

    python bench/serve_latency.py --run runs/demo
    python bench/serve_latency.py --run runs/demo --requests 2000 --clients 20   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def main_async(args) -> int:
    import httpx

    from fusion.engine import Engine

    with Engine.open(args.run) as engine:  # ids to ask for
        users = [str(u) for u in engine.user_index[:2000]]
        items = [str(i) for i in engine.catalogue.ids]
        titles = [str(t) for t in engine.catalogue.titles[:500]]
    rng = random.Random(0)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "fusion.cli", "serve", "--run", args.run, "--port", str(port),
                               "--workers", str(args.workers)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     limits=httpx.Limits(max_connections=args.clients + 4)) as client:
            for _ in range(600):
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise SystemExit("kgrec serve did not become ready")

            def request():
                r = rng.random()
                if r < 0.60:
                    user = rng.choice(users) if rng.random() < 0.9 else f"visitor-{rng.randrange(10**6)}"
                    params = {"k": 10}
                    if rng.random() < 0.1:
                        params["max_price"] = 50
                    return "recommend", f"/recommend/{user}", params
                if r < 0.80:
                    words = rng.choice(titles).split()[:3]
                    return "search", "/search", {"q": " ".join(words) or "gift", "k": 10}
                if r < 0.92:
                    return "similar", f"/similar/{rng.choice(items)}", {"k": 10}
                return "explain", f"/explain/{rng.choice(users)}/{rng.choice(items)}", {"max_paths": 3}

            plan = [request() for _ in range(args.requests)]
            times: dict[str, list[float]] = {}
            failures: list[str] = []
            done = 0
            queue: asyncio.Queue = asyncio.Queue()
            for p in plan:
                queue.put_nowait(p)

            async def worker():
                nonlocal done
                while True:
                    try:
                        name, path, params = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    t = time.perf_counter()
                    try:
                        r = await client.get(path, params=params)
                        if r.status_code != 200:
                            failures.append(f"{name} {r.status_code} {r.text[:120]}")
                    except httpx.HTTPError as exc:
                        failures.append(f"{name} {type(exc).__name__}")
                    times.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
                    done += 1

            events = {"posted": 0, "accepted": 0}
            stop = asyncio.Event()

            async def event_stream():
                n = 0
                while not stop.is_set():
                    who = rng.choice(users) if n % 2 else f"live-shopper-{n}"
                    batch = [{"user_id": who, "item_id": rng.choice(items), "event": "purchase"} for _ in range(3)]
                    try:
                        r = await client.post("/events", json={"events": batch})
                        if r.status_code != 200:
                            failures.append(f"events {r.status_code}")
                        else:
                            events["accepted"] += r.json()["accepted"]
                        times.setdefault("events", []).append(r.elapsed.total_seconds() * 1e3)
                    except httpx.HTTPError as exc:
                        failures.append(f"events {type(exc).__name__}")
                    events["posted"] += 1
                    n += 1
                    await asyncio.sleep(args.event_interval)

            async def reload_half_way():
                while done < args.requests // 2:
                    await asyncio.sleep(0.05)
                r = await client.post("/admin/reload")
                if r.status_code != 200:
                    failures.append(f"reload {r.status_code}")

            start = time.perf_counter()
            side = [asyncio.create_task(event_stream()), asyncio.create_task(reload_half_way())]
            await asyncio.gather(*(worker() for _ in range(args.clients)))
            seconds = time.perf_counter() - start
            stop.set()
            await asyncio.gather(*side)
            version = (await client.get("/health/ready")).json().get("version")
    finally:
        server.terminate()
        server.wait(timeout=60)
    total = sum(len(v) for k, v in times.items() if k != "events")
    print(f"\nkgrec serve --workers {args.workers} on {args.run}: {args.clients} concurrent clients, {total:,} requests "
          f"in {seconds:.1f} s = {total / seconds:.0f} requests/s; {events['posted']} POST /events "
          f"({events['accepted']} events accepted), one reload half-way; served version at the end: {version}; "
          f"{os.cpu_count()} CPUs (the load generator shares them)\n")
    print("| endpoint | requests | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name in ("recommend", "search", "similar", "explain", "events"):
        v = times.get(name, [])
        print(f"| {name} | {len(v)} | {statistics.median(v) if v else float('nan'):.1f} | {percentile(v, 99):.1f} |")
    inbox = Path(args.run) / "inbox"
    pending = len(list(inbox.glob("*.parquet"))) if inbox.is_dir() else 0
    refused = len(list((inbox / "rejected").glob("*.parquet"))) if (inbox / "rejected").is_dir() else 0
    print(f"\nevent batches still in the inbox when the server stopped: {pending} (refused and set aside: "
          f"{refused}); the updater folds the rest in while the service runs")
    print(f"\nfailed requests: {len(failures)}")
    for f in failures[:20]:
        print(f"- {f}")
    return 0 if not failures else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--event-interval", type=float, default=0.5)
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
