"""RecBole atomic-file loader: the real ml-100k-kg folder and small inline folders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import loaders
from loaders.report import LoadError

_CACHE: dict[str, loaders.Dataset] = {}


@pytest.fixture
def ml100k(ml100k_dir: Path) -> loaders.Dataset:
    key = str(ml100k_dir)
    if key not in _CACHE:
        _CACHE[key] = loaders.load("recbole", ml100k_dir)
    return _CACHE[key]


def test_ml100k_counts(ml100k, ml100k_dir):
    ds = ml100k
    assert ds.name == "ml-100k"
    assert ds.sizes() == {"users": 943, "items": 1682, "interactions": 100_000, "reviews": 0,
                          "item_links": 0, "triples": 91_631, "item_entities": 1598, "judgements": 0}
    rep = ds.report
    # every row of every file is read and kept: no duplicates (triples checked after dedup)
    for ext, n in [("inter", 100_000), ("item", 1682), ("user", 943), ("kg", 91_631), ("link", 1598)]:
        f = rep.files[str(ml100k_dir / f"ml-100k.{ext}")]
        assert (f.read, f.kept, f.rejected) == (n, n, 0), ext
    assert rep.rejects == []
    assert not ds.triples.duplicated().any()


def test_ml100k_mapping(ml100k):
    ds = ml100k
    inter = ds.interactions
    assert set(inter["event"]) == {"rating"} and set(inter["split"]) == {""}
    assert inter["value"].between(1, 5).all()
    assert inter.iloc[0].to_dict() == {"user_id": "196", "item_id": "242", "event": "rating",
                                       "value": 3.0, "timestamp": 881250949, "split": ""}
    toy = ds.items.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert toy["description"] == "Released 1995"
    assert math.isnan(toy["price"])
    assert "unknown" not in set(ds.items["categories"].explode().dropna())
    assert ds.users["name"].eq("").all()
    assert ds.triples.iloc[0].to_dict() == {"head": "m.04ctbw8", "relation": "film.producer.film", "tail": "m.0bln8"}
    assert ds.item_entities.set_index("item_id").loc["476", "entity_id"] == "m.08gjyx"


def _folder(tmp_path: Path, **files: str) -> Path:
    for ext, text in files.items():
        (tmp_path / f"toy.{ext}").write_text(text, encoding="utf-8")
    return tmp_path


INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n2\t10\t3.5\t881250950.7\n2\t20\t5\t\n"
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tprice:float\n" \
       "10\tToy Story\t1995\tAnimation Children's Comedy\t9.99\n20\tHeat\t\tAction  Crime\t\n"
USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"


def test_small_folder(tmp_path):
    path = _folder(tmp_path, inter=INTER, item=ITEM, user=USER,
                   kg="head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.film.genre\tm.2\nm.1\tfilm.film.genre\tm.2\n",
                   link="item_id:token\tentity_id:token\n10\tm.1\n")
    ds = loaders.load("recbole", path)
    items = ds.items.set_index("item_id")
    assert items.loc["10", "price"] == 9.99 and math.isnan(items.loc["20", "price"])
    assert items.loc["20", "categories"] == ["Action", "Crime"] and items.loc["20", "description"] == ""
    assert ds.interactions["timestamp"].tolist() == [881250949, 881250950, 0]
    assert ds.interactions["value"].tolist() == [4.0, 3.5, 5.0]
    assert len(ds.triples) == 1
    dup = ds.report.rejects
    assert [(Path(r.file).name, r.line, r.error) for r in dup] == [("toy.kg", 3, False)]
    assert "first seen on line 2" in dup[0].reason


def test_inter_only_makes_items_users_and_clicks(tmp_path):
    path = _folder(tmp_path, inter="user_id:token\titem_id:token\nu1\ti1\nu1\ti2\nu2\ti1\n")
    ds = loaders.load("recbole", path / "toy.inter")
    assert sorted(ds.items["item_id"]) == ["i1", "i2"] and sorted(ds.users["user_id"]) == ["u1", "u2"]
    assert set(ds.interactions["event"]) == {"click"} and set(ds.interactions["value"]) == {1.0}
    assert set(ds.interactions["timestamp"]) == {0}


def test_custom_field_names(tmp_path):
    path = _folder(tmp_path, inter="uid:token\tiid:token\tstars:float\nu1\ti1\t2\n")
    ds = loaders.load("recbole", path, user_field="uid", item_field="iid", rating_field="stars")
    assert ds.interactions.iloc[0][["user_id", "item_id", "event", "value"]].tolist() == ["u1", "i1", "rating", 2.0]


def test_unknown_user_and_link_item(tmp_path):
    path = _folder(tmp_path, inter=INTER + "3\t10\t4\t881250999\n", item=ITEM, user=USER,
                   link="item_id:token\tentity_id:token\n10\tm.1\n99\tm.9\n")
    with pytest.raises(LoadError, match=r"toy\.inter, line 5: field 'user_id': unknown user"):
        loaders.load("recbole", path)
    ds = loaders.load("recbole", path, strict=False)
    got = [(Path(r.file).name, r.line, r.field) for r in ds.report.rejects]
    assert got == [("toy.inter", 5, "user_id"), ("toy.link", 3, "item_id")]
    assert len(ds.item_entities) == 1 and len(ds.interactions) == 3


def test_wrong_number_of_fields(tmp_path):
    path = _folder(tmp_path, inter=INTER + "3\t10\t4\t881250999\textra\n")
    with pytest.raises(LoadError, match=r"toy\.inter, line 5: wrong number of fields"):
        loaders.load("recbole", path)
    ds = loaders.load("recbole", path, strict=False)
    assert ds.report.files[str(path / "toy.inter")].read == 4
    assert len(ds.interactions) == 3


def test_missing_inter_file(tmp_path):
    _folder(tmp_path, item=ITEM)
    with pytest.raises(LoadError, match="expected one .inter file"):
        loaders.load("recbole", tmp_path)


# ------------------------------------------------------------------ other RecBole conversions

AMAZON_ITEM = ("item_id:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\ttitle:token\tprice:float\t"
               "brand:token\n"
               "0001\t\t\t'Books', 'Literature & Fiction', 'Science Fiction & Fantasy'\tThe Hobbit\t12.99\tPenguin\n"
               "0002\tBooks\t12346\t'Books'\tDune\t\t\n"
               "0004\tBooks\t12347\t'Arts, Crafts & Sewing', \"Children's Books\"\t\t0.0\tTor Books\n"
               "0006\t\t\t\tCien años de soledad\t7.5\tVintage\n")


def test_amazon_category_lists_split_on_commas(tmp_path):
    """RecBole's Amazon conversion writes ``str(set)[1:-1]``: quoted names, comma-separated."""
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\t0001\t5\t1529193600\n"
    path = _folder(tmp_path, inter=inter, item=AMAZON_ITEM)
    ds = loaders.load("recbole", path)
    cats = ds.items.set_index("item_id")["categories"].to_dict()
    assert cats == {"0001": ["Books", "Literature & Fiction", "Science Fiction & Fantasy"], "0002": ["Books"],
                    "0004": ["Arts, Crafts & Sewing", "Children's Books"], "0006": []}
    assert ds.report.notes()["category lists split on commas (toy.item: categories)"] == 3
    # an empty title falls back, as in the Amazon loaders: brand — leaf category
    assert ds.items.set_index("item_id").loc["0004", "title"] == "Tor Books — Arts, Crafts & Sewing"
    assert ds.report.titles_fallback == 1


def test_yelp_category_lists_split_on_commas(tmp_path):
    item = ("business_id:token\titem_name:token_seq\tcity:token_seq\tcategories:token_seq\n"
            "b1\tPizzeria Bianco\tPhoenix\tRestaurants, Pizza, Italian\n"
            "b4\tThe Tipsy Cow\tPhoenix\tNightlife, Bars, American (Traditional)\n"
            "b5\tDr. Li\tPhoenix\tAcupuncture\n"
            "b6\tCafé Ü\tPhoenix\t\n")
    inter = "user_id:token\tbusiness_id:token\tstars:float\tdate:float\nu1\tb1\t4\t1529193600\n"
    path = _folder(tmp_path, inter=inter, item=item)
    ds = loaders.load("recbole", path, item_field="business_id", rating_field="stars", time_field="date")
    items = ds.items.set_index("item_id")
    assert items["categories"].to_dict() == {"b1": ["Restaurants", "Pizza", "Italian"],
                                             "b4": ["Nightlife", "Bars", "American (Traditional)"],
                                             "b5": ["Acupuncture"], "b6": []}
    assert items.loc["b1", "title"] == "Pizzeria Bianco"
    assert ds.report.notes() == {"category lists split on commas (toy.item: categories)": 3}


def test_no_genres_listed_is_no_category(tmp_path):
    """ml-20m's ``(no genres listed)`` is ml-100k's ``unknown``; space-separated genres stay split on spaces."""
    item = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n"
            "1\tToy Story\t1995\tAdventure Animation Children Comedy Fantasy\n"
            "6\tCity of God (Cidade de Deus)\t1998\t(no genres listed)\n")
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t3.5\t1112486027\n"
    ds = loaders.load("recbole", _folder(tmp_path, inter=inter, item=item))
    cats = ds.items.set_index("item_id")["categories"].to_dict()
    assert cats == {"1": ["Adventure", "Animation", "Children", "Comedy", "Fantasy"], "6": []}
    assert ds.report.notes() == {}


def test_millisecond_timestamps(tmp_path):
    """RecBole's Retailrocket conversion copies the raw ms timestamps."""
    inter = ("timestamp:float\tvisitor_id:token\titem_id:token\n"
             "1433221332117\t147\t42\n1433221393351\t125\t134\n1433221332\t125\t42\n")
    ds = loaders.load("recbole", _folder(tmp_path, inter=inter), user_field="visitor_id")
    assert ds.interactions["timestamp"].tolist() == [1433221332, 1433221393, 1433221332]
    assert ds.report.notes() == {"timestamps read as milliseconds": 2, (
        "toy.inter: no rating or label column (rating, stars, label; rating_field=…, label_field=…): "
        "every row read as a click"): 3}
    assert ds.report.rejects == []


def test_link_to_an_item_without_rows_is_filtered(tmp_path):
    """A full-KG ``.link`` beside a filtered ``.inter``: RecBole ignores the extra links."""
    path = _folder(tmp_path, inter=INTER, link="item_id:token\tentity_id:token\n10\tm.1\n99\tm.9\n")
    ds = loaders.load("recbole", path)  # strict: not an error
    assert ds.item_entities.to_dict("records") == [{"item_id": "10", "entity_id": "m.1"}]
    (rej,) = ds.report.rejects
    assert (Path(rej.file).name, rej.line, rej.field, rej.error) == ("toy.link", 3, "item_id", False)
    assert "(filtered)" in ds.report.summary()


def test_empty_title_falls_back(tmp_path):
    """As in the Amazon loaders: brand — leaf category, else the brand, else the category, else the id."""
    item = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tbrand:token\n"
            "10\t\t1995\tComedy\t\n20\t--\t1996\t\tAcme\n30\t\t\t\t\n40\tHeat\t1995\tAction\t\n")
    ds = loaders.load("recbole", _folder(tmp_path, inter="user_id:token\titem_id:token\nu1\t10\n", item=item))
    assert ds.items["title"].tolist() == ["Comedy", "Acme", "30", "Heat"]
    assert ds.report.titles_fallback == 3
    assert "titles replaced by a fallback name (brand — category, description or id): 3" in ds.report.summary()


# ------------------------------------------------------------------ .inter columns under other names

YELP_INTER = ("review_id:token\tuser_id:token\tbusiness_id:token\tstars:float\tuseful:float\tdate:float\n"
              "r1\tu1\tb1\t4\t0\t1529193600\nr2\tu1\tb2\t2\t3\t1529280000\nr3\tu2\tb1\t5\t1\t1529366400\n")


def test_yelp_stars_and_date_are_the_rating_and_time(tmp_path):
    """RecBole's Yelp conversion names them ``stars`` and ``date``: read, and said so, with
    the columns left unused (they used to be dropped without a word: clicks at time 0)."""
    ds = loaders.load("recbole", _folder(tmp_path, inter=YELP_INTER), item_field="business_id")
    inter = ds.interactions
    assert inter[["item_id", "event", "value", "timestamp"]].values.tolist() == [
        ["b1", "rating", 4.0, 1529193600], ["b2", "rating", 2.0, 1529280000], ["b1", "rating", 5.0, 1529366400]]
    assert ds.report.notes() == {
        "toy.inter: stars read as the rating (another column: rating_field=…)": 3,
        "toy.inter: date read as the time (another column: time_field=…)": 3,
        "toy.inter: columns not used: review_id, useful": 3}
    summary = ds.report.summary()
    assert "toy.inter: columns not used: review_id, useful: 3" in summary


def test_an_alias_not_typed_float_is_not_read(tmp_path):
    """``date:token`` may hold any text: not taken for the time (RecBole needs it typed float)."""
    inter = "user_id:token\titem_id:token\tdate:token\nu1\ti1\t2018-06-17\n"
    ds = loaders.load("recbole", _folder(tmp_path, inter=inter))
    assert ds.interactions["timestamp"].tolist() == [0]
    notes = ds.report.notes()
    assert notes["toy.inter: columns not used: date"] == 1
    assert notes["toy.inter: no time column (timestamp, date, transaction_date; time_field=…): "
                 "events kept at time 0"] == 1


def test_a_named_field_the_header_lacks_is_an_error(tmp_path):
    path = _folder(tmp_path, inter=YELP_INTER)
    with pytest.raises(LoadError, match=r"toy\.inter, line 1: field 'item_id': missing column \(header has "
                                        r"review_id, user_id, business_id, stars, useful, date; name the column "
                                        r"with item_field=…\)"):
        loaders.load("recbole", path)
    with pytest.raises(LoadError, match=r"field 'rating': no such column for the rating \(rating_field=rating; "
                                        r"header has review_id"):
        loaders.load("recbole", path, item_field="business_id", rating_field="rating")
    ds = loaders.load("recbole", path, item_field="business_id", rating_field="", time_field="")
    assert set(ds.interactions["event"]) == {"click"} and set(ds.interactions["timestamp"]) == {0}
    assert ds.report.notes()["toy.inter: columns not used: review_id, stars, useful, date"] == 3


CTR_INTER = ("user_id:token\titem_id:token\tlabel:float\ttimestamp:float\n"
             "1\t1193\t1\t978300760\n1\t661\t0\t978302109\n2\t11\t1\t978302009\n2\t555\t0\t978302321\n")


def test_label_0_is_an_impression_not_a_positive(tmp_path):
    """RecBole's LABEL_FIELD (MIND, Avazu): 0 is a negative -- shown, not clicked -- never a
    click; a label-1 row is an impression and its click, as an impression source logs them."""
    ds = loaders.load("recbole", _folder(tmp_path, inter=CTR_INTER))
    got = sorted(map(tuple, ds.interactions[["user_id", "item_id", "event", "timestamp"]].values.tolist()))
    assert got == [("1", "1193", "click", 978300760), ("1", "1193", "impression", 978300760),
                   ("1", "661", "impression", 978302109),
                   ("2", "11", "click", 978302009), ("2", "11", "impression", 978302009),
                   ("2", "555", "impression", 978302321)]
    f = ds.report.files[str(tmp_path / "toy.inter")]
    assert (f.read, f.kept, f.rejected) == (4, 4, 0)  # rows, not events
    assert ds.report.notes() == {"toy.inter: label 0 rows read as impressions (shown, not clicked)": 2,
                                 "toy.inter: label 1 rows read as an impression and a click at its time": 2}


def test_a_label_other_than_0_or_1_is_an_error(tmp_path):
    path = _folder(tmp_path, inter=CTR_INTER + "3\t11\t2\t978302009\n")
    with pytest.raises(LoadError, match=r"toy\.inter, line 6: field 'label': not a label: RecBole's labels are 0 "
                                        r"\(negative\) or 1"):
        loaders.load("recbole", path)
    path = _folder(tmp_path, inter=CTR_INTER + "3\t11\t2\t978302009\n3\t12\t\t978302009\n3\t13\tyes\t978302009\n")
    ds = loaders.load("recbole", path, strict=False)
    got = [(Path(r.file).name, r.line, r.field, r.reason.split(":")[0]) for r in ds.report.rejects]
    assert got == [("toy.inter", 7, "label", "missing required value"), ("toy.inter", 8, "label", "not a number"),
                   ("toy.inter", 6, "label", "not a label")]
    f = ds.report.files[str(path / "toy.inter")]
    assert (f.read, f.kept, f.rejected) == (7, 4, 3)
    assert len(ds.interactions) == 6


def test_label_with_a_rating_and_a_repeated_impression(tmp_path):
    """A label-1 rating is an impression and the rating; a label-0 row of the same user,
    product and time is that impression already (one SHOWN, not two)."""
    inter = ("user_id:token\titem_id:token\trating:float\tlabel:float\ttimestamp:float\n"
             "1\t10\t5\t1\t978300760\n1\t10\t1\t0\t978300760\n1\t20\t2\t0\t978300800\n")
    ds = loaders.load("recbole", _folder(tmp_path, inter=inter))
    got = sorted(map(tuple, ds.interactions[["item_id", "event", "value"]].values.tolist()))
    assert got == [("10", "impression", 1.0), ("10", "rating", 5.0), ("20", "impression", 1.0)]
    assert ds.report.notes()["toy.inter: label 1 rows read as an impression and a rating at its time"] == 1
    ds = loaders.load("recbole", _folder(tmp_path, inter=inter), label_field="")  # the label not read
    assert ds.interactions[["item_id", "event", "value"]].values.tolist() == [["10", "rating", 5.0],
                                                                              ["20", "rating", 2.0]]
    assert [r.reason.split(":")[0] for r in ds.report.rejects] == ["duplicate interaction"]
    assert ds.report.notes() == {"toy.inter: columns not used: label": 2}
