"""The ``kgrec`` command line: a thin layer over the Python API.

    kgrec build --source synthetic -o n_users=1000      # into the embedded store
    kgrec build --source amazon2018 --path data/gift-cards --neo4j-uri bolt://127.0.0.1:7687
    kgrec stats
    kgrec train --stage gnn --model kgrec --run runs/ml100k   # graph encoder only
    kgrec evaluate --run runs/ml100k
    kgrec verify --run runs/ml100k                      # every file as the manifest recorded it
    kgrec explain --user 196 --item 50 --run runs/ml100k --png why.png
    kgrec train --run runs/shop                         # all stages: gnn, text, fusion, value
    kgrec recommend --run runs/shop --user u00042 --weights ctr=1,cvr=1,value=1
    kgrec search --run runs/shop --query "wireless headphones" --user u00042
    kgrec similar --run runs/shop --item i00007
    kgrec value --run runs/shop --by ltv --top 20       # customer value, product potential, loyalty
    kgrec demo                                          # synthetic shop end to end

The store is Neo4j when ``--neo4j-uri`` or ``NEO4J_URI`` is given (user, password
and database from ``NEO4J_USER``/``NEO4J_PASSWORD``/``NEO4J_DATABASE``), else the
embedded store at ``--db`` (default ``.kgrec/graph``). Commands that read a trained run
(``recommend --explain``, ``explain --run``) use the graph the run was trained on
(``run.json`` remembers it) unless ``--db`` or ``--neo4j-uri`` names another (with a
note on stderr).

Every deliberate error (:class:`kg.errors.KgrecError`) is printed as one line and the
command exits with 2.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

from kg.errors import ConfigError, KgrecError
from kg.run_dir import BUILT_ON, RunDir
from kg.stores import StoreConfig, open_store, same_store
from loaders import SOURCES


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1 (``-k``, ``--top``)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _port(text: str) -> int:
    """A TCP port, 1..65535 (uvicorn waited silently on 99999)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {port}")
    return port


def _given_id(value: str | None, option: str) -> None:
    """Refuse an empty or blank id given to ``option`` (``value --user ''``) with a
    :class:`ConfigError` (one line, exit status 2): it names no one, and was answered with a
    new customer's value -- as the Engine refuses one for ``recommend`` and ``search``
    (``fusion.engine.check_user_ids``) and the HTTP routes with a 422. ``None`` (not given) is fine."""
    if value is not None and not value.strip():
        raise ConfigError(f"{option} {value!r}: an empty id names no one; give the id")


def _option(text: str) -> tuple[str, object]:
    """``key=value`` with the value parsed as a Python literal when it is one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neo4j-uri", help="Neo4j server, e.g. bolt://127.0.0.1:7687 (default: $NEO4J_URI)")
    p.add_argument("--db", help="embedded store directory (default: $KGREC_STORE or .kgrec/graph)")


def _store_config(args: argparse.Namespace, run: str | None = None) -> tuple[StoreConfig, dict | None]:
    """The store the arguments name (not opened) and the one ``run`` remembers (None:
    no run, or it remembers none): with ``run`` and neither ``--db`` nor ``--neo4j-uri``,
    the store that run was trained on."""
    remembered = RunDir(run).store_location() if run else None
    explicit = bool(args.db or args.neo4j_uri)
    config = (StoreConfig.from_location(remembered) if remembered and not explicit
              else StoreConfig.from_env(uri=args.neo4j_uri, path=args.db))
    return config, remembered


def _store(args: argparse.Namespace, read_only: bool = False, run: str | None = None, **kwargs):
    """The store the arguments name; ``read_only`` opens the embedded store read-only,
    so several readers (torchrun ranks, explain) can share it. With ``run`` (a run
    folder) and neither ``--db`` nor ``--neo4j-uri``, the store that run was trained on."""
    config, remembered = _store_config(args, run)
    explicit = bool(args.db or args.neo4j_uri)
    if remembered and explicit and not same_store(remembered, config.location()):
        # allowed (a copy of the graph, a moved store), but never silently: a run read against
        # another shop's graph gives wrong explanations, or folds in products it never saw
        print(f"kgrec {args.command}: note: {run} was trained on {StoreConfig.from_location(remembered).describe()};"
              f" using {config.describe()} as --db/--neo4j-uri asks", file=sys.stderr)
    if read_only and config.kind == "embedded":
        kwargs["read_only"] = True
    return config, open_store(config, **kwargs)


def _existing_run(run: str | None) -> None:
    """Refuse (:class:`kg.errors.RunFolderError`) a ``--run`` folder that is not there, for a
    command that reads a trained run: ``update`` and ``ingest --run`` went on with the default
    store, and said "no graph at .kgrec/graph" (or ingested into it) for a mistyped run; the
    others named a file of the run ("…/fusion/model is missing: run the fusion stage first")."""
    if run is not None and not Path(run).is_dir():
        from kg.errors import RunFolderError

        raise RunFolderError(f"no run folder at {run}; train one first (kgrec train --run {run})")


#: the time in a default reject report's name (UTC): one report per build or ingest
REJECTS_STAMP = "%Y%m%dT%H%M%SZ"


def _rejects_path(args: argparse.Namespace, command: str) -> Path:
    """Where the reject report of ``kgrec build`` / ``kgrec ingest`` goes: ``--rejects
    PATH`` as given (written over), else a new file per run of the command beside the store
    it writes to: ``<embedded store>.rejects/<command>-<UTC time>.csv``
    (``.kgrec/graph.rejects/build-20250102T030405Z.csv``; for Neo4j
    ``.kgrec/neo4j-<database>.rejects/…``), ``-2``, ``-3`` … added when that name is taken --
    a default ``rejects.csv`` in the current folder was written over by the next build."""
    if args.rejects:
        return Path(args.rejects)
    config, _ = _store_config(args, getattr(args, "run", None))
    folder = (Path(f"{config.path}.rejects") if config.kind == "embedded"
              else Path(".kgrec") / f"neo4j-{config.database}.rejects")
    stem = f"{command}-{time.strftime(REJECTS_STAMP, time.gmtime())}"
    path, n = folder / f"{stem}.csv", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.csv"
    return path


def _load_source(args: argparse.Namespace, command: str):
    """The source of ``kgrec build`` / ``kgrec ingest`` loaded (``--option``, ``--map``,
    ``--lenient``; for ``ingest --source csv`` read as a delta: ``loaders.tabular.read``'s
    ``delta``), its load summary printed and its reject report written (:func:`_rejects_path`;
    where it went is printed); ``None`` (after a message on stderr) when rows were read but
    every one was rejected -- there is nothing to write, and a store left as it was must not
    read as a success."""
    from loaders import load

    options = dict(args.option or [])
    if args.map:
        from loaders.tabular import parse_mapping

        options["mapping"] = parse_mapping(args.map)
    if command == "ingest" and args.source in ("csv", "amazon2018", "amazon2023"):
        # a delta: its rows may name what the store holds
        options["delta"] = True
    dataset = load(args.source, args.path, strict=not args.lenient, **options)
    report = dataset.report
    rejects = _rejects_path(args, command)
    print(report.summary(rejects_path=rejects))
    if report.rejects:
        print(f"reject report: {report.write_rejects(rejects)} ({len(report.rejects):,} rows)")
    if report.total_read and not report.total_kept:
        print(f"kgrec {command}: every one of the {report.total_read:,} rows read was rejected, nothing to "
              f"write (the reasons are above{', and row by row in ' + str(rejects) if report.rejects else ''})",
              file=sys.stderr)
        return None
    if command == "build" and not len(dataset.interactions):
        print(f"kgrec {command}: note: no interaction (event) was kept; the graph gets no events to train on")
    return dataset


def cmd_build(args: argparse.Namespace) -> int:
    from kg.build import BuildConfig, build_graph

    if args.source != "synthetic" and not args.path:
        print(f"kgrec build: --path is required for --source {args.source}", file=sys.stderr)
        return 2
    dataset = _load_source(args, "build")
    if dataset is None:
        return 2
    config, store = _store(args, **({"batch_size": args.batch_size} if args.batch_size else {}))
    print(f"building into {config.describe()}")
    with store:
        report = build_graph(dataset, store, BuildConfig(progress=not args.no_progress, force=args.force))
    print(report.table(reasons=False))  # the reasons are in the load summary above
    if args.report_json:
        Path(args.report_json).write_text(report.to_json())
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from kg.build import BuildConfig
    from kg.ingest import ingest

    _existing_run(args.run)
    delta = _load_source(args, "ingest")
    if delta is None:
        return 2
    config, store = _store(args, run=args.run)
    print(f"ingesting into {config.describe()}")
    with store:
        report = ingest(store, delta, BuildConfig(progress=not args.no_progress))
    print(report.table())
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from fusion.update import update_run

    _existing_run(args.run)  # else the default store was opened: "no graph at .kgrec/graph"
    # update_run only reads the store (the new version is written into the run folder): opened
    # read-only, an embedded store's file is left as it was, also when there is nothing new
    _, store = _store(args, read_only=True, run=args.run)
    with store:
        report = update_run(store, args.run, warm_start=args.warm_start)
    print(report.line())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from fusion.service import serve

    _existing_run(args.run)
    if args.db or args.neo4j_uri:
        config, _ = _store(args, run=args.run)
        os.environ["KGREC_SERVE_STORE"] = json.dumps(config.location())
    return serve(args.run, host=args.host, port=args.port, workers=args.workers)


def cmd_stats(args: argparse.Namespace) -> int:
    config, store = _store(args, read_only=True)
    with store:
        counts = store.counts()
    print(f"graph in {config.describe()}")
    for name, n in counts.items():
        print(f"{name:<18} {n:>12,}")
    return 0


def _run_config(args: argparse.Namespace):
    """RunConfig from the train options (the run folder's run.json as the base)."""
    from dataclasses import replace

    from fusion.pipeline import RunConfig
    from fusion.ranking.config import FusionConfig
    from fusion.text.finetune import TextTrainConfig
    from kg.train import TrainConfig

    # a later stage, or a resume, starts from the settings the run was trained with
    later = args.stage in ("text", "fusion", "value") or (args.stage == "gnn" and args.resume)
    base = RunConfig.load(args.run) if later else RunConfig()
    train_options = {**base.gnn.train.to_dict(), **dict(args.set or [])}
    for name in ("model", "epochs", "lr", "batch_size", "seed"):
        if getattr(args, name) is not None:
            train_options[name] = getattr(args, name)
    if args.dim is not None:
        train_options["embedding_dim"] = args.dim
    if args.layers is not None:
        train_options["num_layers"] = args.layers
    gnn = replace(base.gnn, split=args.split or base.gnn.split,
                  split_file=str(Path(args.split_file).resolve()) if args.split_file else base.gnn.split_file,
                  write_embeddings=args.write_embeddings or base.gnn.write_embeddings,
                  train=TrainConfig.from_dict(train_options))
    text_train = base.text.train.to_dict()
    if args.text_checkpoint:
        text_train["checkpoint"] = args.text_checkpoint
    if args.text_steps is not None:
        text_train["max_steps"] = args.text_steps
    text = replace(base.text, finetune=base.text.finetune and not args.no_finetune,
                   train=TextTrainConfig.from_dict(text_train))
    fusion = FusionConfig.from_dict({**base.fusion.to_dict(), **dict(args.fusion_set or [])})
    from fusion.value.config import ValueConfig

    value = ValueConfig.from_dict({**base.value.to_dict(), **dict(args.value_set or [])})
    return RunConfig(gnn=gnn, text=text, fusion=fusion, baselines=base.baselines and not args.no_baselines,
                     value=value)


def cmd_train(args: argparse.Namespace) -> int:
    from fusion.pipeline import STAGES, train_all

    config = _run_config(args)
    stages = STAGES if args.stage == "all" else (args.stage,)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # launched by torchrun
    if distributed and stages != ("gnn",):
        print("kgrec train: under torchrun only the graph encoder trains; add --stage gnn", file=sys.stderr)
        return 2
    if distributed:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # a run trained before is trained again, or continued by a later stage, on the graph it was
    # trained on unless --db/--neo4j-uri says otherwise (then with a note): a retrain on the
    # default store would mix two shops' stages in one run folder
    store_config, store = _store(args, read_only=True, run=args.run)
    rank0 = not distributed or int(os.environ.get("RANK", "0")) == 0
    try:
        if rank0:
            print(f"training {', '.join(stages)} on {store_config.describe()} -> {args.run}")
        with store:
            if stages == ("gnn",) and args.resume:
                from kg.pipeline import train_gnn

                out = {"gnn": train_gnn(store, args.run, config.gnn, resume=True,
                                        progress=not args.no_progress).metrics}
            else:
                out = train_all(store, args.run, config, stages=stages, progress=not args.no_progress)
        if rank0 and out.get("gnn"):
            print(RunDir(args.run).report.read_text().rstrip())
        retrained = [stage for stage in ("gnn", "text") if stage in out]
        if rank0 and retrained and "fusion" not in out and RunDir(args.run).fusion_model.exists():
            # the fusion tables hold the vectors the fusion stage was trained with (RunDir.check_built_on)
            refused = (" -- until then verify, serve and update refuse the run"
                       if RunDir(args.run).config().get(BUILT_ON, {}).get("fusion") else "")
            print(f"note: the fusion stage still holds the {' and '.join(retrained)} vectors it was trained with; "
                  f"retrain it to serve these: kgrec train --stage fusion --run {args.run}{refused}")
        if rank0 and "text" in out:
            print(f"text stage: {out['text']}")
        if "fusion" in out:
            print(f"test metrics ({args.run}/comparison.md):")
            print(RunDir(args.run).comparison_md.read_text().rstrip())
        if "value" in out:
            if "skipped" in out["value"]:
                print(f"value stage skipped: {out['value']['skipped']}" + (
                    "; the previous training's value tables were removed (they described the data this retrain "
                    "replaced)" if out["value"].get("removed_tables") else ""))
            else:
                print(f"value models, test window ({args.run}/value/report.md):")
                print(RunDir(args.run).value_report.read_text().rstrip())
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    run = RunDir(args.run)
    served = run.current_version()  # a CURRENT naming no version here is an error (serving fails on it)
    checked = run.verify()
    versions = run.verify_versions()  # every version folder present, each against its own manifest
    line = f"{run.path}: ok, {checked} files as the manifest recorded them"
    if versions:
        line += "; versions " + ", ".join(f"{name} ({n} files)" for name, n in sorted(versions.items()))
        line += " as theirs"
    print(line + (f"; serving version {served}" if served else "; serving the trained run"))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kg.pipeline import evaluate_run

    _existing_run(args.run)
    run = evaluate_run(args.run)
    print(f"test metrics of {args.run} ({run.split.sizes()['test']:,} held-out pairs)")
    print(run.report())
    if args.by_degree:
        print("\n" + run.by_degree(args.by_degree) + "\n")
    if args.by_relation:
        print("\n" + (run.by_relation() or "(the run's graph has no KG)") + "\n")
    print(run.protocol())
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from kg.explain import Embeddings, explain

    if args.max_paths < 1:  # printed an empty explanation (the HTTP route: 422)
        raise ConfigError(f"--max-paths {args.max_paths}: must be at least 1")
    _existing_run(args.run)
    embeddings = None
    if args.run:
        run = RunDir(args.run)
        run.need(run.embeddings, "gnn")
        run.verify(("gnn",))
        with run.reading(run.embeddings, "gnn"):
            embeddings = Embeddings.from_npz(run.embeddings)
    _, store = _store(args, read_only=True, run=args.run)
    with store:
        result = explain(store, args.user, args.item, args.max_paths, embeddings)
    print(f"why {args.item} for {args.user}: {one_line(result.sentence, 400)}")
    for path in result.paths:
        chain = " ".join(f"({n.label} {one_line(n.name or n.id)})" + (f" -[{r}]-" if r else "")
                         for n, r in zip(path.nodes, (*path.rel_types, "")))
        print(f"  {path.score:.3f}  {path.template:<15} {chain}")
    if args.png:
        from kg.explain_graph import draw_png, explanation_graph

        print(f"drawing: {draw_png(explanation_graph(result), args.png, f'why {args.item} for {args.user}')}")
    return 0


def one_line(text: object, width: int = 60) -> str:
    """``text`` on one line (whitespace runs, newlines too, as one space), cut to ``width``
    characters with an ellipsis: a product's 10,000-character title printed in every path."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _filters(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("category", args.category), ("brand", args.brand),
                              ("min_price", args.min_price), ("max_price", args.max_price)) if v is not None}


def _print_results(results) -> None:
    for rank, r in enumerate(results, 1):
        print(f"{rank:>3}. {r}")
        if getattr(r, "explanation", None) is not None:
            print(f"       why: {r.explanation.sentence}")


def _engine(args: argparse.Namespace, need_store: bool = False):
    """The Engine of ``--run``; with ``need_store`` and an explicit ``--db``/``--neo4j-uri``,
    explanations read that store (else the one the run remembers, opened by the Engine)."""
    from fusion.engine import Engine

    _existing_run(args.run)
    store = None
    if need_store and (args.db or args.neo4j_uri):
        _, store = _store(args, read_only=True, run=args.run)
        store.connect()
    try:
        return Engine.open(args.run, store=store)
    except BaseException:
        if store is not None:
            store.close()
        raise


def cmd_recommend(args: argparse.Namespace) -> int:
    engine = _engine(args, need_store=args.explain)
    try:
        from fusion.ranking.scoring import parse_weights

        results = engine.recommend(args.user, k=args.k, weights=parse_weights(args.weights),
                                   exclude_seen=not args.include_seen, filters=_filters(args), explain=args.explain)
    finally:
        engine.close()
        if engine.store is not None:  # one passed in by _engine
            engine.store.close()
    cold = "" if engine.knows_user(args.user) else " (unknown user: cold start)"
    print(f"top {args.k} for user {args.user}{cold}:")
    _print_results(results)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    engine = _engine(args)
    from fusion.ranking.scoring import parse_weights

    results = engine.search(args.query, user_id=args.user, k=args.k, weights=parse_weights(args.weights),
                            filters=_filters(args))
    print(f"top {args.k} for {args.query!r}" + (f" (user {args.user})" if args.user else "") + ":")
    _print_results(results)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    engine = _engine(args)
    results = engine.similar(args.item, k=args.k, filters=_filters(args))
    print(f"products like {args.item}:")
    _print_results(results)
    if not results:  # a product without a graph or text vector, or filters that match nothing
        print(f"  none: {args.item} has neither a graph vector nor product text to compare, or nothing passed "
              "the filters" if _filters(args) else f"  none: {args.item} has neither a graph vector (no interaction "
              "or knowledge-graph edge in training) nor product text to compare")
    return 0


def cmd_value(args: argparse.Namespace) -> int:
    from fusion.value.results import ValueTables

    _given_id(args.user, "--user")
    _given_id(args.item, "--item")
    run = RunDir(args.run)
    if not run.path.is_dir():
        print(f"kgrec value: no run folder at {run.path}", file=sys.stderr)
        return 2
    serving = run.serving()
    serving.verify(("value",))
    tables = ValueTables.load(serving)
    if args.user:
        c = tables.customer(args.user)
        print(f"user {c.user_id}: expected spend {c.ltv:,.2f} over {c.horizon_days:g} days after {c.as_of}, "
              f"P(active) {c.p_active:.3f}" + (" (no history: a new customer's value)" if c.cold_start else ""))
        for b in tables.loyalty(args.user)[:args.top]:
            print(f"  brand {b.brand}: P(buys it again) {b.p_loyal:.3f}, past share {b.past_share:.3f}")
        return 0
    if args.item:
        p = tables.product(args.item)
        print(f"product {p.item_id}: expected {p.units:,.2f} units ({p.value:,.2f}) over {p.horizon_days:g} days "
              f"after {p.as_of}, P(sells) {p.p_sell:.3f}" + (" (new: no sale yet)" if p.new else ""))
        return 0
    table = tables.table(args.by).head(args.top)
    what = {"ltv": "customers by expected spend", "potential": "products by expected units",
            "loyalty": "brands by repurchase rate"}[args.by]
    if not len(table):  # a shop without brands (loyalty), say: one line, not an empty DataFrame's repr
        print(f"no {what.split(' by ')[0]} to rank" + (" (no brand with customers: the catalogue may name none)"
                                                      if args.by == "loyalty" else ""))
    else:
        print(f"top {len(table)} {what} over the {tables.horizon_days:g} days after {tables.as_of}:")
        print(table.to_string(index=False, float_format=lambda x: f"{x:,.3f}", line_width=200))
    for note in (tables.untimed_note, tables.capped_note):
        if note:
            print(note)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fusion.demo import run_demo

    return run_demo(args.run, db=args.db, users=args.users, quick=args.quick, progress=not args.no_progress)


def _add_query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="runs/latest", help="run folder (default: runs/latest)")
    p.add_argument("-k", type=_at_least_one, default=10, help="how many results (default: 10)")
    p.add_argument("--weights", help="objective weights, e.g. ctr=1,cvr=2,value=0.5 (default: "
                                     "ctr=1,cvr=1,exposure=0.5 to recommend, relevance=1,ctr=0.1,cvr=0.1 to search)")
    p.add_argument("--category", help="only products in this category (path or level name)")
    p.add_argument("--brand", help="only products of this brand")
    p.add_argument("--min-price", type=float)
    p.add_argument("--max-price", type=float)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgrec", description="Knowledge-graph search and recommendation.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="load a data source and build the knowledge graph")
    b.add_argument("--source", required=True, choices=sorted(SOURCES))
    b.add_argument("--path", help="file or folder of the source data (not needed for synthetic)")
    b.add_argument("-o", "--option", type=_option, action="append", metavar="KEY=VALUE",
                   help="source option, e.g. -o n_users=5000 for synthetic (repeatable)")
    b.add_argument("--map", help="csv column mapping, e.g. interactions.user_id=customer,interactions.item_id=sku")
    b.add_argument("--lenient", action="store_true", help="keep going on bad rows and write a reject report")
    b.add_argument("--rejects", metavar="PATH", help="where the reject report goes (default: a new file per build "
                                                      "beside the store, <store>.rejects/build-<UTC time>.csv)")
    b.add_argument("--batch-size", type=int, help="rows per Neo4j write transaction (default: 10000)")
    b.add_argument("--force", action="store_true", help="rewrite everything even if this data was built before")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.add_argument("--report-json", help="also write the build report as JSON here")
    _add_store_args(b)
    b.set_defaults(func=cmd_build)

    i = sub.add_parser("ingest", help="add new or changed rows (events, users, products, reviews) to the graph")
    i.add_argument("--source", required=True, choices=sorted(SOURCES))
    i.add_argument("--path", required=True, help="file or folder of the delta (the source's format)")
    i.add_argument("-o", "--option", type=_option, action="append", metavar="KEY=VALUE")
    i.add_argument("--map", help="csv column mapping, as for build")
    i.add_argument("--lenient", action="store_true", help="keep going on bad rows and write a reject report")
    i.add_argument("--rejects", metavar="PATH", help="where the reject report goes (default: a new file per "
                                                      "ingest beside the store, <store>.rejects/ingest-<UTC time>.csv)")
    i.add_argument("--run", help="a run folder: ingest into the graph it was trained on")
    i.add_argument("--no-progress", action="store_true")
    _add_store_args(i)
    i.set_defaults(func=cmd_ingest)

    u = sub.add_parser("update", help="bring a trained run up to date with its graph (fold-in; a new run version)")
    u.add_argument("--run", default="runs/latest")
    u.add_argument("--warm-start", type=int, default=0, metavar="EPOCHS",
                   help="also fine-tune the graph encoder up to EPOCHS passes over the new pairs (kept only if it "
                        "beats the fold-in on a held-out slice of them)")
    _add_store_args(u)
    u.set_defaults(func=cmd_update)

    w = sub.add_parser("serve", help="the HTTP service over a run folder (FastAPI; docs at /docs)")
    w.add_argument("--run", default="runs/latest")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=_port, default=8000)
    w.add_argument("--workers", type=int, default=1, help="processes serving the run (Neo4j for more than one)")
    _add_store_args(w)
    w.set_defaults(func=cmd_serve)

    t = sub.add_parser("train", help="train the stages (graph encoder, text encoder, fusion) on the graph in the store")
    t.add_argument("--stage", default="all", choices=["all", "gnn", "text", "fusion", "value"],
                   help="which stage to train (default: all, in order)")
    t.add_argument("--run", default="runs/latest", help="run folder to write (default: runs/latest)")
    t.add_argument("--model", choices=["bpr_mf", "lightgcn", "kgrec"], help="model (default: lightgcn)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--dim", type=int, help="embedding dimension")
    t.add_argument("--layers", type=int, help="propagation layers")
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--split", choices=["auto", "leave_last_out", "time", "given"],
                   help="(default: auto: the source's own train/valid/test when it has one, else leave_last_out)")
    t.add_argument("--split-file", help="the split as given: a folder with one file per part (x.train.tsv, "
                                        "x.valid.tsv, x.test.tsv; RecBole's <name>.train.inter …) or one file "
                                        "with user_id, item_id, split columns (raw ids)")
    t.add_argument("--set", type=_option, action="append", metavar="KEY=VALUE",
                   help="any TrainConfig field, e.g. --set patience=10 (repeatable)")
    t.add_argument("--text-checkpoint", help="text stage: local HF directory to start from (default: MiniLM-L6)")
    t.add_argument("--text-steps", type=int, help="text stage: at most this many fine-tuning steps")
    t.add_argument("--no-finetune", action="store_true", help="text stage: use the checkpoint as it is")
    t.add_argument("--fusion-set", type=_option, action="append", metavar="KEY=VALUE",
                   help="any FusionConfig field, e.g. --fusion-set balancing=gradnorm (repeatable)")
    t.add_argument("--value-set", type=_option, action="append", metavar="KEY=VALUE",
                   help="any ValueConfig field, e.g. --value-set horizon_days=30 (repeatable)")
    t.add_argument("--no-baselines", action="store_true", help="skip the CVR-on-clicks baseline model")
    t.add_argument("--resume", action="store_true", help="--stage gnn: continue the run folder's last checkpoint")
    t.add_argument("--write-embeddings", action="store_true",
                   help="Neo4j: store item embeddings with a vector index")
    t.add_argument("--no-progress", action="store_true")
    _add_store_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a run folder on its test split")
    e.add_argument("--run", default="runs/latest")
    e.add_argument("--by-degree", type=int, default=0, metavar="N",
                   help="also the share of test pairs found, in N groups by their item's training interactions "
                        "(where in the long tail the model finds them)")
    e.add_argument("--by-relation", action="store_true",
                   help="also the KG content ranker with one relation at a time, real and shuffled "
                        "(which relations say what users choose)")
    e.set_defaults(func=cmd_evaluate)

    v = sub.add_parser("verify", help="check a run folder against its manifest (size and SHA-256 of every file)")
    v.add_argument("--run", default="runs/latest")
    v.set_defaults(func=cmd_verify)

    x = sub.add_parser("explain", help="why an item suits a user: paths in the knowledge graph")
    x.add_argument("--user", required=True)
    x.add_argument("--item", required=True)
    x.add_argument("--max-paths", type=int, default=5, help="at most this many paths, at least 1 (default: 5)")
    x.add_argument("--run", help="a GNN run folder: rank paths with its embeddings")
    x.add_argument("--png", help="also draw the paths to this PNG file")
    _add_store_args(x)
    x.set_defaults(func=cmd_explain)

    r = sub.add_parser("recommend", help="top products for a user (fused ranking)")
    r.add_argument("--user", required=True)
    r.add_argument("--include-seen", action="store_true", help="keep products the user already interacted with")
    r.add_argument("--explain", action="store_true", help="attach knowledge-graph paths (reads the store)")
    _add_query_args(r)
    _add_store_args(r)
    r.set_defaults(func=cmd_recommend)

    q = sub.add_parser("search", help="products for a text query, personalised with --user")
    q.add_argument("--query", required=True)
    q.add_argument("--user")
    _add_query_args(q)
    q.set_defaults(func=cmd_search)

    m = sub.add_parser("similar", help="products like a product (graph + text)")
    m.add_argument("--item", required=True)
    _add_query_args(m)
    m.set_defaults(func=cmd_similar)

    va = sub.add_parser("value", help="customer lifetime value, product potential, brand loyalty of a run")
    va.add_argument("--run", default="runs/latest")
    va.add_argument("--by", choices=["ltv", "potential", "loyalty"], default="ltv",
                    help="customers by expected spend, products by expected units, or brands by repurchase rate")
    va.add_argument("--top", type=_at_least_one, default=20, help="rows to print (default: 20)")
    one = va.add_mutually_exclusive_group()  # both: --item was ignored without a word
    one.add_argument("--user", help="one customer's value and brand loyalty")
    one.add_argument("--item", help="one product's potential")
    va.set_defaults(func=cmd_value)

    d = sub.add_parser("demo", help="synthetic shop end to end: build, train all stages, evaluate, query")
    d.add_argument("--run", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--db", default=".kgrec/demo", help="embedded store (default: .kgrec/demo)")
    d.add_argument("--users", type=int, default=2000, help="synthetic users (default: 2000)")
    d.add_argument("--quick", action="store_true", help="smaller and fewer steps (for tests)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("stats", help="nodes per label and relationships per type")
    _add_store_args(s)
    s.set_defaults(func=cmd_stats)
    return p


#: third-party warnings that say nothing to a kgrec user (torch_geometric scripts functions on import)
QUIET_WARNINGS = (r"`torch\.jit\.script` is deprecated",)


def main(argv: list[str] | None = None) -> int:
    import warnings

    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KgrecError as exc:
        print(f"kgrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused (a full disk, a folder that cannot be written): one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"kgrec {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the embedded graph database or torch writing on a full disk
        if "no space left" not in str(exc).lower() and "inline_container" not in str(exc):  # torch.save's
            raise
        print(f"kgrec {args.command}: error: no space left on the device ({str(exc).splitlines()[0][:300]}); "
              "free some and run the command again: what was written is kept", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
