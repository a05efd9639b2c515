"""Reliability in one table: killed builds, the read-only guard, damaged runs, bad input.

Rows (each "ok / total"):

* **kill-resume, <store>, one-shot / incremental** -- a synthetic build (``--size``
  interactions; incremental: a random half of them built first) killed with SIGKILL after
  its 1st batch, at 25/50/75% of its batches, before its last one, and from outside at
  ``--kill-times`` seconds (in the middle of a statement), then run again; ok = the store
  then holds exactly what a clean build holds (counts and a checksum of every label's ids
  and every relationship type's edges, :func:`kg.build.store_digest`);
* **read-only cypher() attempts blocked, <store>** -- :func:`kg.stores.guard.run_attack_suite`:
  writes (also behind ``COMMIT;``, in lower case, in comments, in ``CALL { }``), file reads
  and writes, administration; ok = refused with ReadOnlyError, graph and files unchanged;
* **run-folder corruptions detected** -- every file of a (tiny, untrained) run folder
  truncated, emptied, garbled at a random offset, deleted; ok = opening and querying it
  is a KgrecError naming the file (never an answer);
* **malformed inputs with a clear message** -- every case of ``tests/loaders/test_malformed.py``;
  ok = strict mode raises a LoadError naming file, line and field (or, for a filtered
  record, reports it), and lenient mode rejects it with balanced counts.

The scenarios are the tests' own (``tests/kg/test_resume.py``, ``tests/fusion/test_run_integrity.py``,
``tests/loaders/test_malformed.py``, loaded by path), run at a larger size and more moments.
Neo4j rows need a server (``--neo4j-uri``, default the test server; skipped when unreachable).

    python bench/reliability.py [--size 100000] [--neo4j-uri bolt://127.0.0.1:7687]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kg.errors import KgrecError  # noqa: E402
from kg.stores import StoreConfig, open_store  # noqa: E402


def test_module(relpath: str):
    """A test file of the repository, loaded as a module (its scenarios are reused here)."""
    spec = importlib.util.spec_from_file_location(Path(relpath).stem, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look their module up there
    spec.loader.exec_module(module)
    return module


def neo4j_reachable(uri: str) -> bool:
    try:
        with open_store(StoreConfig(kind="neo4j", uri=uri)):
            return True
    except KgrecError:
        return False


def kill_resume(kind: str, root: Path, uri: str, incremental: bool, size: int, kill_times: list[float]
                ) -> tuple[int, int, list[str]]:
    resume = test_module("tests/kg/test_resume.py")
    counter = [0]

    def new() -> str:
        if kind == "neo4j":
            with open_store(StoreConfig(kind="neo4j", uri=uri)) as store:
                store.clear()
            return uri
        counter[0] += 1
        return str(root / f"{kind}-{incremental}-{counter[0]}")

    where = new()
    if incremental:
        resume.build(kind, where, "half", size=size)
    clean = resume.build(kind, where, "all", size=size)
    expected = resume.digest(kind, where)
    total = clean["calls"]
    moments = [("after batch", n) for n in sorted({1, total // 4, total // 2, 3 * total // 4, total - 1}) if n > 0]
    moments += [("at", t) for t in kill_times]
    ok, notes = 0, []
    for how, when in moments:
        where = new()
        if incremental:
            resume.build(kind, where, "half", size=size)
        resume.build(kind, where, "all", crash_after=when if how == "after batch" else 0,
                     kill_after=when if how == "at" else None, size=size)
        resume.build(kind, where, "all", size=size)
        got = resume.digest(kind, where)
        if got == expected:
            ok += 1
        else:
            notes.append(f"{kind} {'incremental' if incremental else 'one-shot'} killed {how} {when}: "
                         + ", ".join(f"{k} {got[k][0]} vs {expected[k][0]}" for k in got if got[k] != expected[k]))
    return ok, len(moments), notes


def guard(kind: str, root: Path, uri: str) -> tuple[int, int, list[str]]:
    from kg.build import BuildConfig, build_graph
    from kg.stores.guard import run_attack_suite
    from loaders.synthetic import SyntheticConfig, generate

    config = StoreConfig(kind="neo4j", uri=uri) if kind == "neo4j" else StoreConfig(path=str(root / "guard"))
    with open_store(config) as store:
        if kind == "neo4j":
            store.clear()
        build_graph(generate(SyntheticConfig(n_users=50, n_items=30, n_interactions=1_000, n_queries=3)), store,
                    BuildConfig(progress=False))
        result = run_attack_suite(store, root / f"attacks-{kind}")
    return len(result.blocked), result.total, list(result.passed)


def corruptions(root: Path) -> tuple[int, int, list[str]]:
    from fusion.tiny_run import make_tiny_run
    from kg.run_dir import MANIFEST

    integrity = test_module("tests/fusion/test_run_integrity.py")
    run, _ = make_tiny_run(root / "tiny")
    rng = random.Random(0)
    ok, total, notes = 0, 0, []
    for n, rel in enumerate(run.files() + [MANIFEST]):
        for how in integrity.CORRUPTIONS:
            copy = root / f"corrupt-{n}-{how}"
            shutil.copytree(run.path, copy)
            integrity.corrupt(copy / rel, how, rng)
            total += 1
            try:
                integrity.answers(copy)
                notes.append(f"{rel} {how}: answered")
            except KgrecError as exc:
                if rel in str(exc):
                    ok += 1
                else:
                    notes.append(f"{rel} {how}: error does not name the file: {exc}")
            shutil.rmtree(copy)
    return ok, total, notes


def malformed(root: Path) -> tuple[int, int, list[str]]:
    cases = test_module("tests/loaders/test_malformed.py")
    ok, notes = 0, []
    for n, name in enumerate(sorted(cases.CASES)):
        tmp = root / f"malformed-{n}"
        tmp.mkdir()
        try:
            case = cases.CASES[name](tmp)
            cases.test_strict(case)
            cases.test_lenient(case, tmp)
            ok += 1
        except Exception as exc:  # noqa: BLE001 - any failure of the case counts against it
            notes.append(f"{name}: {type(exc).__name__}: {str(exc)[:160]}")
    return ok, len(cases.CASES), notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40_000, help="interactions of the synthetic shop (default 40,000)")
    ap.add_argument("--kill-times", type=float, nargs="*", default=[0.5, 1.5, 3.0],
                    help="seconds after start at which a build is also killed from outside")
    ap.add_argument("--neo4j-uri", default="bolt://127.0.0.1:7687")
    ap.add_argument("--skip", nargs="*", default=[], choices=["resume", "guard", "corrupt", "malformed"])
    args = ap.parse_args()
    stores = ["embedded"] + (["neo4j"] if neo4j_reachable(args.neo4j_uri) else [])
    if "neo4j" not in stores:
        print(f"# Neo4j at {args.neo4j_uri} is not reachable: its rows are left out", file=sys.stderr)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in stores:
            for incremental in (False, True) if "resume" not in args.skip else ():
                t = time.perf_counter()
                ok, total, why = kill_resume(kind, root, args.neo4j_uri, incremental, args.size, args.kill_times)
                rows.append((f"kill-resume, {kind}, {'incremental' if incremental else 'one-shot'}", ok, total,
                             time.perf_counter() - t))
                notes += why
                print(f"# {rows[-1][0]}: {ok}/{total}", file=sys.stderr, flush=True)
        for kind in stores if "guard" not in args.skip else ():
            t = time.perf_counter()
            ok, total, why = guard(kind, root, args.neo4j_uri)
            rows.append((f"read-only cypher() attempts blocked, {kind}", ok, total, time.perf_counter() - t))
            notes += [f"{kind}: not blocked: {w}" for w in why]
        for name, fn in (("run-folder corruptions detected", corruptions),
                         ("malformed inputs with a clear message", malformed)):
            if ("corrupt" if "corrupt" in name else "malformed") in args.skip:
                continue
            t = time.perf_counter()
            ok, total, why = fn(root)
            rows.append((name, ok, total, time.perf_counter() - t))
            notes += why
    print(f"\nReliability (synthetic shop of {args.size:,} interactions for the builds; kills after batches "
          f"and at {', '.join(f'{k:g}' for k in args.kill_times)} s)\n")
    print("| check | ok | total | seconds |")
    print("|---|---:|---:|---:|")
    for name, ok, total, seconds in rows:
        print(f"| {name} | {ok} | {total} | {seconds:.0f} |")
    if notes:
        print("\nNot ok:")
        for note in notes:
            print(f"- {note}")
    return 0 if all(ok == total for _, ok, total, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
