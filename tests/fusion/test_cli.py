"""The kgrec command line: build, stats, bad input, Neo4j connection."""

from __future__ import annotations

import csv

import pytest

from fusion.cli import main

SMALL = ["-o", "n_users=60", "-o", "n_items=40", "-o", "n_interactions=800", "-o", "n_queries=5"]


def test_build_then_stats_on_the_embedded_store(tmp_path, capsys):
    db = str(tmp_path / "graph")
    assert main(["build", "--source", "synthetic", *SMALL, "--db", db, "--no-progress",
                 "--report-json", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out
    assert "building into embedded" in out and "PURCHASED" in out and "rows read" in out
    assert '"fingerprint"' in (tmp_path / "report.json").read_text()

    assert main(["stats", "--db", db]) == 0
    stats = capsys.readouterr().out
    users = next(line for line in stats.splitlines() if line.startswith("User "))
    assert users.split()[-1] == "60"

    assert main(["build", "--source", "synthetic", *SMALL, "--db", db, "--no-progress"]) == 0
    assert "nothing new: this data was built into the store before" in capsys.readouterr().out
    assert main(["build", "--source", "synthetic", *SMALL, "--db", db, "--no-progress", "--force"]) == 0
    out = capsys.readouterr().out
    assert "nothing new: every row is in the store already" in out and "resumed" not in out


def _shop(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.csv").write_text("sku,title,price\nA1,Red mug,$9.99\nB2,Teapot,30\n")
    (folder / "interactions.csv").write_text(
        "customer,sku,ts,qty\n"
        "c1,A1,2024-01-02,1\n"
        "c2,ZZ,2024-01-03,1\n"      # line 3: unknown item
        "c3,B2,not-a-date,1\n"      # line 4: bad timestamp
        "c1,B2,2024-01-05,2\n"
    )
    return folder


MAPPING = "items.item_id=sku,interactions.user_id=customer,interactions.item_id=sku," \
          "interactions.timestamp=ts,interactions.value=qty"


def test_strict_build_stops_with_file_line_and_field(tmp_path, capsys):
    folder = _shop(tmp_path)
    code = main(["build", "--source", "csv", "--path", str(folder), "--map", MAPPING,
                 "--db", str(tmp_path / "g"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "interactions.csv, line 4: field 'ts'" in err  # the source's own column name


def test_lenient_build_writes_the_reject_report(tmp_path, capsys):
    folder = _shop(tmp_path)
    rejects = tmp_path / "rejects.csv"
    code = main(["build", "--source", "csv", "--path", str(folder), "--map", MAPPING, "--lenient",
                 "--rejects", str(rejects), "--db", str(tmp_path / "g"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "rows read" in out
    rows = list(csv.DictReader(rejects.open()))
    assert sorted(r["line"] for r in rows) == ["3", "4"]
    assert {r["field"] for r in rows} == {"sku", "ts"}  # named as in the source file


def test_a_build_that_keeps_no_row_fails(tmp_path, capsys):
    """Every row rejected (a lenient load of a file in the wrong format) writes nothing and
    exits 2 -- not 0 with "nothing new: every row is in the store already"."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id,event\nc1,A1,blink\nc2,B2,blink\n")
    db = tmp_path / "g"
    code = main(["build", "--source", "csv", "--path", str(folder), "--lenient", "--rejects",
                 str(tmp_path / "rejects.csv"), "--db", str(db), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "every one of the 2 rows read was rejected, nothing to write" in captured.err
    assert "nothing new" not in captured.out and "building into" not in captured.out
    assert not db.exists()  # no store was created


def test_a_knowledge_graph_that_reaches_no_product_is_named(tmp_path, capsys):
    """Triples with no item_entities row naming their entities (a RecBole .kg without its
    .link) are built, with a warning that no model can reach them; linked, no warning."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id\nc1,A1\nc2,B2\nc1,B2\n")
    (folder / "triples.csv").write_text("head,relation,tail\nm.1,film.director,m.9\nm.2,film.director,m.9\n")
    assert main(["build", "--source", "csv", "--path", str(folder), "--db", str(tmp_path / "g1"),
                 "--no-progress"]) == 0
    assert "warning: the 2 knowledge-graph triples touch no entity that a product is linked to" \
        in capsys.readouterr().out
    (folder / "item_entities.csv").write_text("item_id,entity_id\nA1,m.1\n")
    assert main(["build", "--source", "csv", "--path", str(folder), "--db", str(tmp_path / "g2"),
                 "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_unreachable_neo4j_is_a_clear_error(tmp_path, capsys):
    code = main(["build", "--source", "synthetic", *SMALL, "--neo4j-uri", "bolt://127.0.0.1:1",
                 "--no-progress"])
    assert code == 2
    assert "cannot reach Neo4j at bolt://127.0.0.1:1" in capsys.readouterr().err


def test_path_is_required_for_file_sources(capsys):
    assert main(["build", "--source", "recbole"]) == 2
    assert "--path is required" in capsys.readouterr().err


@pytest.mark.neo4j
def test_build_into_neo4j_by_uri(neo4j_uri, tmp_path, capsys):
    from kg.stores.neo4j import Neo4jStore

    with Neo4jStore(neo4j_uri) as store:
        store.clear()
    assert main(["build", "--source", "synthetic", *SMALL, "--neo4j-uri", neo4j_uri, "--no-progress"]) == 0
    assert f"building into neo4j {neo4j_uri}" in capsys.readouterr().out
    assert main(["stats", "--neo4j-uri", neo4j_uri]) == 0
    users = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("User "))
    assert users.split()[-1] == "60"


def test_explain_prints_paths_and_draws_them(tmp_path, capsys):
    db = str(tmp_path / "graph")
    assert main(["build", "--source", "synthetic", *SMALL, "--db", db, "--no-progress"]) == 0
    capsys.readouterr()
    from kg.stores import StoreConfig, open_store

    with open_store(StoreConfig(path=db)) as store:
        pair = store.cypher("MATCH (u:User)-[:PURCHASED]->(:Product)-[:ALSO_BOUGHT]->(i:Product) "
                            "RETURN u.id AS user, i.id AS item ORDER BY user, item LIMIT 1")
    user, item = pair["user"].iloc[0], pair["item"].iloc[0]
    png = tmp_path / "why.png"
    assert main(["explain", "--db", db, "--user", user, "--item", item, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"why {item} for {user}: Recommended because you")
    assert "ALSO_BOUGHT" in out and png.stat().st_size > 0
    assert main(["explain", "--db", db, "--user", "nobody", "--item", item]) == 2
    assert "unknown user id 'nobody'" in capsys.readouterr().err
    # what the system refuses (a folder that is not there; a full disk alike) is one line, not a traceback
    assert main(["explain", "--db", db, "--user", user, "--item", item, "--png", str(tmp_path / "no" / "w.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kgrec explain: error: No such file or directory") and len(err.splitlines()) == 1


def test_what_is_not_a_graph_and_a_port_out_of_range_are_one_line(tmp_path, capsys):
    garbage = tmp_path / "not-a-graph"
    garbage.write_text("a file, not a database")
    assert main(["stats", "--db", str(garbage)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot open the embedded graph at {garbage}" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):  # uvicorn waited silently on 99999
        main(["serve", "--run", str(tmp_path), "--port", "99999"])
    assert "a port is 1 to 65535, got 99999" in capsys.readouterr().err


def test_a_run_read_against_another_store_says_so(tmp_path, capsys, monkeypatch):
    """``--db`` may name another store than the one a run was trained on (a copy, a moved
    store), but not silently: explanations from another shop's graph would be wrong."""
    from fusion.tiny_run import make_tiny_run

    run, dataset = make_tiny_run(tmp_path)
    other = str(tmp_path / "other")
    assert main(["build", "--source", "synthetic", *SMALL, "-o", "seed=5", "--db", other, "--no-progress"]) == 0
    capsys.readouterr()
    user, item = dataset.interactions["user_id"].iloc[0], dataset.interactions["item_id"].iloc[0]
    args = ["explain", "--run", str(run.path), "--user", user, "--item", item]
    assert main([*args, "--db", other]) == 0
    err = capsys.readouterr().err
    assert f"note: {run.path} was trained on embedded {tmp_path / 'graph'}" in err
    assert f"using embedded {other} as --db/--neo4j-uri asks" in err
    monkeypatch.chdir(tmp_path)  # the same store named by a relative path: no note
    for same in ([], ["--db", "graph"]):
        assert main([*args, *same]) == 0
        assert "note:" not in capsys.readouterr().err


def test_a_retrained_stage_reads_the_store_the_run_was_trained_on(tmp_path, capsys, monkeypatch):
    """``train --stage gnn --run R`` without ``--db`` retrains R on the graph R was trained on
    (as the later stages do), not on whatever the default store holds: a run folder whose
    stages were trained on two shops serves a mix of both."""
    from fusion.tiny_run import make_tiny_run

    run, _ = make_tiny_run(tmp_path / "shop")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # its default store, .kgrec/graph, does not exist
    monkeypatch.delenv("KGREC_STORE", raising=False)
    monkeypatch.delenv("NEO4J_URI", raising=False)
    assert main(["train", "--stage", "gnn", "--run", str(run.path), "--epochs", "1", "--dim", "8",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"training gnn on embedded {tmp_path / 'shop' / 'graph'} -> {run.path}" in out
    assert not (work / ".kgrec").exists()
    # the run has a fusion stage, which serves the GNN vectors it was trained with: said
    assert f"retrain it to serve these: kgrec train --stage fusion --run {run.path}" in out


def test_stats_of_a_missing_graph_says_so(tmp_path, capsys):
    assert main(["stats", "--db", str(tmp_path / "nothing")]) == 2
    assert "no graph at" in capsys.readouterr().err


def test_build_of_a_real_world_amazon_category(tmp_path, capsys):
    """A category whose reviews name products without a metadata line and whose titles are
    markup: the strict default build succeeds, keeps those products, and logs one line per
    kind of reason (not one per duplicate)."""
    import gzip
    import json

    meta = [{"asin": "M1", "title": "Acme Card", "brand": "Acme", "category": ["Gift Cards"]},
            {"asin": "M2", "title": '<span class="a-size-medium a-color-secondary"', "brand": "Acme",
             "category": ["Gift Cards", "Restaurants"]}]
    review = {"overall": 5.0, "reviewText": "Nice", "summary": "Five Stars"}
    reviews = [{**review, "reviewerID": f"U{u}", "asin": a, "unixReviewTime": 1529193600 + u}
               for u, a in enumerate(["M1", "M2", "NOMETA", "NOMETA"])]
    reviews += [dict(reviews[0]) for _ in range(30)]  # exact duplicates: filtered, counted once
    for name, rows in (("meta_Gift_Cards.json.gz", meta), ("Gift_Cards_5.json.gz", reviews)):
        with gzip.open(tmp_path / name, "wt") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    db = str(tmp_path / "graph")
    assert main(["build", "--source", "amazon2018", "--path", str(tmp_path), "--db", db, "--no-progress",
                 "--rejects", str(tmp_path / "rejects.csv")]) == 0
    out = capsys.readouterr().out
    assert "products without metadata (kept as id-only items): 1" in out
    assert "rejected 30: duplicate review (filtered)" in out and out.count("duplicate review") == 1
    assert len(out.splitlines()) < 40
    assert main(["stats", "--db", db]) == 0
    products = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Product "))
    assert products.split()[-1] == "3"
    from kg.stores import StoreConfig, open_store

    with open_store(StoreConfig(path=db), read_only=True) as store:
        titles = dict(store.cypher("MATCH (p:Product) RETURN p.id AS id, p.title AS title").values.tolist())
    assert titles["M2"] == "Acme — Restaurants" and titles["NOMETA"] in ("", None)


def test_products_nobody_bought_or_priced_get_a_bounded_order_value(tmp_path, capsys):
    """The value head learns from purchases with a known value only: on products never bought
    -- priced or not -- it extrapolated (products priced 20-24 at 2,000-8,000, unpriced ones
    above every priced one), and ``--weights value=1`` ranked them first. Through real
    training: every product's value is at most its price (unknown: the shop's median) times
    the largest quantity of an order line (here at most the most purchases of one pair)."""
    import random
    from collections import Counter

    from fusion.engine import Engine
    from fusion.text.encoder import random_checkpoint

    r = random.Random(7)
    shop = tmp_path / "shop"
    shop.mkdir()
    rows = [f"u{u},i{r.randrange(10)},{r.choice(['view', 'click', 'purchase'])},{1_700_000_000 + r.randrange(10**7)},1"
            for u in range(30) for _ in range(8)]
    (shop / "interactions.csv").write_text("user_id,item_id,event,timestamp,value\n" + "\n".join(rows) + "\n")
    (shop / "items.csv").write_text("item_id,title,brand,categories,price\n"
                                    + "".join(f"i{i},Lamp {i},L,Light,{20 + i}\n" for i in range(10))
                                    + "".join(f"p{i},,,,{20 + i}\n" for i in range(5))
                                    + "".join(f"g{i},,,,\n" for i in range(10)))
    db, run = str(tmp_path / "graph"), str(tmp_path / "run")
    bert = random_checkpoint(tmp_path / "bert", ["Lamp 1", "Lamp 2"], max_length=16)
    assert main(["build", "--source", "csv", "--path", str(shop), "--db", db, "--no-progress"]) == 0
    assert main(["train", "--db", db, "--run", run, "--epochs", "5", "--dim", "16", "--text-checkpoint", str(bert),
                 "--text-steps", "2", "--fusion-set", "epochs=2", "--fusion-set", "members=2", "--no-progress"]) == 0
    capsys.readouterr()
    with Engine.open(run) as engine:
        price = dict(zip(engine.catalogue.ids, engine.catalogue.prices))
        quantity = max(Counter((x.split(",")[0], x.split(",")[1]) for x in rows if ",purchase," in x).values())
        for user in ("u1", "u7", "nobody"):
            recs = engine.recommend(user, k=25, weights={"value": 1}, exclude_seen=False)
            assert len(recs) == 25
            for rec in recs:
                known = price[rec.item_id] if rec.item_id[0] != "g" else 24.5  # the shop's median price
                assert rec.objectives["value"] <= known * quantity * 1.0001, (user, rec)


def test_a_reject_report_by_default_goes_beside_the_store_one_per_build(tmp_path, capsys, monkeypatch):
    """Without ``--rejects`` the report was ``rejects.csv`` in the current folder, written
    over by the next build; now each build and ingest writes a file of its own beside the
    store (``<store>.rejects/build-<UTC time>.csv``) and prints where."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    folder = _shop(tmp_path)
    db = tmp_path / "g"
    written = []
    for command in ("build", "build", "ingest"):
        assert main([command, "--source", "csv", "--path", str(folder), "--map", MAPPING, "--lenient",
                     "--db", str(db), "--no-progress"]) == 0
        out = capsys.readouterr().out
        (line,) = [x for x in out.splitlines() if x.startswith("reject report: ")]
        path, rows = line.removeprefix("reject report: ").rsplit(" (", 1)
        assert f"is in {path}" in out
        assert len(list(csv.DictReader(open(path)))) == int(rows.split()[0]) > 0  # ingest: a delta, ZZ id-only
        written.append(path)
    assert not (work / "rejects.csv").exists() and not list(work.iterdir())
    assert len(set(written)) == 3  # none written over
    names = sorted(p.name for p in (tmp_path / "g.rejects").iterdir())
    assert [n.split("-")[0] for n in names] == ["build", "build", "ingest"] and len(names) == 3
    assert {str(tmp_path / "g.rejects" / n) for n in names} == set(written)
    assert sorted(r["line"] for r in csv.DictReader(open(written[0]))) == ["3", "4"]


def test_what_the_http_api_refuses_the_command_line_refuses_in_one_line(tmp_path, capsys):
    """``recommend --user ''`` printed a cold-start list (the Engine refuses it now), ``value
    --user ''`` a new customer's value and ``explain --max-paths 0`` an empty explanation (the
    HTTP routes answer 422); ``update`` / ``ingest --run`` of a run folder that is not there
    said "no graph at .kgrec/graph" (or ingested into the default store)."""
    from fusion.tiny_run import make_tiny_run

    run, dataset = make_tiny_run(tmp_path)
    user, item = dataset.interactions["user_id"].iloc[0], dataset.interactions["item_id"].iloc[0]
    missing = str(tmp_path / "no-such-run")
    for args, says in [
        (["recommend", "--run", str(run.path), "--user", ""], "kgrec recommend: error: user_id: expected a non-empty"),
        (["value", "--run", str(run.path), "--user", " "], "kgrec value: error: --user ' ': an empty id names no one"),
        (["explain", "--run", str(run.path), "--user", user, "--item", item, "--max-paths", "0"],
         "kgrec explain: error: --max-paths 0: must be at least 1"),
        (["update", "--run", missing], f"kgrec update: error: no run folder at {missing}"),
        (["recommend", "--run", missing, "--user", user], f"kgrec recommend: error: no run folder at {missing}"),
        (["ingest", "--run", missing, "--source", "csv", "--path", str(_shop(tmp_path))],
         f"kgrec ingest: error: no run folder at {missing}"),
    ]:
        assert main(args) == 2, args
        captured = capsys.readouterr()
        assert captured.err.strip().startswith(says) and len(captured.err.strip().splitlines()) == 1, captured.err
        assert "top " not in captured.out and "why " not in captured.out
    assert main(["explain", "--run", str(run.path), "--user", user, "--item", item, "--max-paths", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"why {item} for {user}:")
