"""The Engine's behaviour on a tiny run folder made in seconds -- no training.

:func:`fusion.tiny_run.make_tiny_run` writes what ``kgrec train`` would leave for serving,
made of random parts (a small synthetic shop in an embedded store, random feature tables,
a fresh tiny fusion model, a tiny random BERT), each by its own ``save``; the Engine reads
it back with :meth:`Engine.open`, as a trained run.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from fusion.engine import CATEGORY_CACHE, MAX_QUERY_CHARS, Engine, Recommendation
from fusion.ranking.features import FeatureTables
from fusion.ranking.model import FusionModel
from fusion.tiny_run import make_tiny_run
from kg.errors import InvalidRequestError, RunFolderError, UnknownIdError
from kg.run_dir import RunDir

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("engine"))


@pytest.fixture(scope="module")
def engine(tiny_run):
    run, _ = tiny_run
    with Engine.open(run.path) as engine:
        yield engine


def test_open_composes_the_components(engine, tiny_run):
    run, dataset = tiny_run
    assert engine.candidates == 20  # from the fusion section of run.json
    assert len(engine.user_index) == 60 and len(engine.catalogue.ids) == 40
    assert sorted(engine.catalogue.ids) == sorted(dataset.items["item_id"])
    assert engine.model.config["hidden"] == 16 and not engine.model.training
    assert "Engine(" in repr(engine) and str(run.path) in repr(engine)


def test_recommend_is_typed_ranked_and_skips_seen(engine):
    row = next(u for u in range(len(engine.user_index)) if len(engine.seen[u]))
    user = engine.user_index[row]
    recs = engine.recommend(user, k=7)
    assert len(recs) == 7 and all(isinstance(r, Recommendation) for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    # a shop with impressions: the exposure model's P(shown) too (fusion.ranking.exposure)
    assert set(recs[0].objectives) == {"ctr", "cvr", "ctcvr", "value", "relevance", "exposure"}
    for r in recs:  # default weights: log P(click) + log P(purchase | click) + 0.5 log P(shown)
        o = r.objectives
        assert r.score == pytest.approx(math.log(o["ctr"]) + math.log(o["cvr"]) + 0.5 * math.log(o["exposure"]),
                                        abs=1e-4)
        assert r.objectives["ctcvr"] == pytest.approx(r.objectives["ctr"] * r.objectives["cvr"])
    seen = set(engine.catalogue.ids[engine.seen[row]])
    assert not seen & {r.item_id for r in recs}
    everything = engine.recommend(user, k=40, exclude_seen=False)
    assert seen & {r.item_id for r in everything}


def test_weights_set_the_ranking_score(engine):
    user = engine.user_index[5]
    by_value = engine.recommend(user, k=10, weights={"value": 1})
    values = [r.objectives["value"] for r in by_value]
    assert values == sorted(values, reverse=True)
    assert all(r.score == pytest.approx(math.log1p(r.objectives["value"]), abs=1e-4) for r in by_value)
    by_clicks = engine.recommend(user, k=10, weights={"ctr": 1})
    assert [r.objectives["ctr"] for r in by_clicks] == sorted((r.objectives["ctr"] for r in by_clicks), reverse=True)
    with pytest.raises(InvalidRequestError, match="unknown objective weights") as err:
        engine.recommend(user, weights={"margin": 1})
    assert err.value.field == "weights"


def test_requests_name_the_bad_parameter(engine):
    """Not-a-number or infinite weights and price bounds, and k below 1, are refused naming the
    parameter (they gave NaN scores, empty lists or a torch error)."""
    user, item = engine.user_index[3], str(engine.catalogue.ids[0])
    # 1e200 is finite as a float64 but not as a float32 score (every candidate was dropped);
    # weights that are all zero ranked by nothing (an arbitrary list at score 0)
    for weights in ({"ctr": float("nan")}, {"cvr": float("inf")}, {"ctr": "lots"}, {"ctr": 1e200},
                    {"ctr": 0, "cvr": 0}, {}, ["ctr"]):
        with pytest.raises(InvalidRequestError, match="weights: ") as err:
            engine.recommend(user, weights=weights)
        assert err.value.field == "weights"
    for name, bound in (("max_price", float("nan")), ("min_price", "cheap"), ("max_price", float("-inf"))):
        with pytest.raises(InvalidRequestError, match=name) as err:
            engine.recommend(user, filters={name: bound})
        assert err.value.field == name
    for call in (lambda k: engine.recommend(user, k=k), lambda k: engine.search("red", k=k),
                 lambda k: engine.similar(item, k=k), lambda k: engine.recommend_batch([user], k=k)):
        for k in (0, -5, 2.5, True):
            with pytest.raises(InvalidRequestError, match="k: ") as err:
                call(k)
            assert err.value.field == "k"
    assert len(engine.recommend(user, k=np.int64(3))) == 3
    # a client's type mistakes were answered as something else: a string read as a list of
    # one-letter users, a query str()-ed ("None"), an empty or non-string id as a visitor,
    # a list of categories or crossed price bounds matching nothing
    for call, field in ((lambda: engine.recommend_batch(user, k=3), "user_ids"),
                        (lambda: engine.recommend("", k=3), "user_id"),
                        (lambda: engine.recommend(None, k=3), "user_id"),
                        (lambda: engine.recommend(7, k=3), "user_id"),
                        (lambda: engine.search(None), "query"),
                        (lambda: engine.search(b"red"), "query"),
                        (lambda: engine.search("red", user_id=""), "user_id"),
                        (lambda: engine.recommend(user, filters={"category": ["a", "b"]}), "category"),
                        (lambda: engine.recommend(user, filters={"min_price": 10, "max_price": 5}), "min_price")):
        with pytest.raises(InvalidRequestError) as err:
            call()
        assert err.value.field == field
    assert len(engine.recommend_batch(iter([user, "a-visitor"]), k=2)) == 2
    assert len(engine.recommend(user, k=3, filters={"min_price": 5, "max_price": 5})) <= 3


def test_filters(engine):
    user, c = engine.user_index[7], engine.catalogue
    price = float(np.nanmedian(c.prices))
    cheap = engine.recommend(user, k=40, filters={"max_price": price})
    assert cheap and all(r.price is not None and r.price <= price for r in cheap)
    dear = engine.recommend(user, k=40, filters={"min_price": price})
    assert dear and all(r.price is not None and r.price >= price for r in dear)
    brand = c.brands[0]
    branded = engine.recommend(user, k=40, filters={"brand": brand}, exclude_seen=False)
    assert branded and {c.brands[c.index.get_loc(r.item_id)] for r in branded} == {brand}
    path = c.categories[0][0]
    top, leaf = path.split(" > ")[0], path.split(" > ")[-1]
    for want in (top, leaf, path):
        got = engine.recommend(user, k=40, filters={"category": want}, exclude_seen=False)
        assert got and all(any(want in p.split(" > ") or p == want for p in c.categories[c.index.get_loc(r.item_id)])
                           for r in got), want
    with pytest.raises(InvalidRequestError, match="unknown filters") as err:
        engine.recommend(user, filters={"colour": "red"})
    assert err.value.field == "filters"
    # the category is read as the graph stores paths (kg.rows.normalise_category_path)
    messy = "  " + path.replace(" > ", ">  ") + " "
    assert ([r.item_id for r in engine.recommend(user, k=40, filters={"category": messy}, exclude_seen=False)]
            == [r.item_id for r in engine.recommend(user, k=40, filters={"category": path}, exclude_seen=False)])
    with pytest.raises(InvalidRequestError, match="names no category level") as err:
        engine.recommend(user, filters={"category": " > "})
    assert err.value.field == "category"


def test_category_mask_cache_is_bounded(engine):
    user = engine.user_index[0]
    for n in range(CATEGORY_CACHE + 5):  # made-up categories: nothing passes, and the cache stays bounded
        assert engine.recommend(user, k=5, filters={"category": f"no such category {n}"}) == []
    assert engine.cached_categories == CATEGORY_CACHE


def test_cold_start_and_batch(engine):
    cold = engine.recommend("a-new-visitor", k=5)
    assert len(cold) == 5 and not engine.knows_user("a-new-visitor")
    popular = engine.popularity.argsort(descending=True)[:20].tolist()  # cold candidates: the most popular
    assert {engine.catalogue.index.get_loc(r.item_id) for r in cold} <= set(popular)
    users = list(engine.user_index[:25]) + ["a-new-visitor"]
    batch = engine.recommend_batch(users, k=5, batch_size=7)
    assert [[r.item_id for r in rs] for rs in batch] == [[r.item_id for r in engine.recommend(u, k=5)]
                                                         for u in users]


def test_search_and_similar(engine):
    hits = engine.search("headphones", k=10)
    assert len(hits) == 10 and [r.score for r in hits] == sorted((r.score for r in hits), reverse=True)
    assert all(0 < r.objectives["relevance"] < 1 for r in hits)
    user = engine.user_index[3]
    assert len(engine.search("headphones", user_id=user, k=5)) == 5
    assert len(engine.search("headphones", user_id="nobody", k=5)) == 5
    brand = engine.catalogue.brands[engine.catalogue.index.get_loc(hits[0].item_id)]
    assert {r.item_id for r in engine.search("headphones", k=5, filters={"brand": brand})} <= set(
        engine.catalogue.ids[engine.catalogue.brands == brand])
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.search("   ")
    assert len(engine.search("gift " * (MAX_QUERY_CHARS // 5), k=3)) == 3
    with pytest.raises(InvalidRequestError, match="at most 1,000") as err:
        engine.search("x" * 10_000_000)
    assert err.value.field == "query"
    item = engine.catalogue.ids[0]
    similar = engine.similar(item, k=5)
    assert len(similar) == 5 and item not in {r.item_id for r in similar}
    for r in similar:  # the mean of the GNN and text cosines
        assert r.score == pytest.approx((r.objectives["gnn"] + r.objectives["text"]) / 2, abs=1e-5)
    with pytest.raises(UnknownIdError, match="unknown item id 'no-such-item'"):
        engine.similar("no-such-item")


def test_explanations_find_the_runs_graph(engine):
    """Engine.open got no store: explanations open the one run.json names, read-only."""
    user = next(u for u in engine.user_index if engine.knows_user(u))
    explained = engine.recommend(user, k=3, explain=True)
    assert all(r.explanation is not None and r.explanation.sentence for r in explained)
    assert engine.recommend("a-new-visitor", k=2, explain=True)[0].explanation is None
    why = engine.explain(user, explained[0].item_id)
    assert why.paths and why.user_id == user
    with pytest.raises(UnknownIdError):
        engine.explain(user, "no-such-item")


def test_many_threads_answer_like_one(engine):
    users = list(engine.user_index[:24])
    expected = {u: [r.item_id for r in engine.recommend(u, k=5)] for u in users}
    expected_search = [r.item_id for r in engine.search("a gift", k=5)]
    got, errors = {}, []

    def work(chunk):
        try:
            for u in chunk:
                got[u] = [r.item_id for r in engine.recommend(u, k=5)]
                assert [r.item_id for r in engine.search("a gift", k=5)] == expected_search
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(users[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected


def test_open_names_the_missing_stage(tmp_path, tiny_run):
    with pytest.raises(RunFolderError, match="run the fusion stage first"):
        Engine.open(tmp_path / "empty-run")
    run, _ = tiny_run
    partial = RunDir(tmp_path / "partial")
    FusionModel.load(run.fusion_model).save(partial.fusion_model)
    FeatureTables.load(run.fusion_tables).save(partial.fusion_tables)
    with pytest.raises(RunFolderError, match="run the gnn stage first"):
        Engine.open(partial.path)


def test_search_through_an_ivf_index_answers_like_the_exact_scan(tiny_run, engine, monkeypatch):
    """A large catalogue takes search's text candidates from an IVF index; probing every
    list it is exact, and a filter that its probed lists cannot fill falls back to the scan."""
    import fusion.engine as engine_module

    run, _ = tiny_run
    queries = ["headphones", "a gift for my son", "wireless speaker"]
    brand = engine.catalogue.brands[0]
    want = [[r.item_id for r in engine.search(q, k=10)] for q in queries]
    want_brand = [r.item_id for r in engine.search(queries[0], k=5, filters={"brand": brand})]
    monkeypatch.setattr(engine_module, "SEARCH_IVF_MIN", 1)
    with Engine.open(run.path) as big:
        index = big.current.search_index()
        assert index.kind == "ivf"
        index.n_probe = index.n_lists
        assert [[r.item_id for r in big.search(q, k=10)] for q in queries] == want
        index.n_probe = 1  # one list: too few products of the brand -> the exact scan answers
        assert [r.item_id for r in big.search(queries[0], k=5, filters={"brand": brand})] == want_brand


def test_query_embeddings_are_cached_and_bounded(tiny_run, monkeypatch):
    import fusion.engine as engine_module

    run, _ = tiny_run
    monkeypatch.setattr(engine_module, "QUERY_CACHE", 3)
    with Engine.open(run.path) as fresh:
        encoder, encoded = fresh.encoder, []
        encode = encoder.encode
        monkeypatch.setattr(encoder, "encode", lambda texts, *a, **kw: encoded.extend(texts) or encode(texts, *a, **kw))
        first = fresh.encode_queries(["headphones", "tea", "headphones"])
        assert encoded == ["headphones", "tea"] and first.shape[0] == 3
        assert (first[0] == first[2]).all()
        again = fresh.encode_queries(["tea"])
        assert encoded == ["headphones", "tea"] and (again[0] == first[1]).all()
        fresh.encode_queries(["a", "b"])             # 4 distinct queries: the least recent ("headphones") goes
        fresh.encode_queries(["headphones"])
        assert encoded == ["headphones", "tea", "a", "b", "headphones"]
        assert (fresh.encode_queries(["headphones"]) == encode(["headphones"])).all()


def reference_similar(engine, item: str, k: int, allowed=None, among=None) -> tuple[list[str], list[float]]:
    """The products most like ``item`` by brute force: the mean of the GNN and text cosines,
    the item itself and products outside ``allowed`` (bool [I]) / ``among`` (rows) left out."""
    import torch

    v = engine.current
    i = v.item_row(item)
    gnn = torch.nn.functional.normalize(v.tables.item_gnn, dim=-1)
    score = (gnn @ gnn[i] + v.tables.item_text @ v.tables.item_text[i]) / 2
    score[i] = -math.inf
    if allowed is not None:
        score = score.masked_fill(~allowed, -math.inf)
    if among is not None:
        keep = torch.zeros(len(score), dtype=torch.bool)
        keep[among] = True
        score = score.masked_fill(~keep, -math.inf)
    top = torch.topk(score, k)
    ok = torch.isfinite(top.values)
    return [str(v.catalogue.ids[j]) for j in top.indices[ok].tolist()], top.values[ok].tolist()


def test_similar_is_pinned_to_the_exact_scan_and_its_ivf_index(tiny_run, engine, monkeypatch):
    """``similar`` = the brute-force top-k of the mean of two cosines (exact below
    SIMILAR_IVF_MIN); through an IVF index probing every list the same answer; probing one
    list, the best of that list's products, or the exact scan when it holds too few that pass."""
    import fusion.engine as engine_module

    run, _ = tiny_run
    c = engine.catalogue
    brand = c.brands[0]
    cases = [(None, None), ({"brand": brand}, c.brands == brand), ({"max_price": float(np.nanmedian(c.prices))},
                                                                   np.nan_to_num(c.prices, nan=np.inf) <= np.nanmedian(c.prices))]

    def check(eng, one_list: bool) -> int:
        import torch

        fallbacks = 0
        for item in c.ids:
            for filters, mask in cases:
                allowed = None if mask is None else torch.from_numpy(np.asarray(mask, bool))
                got = eng.similar(item, k=3, filters=filters)
                want_ids, want_scores = reference_similar(eng, item, 3, allowed)
                if one_list:
                    index = eng.current.similar_index()
                    i = eng.item_row(item)
                    probe = int(torch.topk(index.vectors[i] @ index.centroids.T, 1).indices[0])
                    members = index.order[index.offsets[probe]: index.offsets[probe + 1]]
                    in_list = reference_similar(eng, item, 3, allowed, among=members)
                    if len(in_list[0]) >= min(3, len(want_ids)):
                        want_ids, want_scores = in_list
                    else:
                        fallbacks += 1
                assert [r.item_id for r in got] == want_ids, (item, filters)
                assert [r.score for r in got] == pytest.approx(want_scores, abs=1e-5)
        return fallbacks

    check(engine, one_list=False)
    monkeypatch.setattr(engine_module, "SIMILAR_IVF_MIN", 1)
    with Engine.open(run.path) as big:
        index = big.current.similar_index()
        assert index.kind == "ivf"
        index.n_probe = index.n_lists
        check(big, one_list=False)
        index.n_probe = 1
        assert check(big, one_list=True) > 0  # some filtered lists were too thin: the exact scan answered


def test_search_relevance_comes_from_the_text_match_without_judged_queries(tmp_path):
    """A run without judged queries has an untrained relevance head: search ranks by the
    query's text match instead (the best candidate at TEXT_RELEVANCE_TOP). With product text
    vectors from the run's (tiny random) encoder, a search for a product's title finds that
    product first for many products; the untrained head found 2 of 40."""
    import pandas as pd
    import torch

    from fusion.engine import TEXT_RELEVANCE_TOP, text_relevance_logits
    from fusion.text.encoder import load_run_encoder
    from fusion.text.texts import product_texts

    cos = torch.tensor([[0.9, 0.5, 0.1, 0.0]])
    z = text_relevance_logits(cos, torch.tensor([[True, True, True, False]]))
    assert float(z[0, 0]) == pytest.approx(TEXT_RELEVANCE_TOP) and z[0, 0] > z[0, 1] > z[0, 2] > z[0, 3]
    run, _ = make_tiny_run(tmp_path)
    with Engine.open(run.path) as engine:
        ids = engine.catalogue.ids
    items = pd.read_parquet(run.catalogue_items).set_index("item_id").reindex(ids).reset_index()
    tables = FeatureTables.load(run.fusion_tables)
    tables.item_text = torch.nn.functional.normalize(load_run_encoder(run).encode(list(product_texts(items))), dim=-1)
    tables.save(run.fusion_tables)
    run.write_manifest()
    with Engine.open(run.path) as engine:
        assert engine.current.relevance_from_text  # no judgements in the run
        first = sum(engine.search(str(engine.catalogue.titles[j]), k=3)[0].item_id == ids[j] for j in range(len(ids)))
    assert first >= 12, first  # 18 of 40 measured (a random 16-dim BERT confuses similar titles)


def test_query_encoder_precision_is_auto_by_default(tiny_run):
    """Search queries are encoded in bf16 where the CPU computes it natively ("auto"),
    else fp32; an explicit text_precision is kept; either way the query vectors agree."""
    from fusion.text.encoder import resolve_precision

    run, _ = tiny_run
    queries = ["a gift", "headphones with bass", "frying pan"]
    with Engine.open(run.path) as auto, Engine.open(run.path, text_precision="fp32") as exact:
        assert auto.encoder.precision == resolve_precision("auto")
        assert exact.encoder.precision == "fp32"
        cosine = (auto.encode_queries(queries) * exact.encode_queries(queries)).sum(-1)
        assert float(cosine.min()) >= 0.99


def test_similar_of_a_product_without_any_vector_is_empty(engine):
    """A product whose graph and text vectors are both zero is like nothing: [] -- not k
    products in an arbitrary order at score 0."""
    import dataclasses

    v, i = engine.current, 3
    item_gnn, item_text = v.tables.item_gnn.clone(), v.tables.item_text.clone()
    item_gnn[i] = item_text[i] = 0.0
    tables = dataclasses.replace(v.tables, item_gnn=item_gnn, item_text=item_text)
    eng = Engine(v.model, tables, v.user_index, v.catalogue, v.seen, v.popularity, candidates=v.candidates)
    assert eng.similar(str(v.catalogue.ids[i]), k=5) == []
    others = eng.similar(str(v.catalogue.ids[4]), k=5)
    assert len(others) == 5 and all(r.score != 0 for r in others)


def test_a_result_line_is_one_line_whatever_the_title():
    """A title with newlines split the CLI's result line (the score on a line of its own)."""
    line = str(Recommendation("i1", "Title 0\nsecond   line\t" + "x" * 500, -1.5, {"ctr": 0.5, "cvr": 0.25}))
    assert "\n" not in line and "Title 0 second line" in line and "score  -1.500" in line
    from fusion.cli import one_line

    assert one_line("a\nb " + "c" * 100, 10) == "a b ccccc…"


def test_search_in_a_run_without_product_text_says_so(tmp_path):
    """A shop whose products have no text -- empty titles, or titles that only repeat the
    product's id (a loader's fallback name) -- cannot be searched: every product matched
    every query alike (relevance 0.881 for each, ranked by clicks), so any query "found" the
    whole catalogue. The search is an InvalidRequestError naming the query (a 422 over
    HTTP, one line from the CLI); recommend and similar still answer. With one product
    that has text, search answers as before."""
    import pandas as pd

    from kg.run_dir import save_parquet

    run, _ = make_tiny_run(tmp_path)
    items = pd.read_parquet(run.catalogue_items)
    n = len(items)
    blank = items.assign(title="", brand="", description="", categories=[[] for _ in range(n)],
                         features=[[] for _ in range(n)])

    def serve(catalogue: pd.DataFrame) -> Engine:
        save_parquet(catalogue, run.catalogue_items)
        run.write_manifest()
        return Engine.open(run.path)

    for textless in (blank, blank.assign(title=blank["item_id"])):
        with serve(textless) as engine:
            with pytest.raises(InvalidRequestError, match="no query can match this run's products") as err:
                engine.search("anything at all", k=100)
            assert err.value.field == "query"
            with pytest.raises(InvalidRequestError, match="empty"):  # a malformed query is still named as such
                engine.search("  ")
            user, item = engine.user_index[3], str(engine.catalogue.ids[0])
            assert len(engine.recommend(user, k=5)) == 5 and len(engine.similar(item, k=5)) == 5
    one = blank.copy()
    one.loc[0, "title"] = "Wireless headphones"
    with serve(one) as engine:
        assert len(engine.search("headphones", k=5)) == 5
