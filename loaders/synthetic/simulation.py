"""The event simulation and the tables built from the truth and the simulated events:
items, interactions, reviews, item links, the knowledge graph and search judgements.
:func:`build_tables` makes them all."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loaders.dataset import CATEGORY_SEP, make_table
from loaders.synthetic.arrays import group_index, ids
from loaders.synthetic.truth import EXTRA_QUANTITY, SyntheticTruth
from loaders.synthetic.vocabulary import (
    PRICE_REMARKS,
    PRICE_WORDS,
    QUALITY_REMARKS,
    QUALITY_SENTENCES,
    STAR_ADJECTIVES,
    STAR_SENTENCES,
    TASTE_REMARKS,
    TITLE_ADJECTIVES,
    price_band,
    quality_band,
    slug,
)

EVENT_CODES = ("impression", "click", "purchase", "rating", "review")


def _take_str(values, codes: np.ndarray) -> pd.Series:
    """A pandas string Series ``values[codes]`` without a per-row Python loop."""
    base = pd.array(np.asarray(values, dtype=object), dtype="str")
    return pd.Series(base.take(np.asarray(codes, dtype=np.int64)))


# --------------------------------------------------------------------------- items

def _items_table(truth: SyntheticTruth, rng: np.random.Generator) -> pd.DataFrame:
    I = len(truth.item_ids)
    qb = quality_band(truth.item_quality)
    pb = price_band(truth.item_price_z)
    adj_pick = rng.integers(0, 3, size=I)
    model_letter = rng.integers(0, 26, size=I)
    model_number = rng.integers(10, 1000, size=I) * 10
    sent_pick = rng.integers(0, 2, size=I)
    desc_pick = rng.integers(0, 3, size=(I, 2))
    extra = rng.random((I, 3)) < 0.5
    letters = "ABCDEFGHJKLMNPRSTVWXZ"
    titles, descriptions, categories, features = [], [], [], []
    for j in range(I):
        s, c, b = truth.item_subcategory[j], truth.item_category[j], truth.item_brand[j]
        noun, brand = truth.subcategory_nouns[s], truth.brand_names[b]
        d = truth.subcategory_descriptors[s]
        d1, d2 = d[desc_pick[j, 0]], d[(desc_pick[j, 0] + 1 + desc_pick[j, 1] % 2) % 3]
        material = truth.material_names[truth.item_material[j]]
        style = truth.style_names[truth.item_style[j]]
        model = f"{letters[model_letter[j] % len(letters)]}-{model_number[j]}"
        titles.append(f"{brand} {TITLE_ADJECTIVES[qb[j]][adj_pick[j]]} {noun} {model}")
        descriptions.append(
            f"A {PRICE_WORDS[pb[j]]} {d1} {noun} by {brand}, {d2} and {style}. "
            f"{QUALITY_SENTENCES[qb[j]][sent_pick[j]]} Made of {material}. "
            f"Part of our {truth.category_names[c]} range."
        )
        categories.append([truth.category_names[c] + CATEGORY_SEP + truth.subcategory_names[s]])
        bullets = [f"{d1.capitalize()}, {d2} {noun}", f"Made of {material}"]
        if extra[j, 0]:
            bullets.append(f"{style.capitalize()} style")
        if extra[j, 1]:
            bullets.append(f"{1 + qb[j] // 2}-year warranty")
        if extra[j, 2] and truth.item_designer[j] >= 0 and len(bullets) < 4:
            bullets.append(f"Designed by {truth.designer_names[truth.item_designer[j]]}")
        features.append(bullets)
    brands = np.asarray(truth.brand_names, dtype=object)[truth.item_brand]
    return make_table("items", {
        "item_id": pd.Series(truth.item_ids, dtype="str"),
        "title": pd.Series(titles, dtype="str"),
        "description": pd.Series(descriptions, dtype="str"),
        "brand": pd.Series(brands, dtype="str"),
        "categories": pd.Series(categories, dtype=object),
        "price": truth.item_price,
        "features": pd.Series(features, dtype=object),
    })


# --------------------------------------------------------------------------- interactions

@dataclass
class _Log:
    """The simulated impression stream (after trimming), sorted by user then time."""

    user: np.ndarray
    item: np.ndarray
    session: np.ndarray   # global session number
    ts: np.ndarray        # impression timestamp
    clicked: np.ndarray
    bought: np.ndarray
    quantity: np.ndarray
    rated: np.ndarray
    review: np.ndarray
    stars: np.ndarray
    click_ts: np.ndarray
    buy_ts: np.ndarray
    rate_ts: np.ndarray


def _simulate(truth: SyntheticTruth, streams: dict[str, np.random.Generator]) -> _Log:
    cfg = truth.config
    U, I, K = cfg.n_users, cfg.n_items, cfg.n_categories
    n = cfg.n_interactions  # candidate impressions: enough, since each gives >= 1 row

    # -- impressions: user by activity, item by popularity / taste / uniform
    rng = streams["impressions"]
    user = rng.choice(U, size=n, p=truth.impression_user_weights())
    mode = rng.random(n)
    u1, u2 = rng.random(n), rng.random(n)
    item = np.floor(u1 * I).astype(np.int64)                       # uniform
    pop = mode < cfg.impression_popularity
    item[pop] = np.minimum(np.searchsorted(np.cumsum(truth.item_popularity), u1[pop], side="right"), I - 1)
    tgt = (~pop) & (mode < cfg.impression_popularity + cfg.impression_targeted)
    if tgt.any():
        cum = np.cumsum(truth.user_taste, axis=1)
        cat = np.minimum((cum[user[tgt]] < u1[tgt, None]).sum(axis=1), K - 1)
        order, start, count = group_index(truth.item_category, K)
        item[tgt] = order[start[cat] + np.minimum(np.floor(u2[tgt] * count[cat]).astype(np.int64), count[cat] - 1)]

    # -- funnel
    rng = streams["funnel"]
    taste = truth.taste(user, item)
    clicked = rng.random(n) < truth.p_click(user, item, taste)
    bought = clicked & (rng.random(n) < truth.p_buy(user, item, taste))
    uq = rng.random(n)
    quantity = 1 + (uq > 0.75).astype(np.int64) + (uq > 0.93)
    if cfg.spend_sigma:  # the user's spend level scales the extra quantity: 1 + Poisson(0.32 s_u)
        quantity = 1 + streams["lifecycle"].poisson(EXTRA_QUANTITY * truth.user_spend[user])
    rate_draw = rng.random(n) < cfg.rating_rate
    want_rate = bought & rate_draw
    review = rng.random(n) < cfg.review_share
    noise = rng.standard_normal(n) * cfg.rating_noise
    # only the first purchase of a (user, item) pair may be rated: keeps keys unique
    first = np.zeros(n, dtype=bool)
    b_idx = np.flatnonzero(bought)
    if len(b_idx):
        pair = user[b_idx].astype(np.int64) * I + item[b_idx]
        _, first_pos = np.unique(pair, return_index=True)
        first[b_idx[first_pos]] = True
    rated = want_rate & first

    # -- cut the stream so that the total number of rows reaches the target
    rows = 1 + clicked.astype(np.int64) + bought + rated
    m = int(np.searchsorted(np.cumsum(rows), n, side="right"))
    keep = slice(0, m)
    user, item, taste = user[keep], item[keep], taste[keep]
    clicked, bought, quantity = clicked[keep], bought[keep], quantity[keep]
    review_draw = review[keep]
    rated, review, noise = rated[keep], review[keep] & rated[keep], noise[keep]
    stars = np.clip(np.round(truth.rating_mean(user, item, taste) + noise), 1, 5)

    # -- time: sort by user (stable keeps the draw order = chronological order)
    order = np.argsort(user, kind="stable")
    user, item, clicked, bought = user[order], item[order], clicked[order], bought[order]
    quantity, rated, review, stars = quantity[order], rated[order], review[order], stars[order]
    rng = streams["time"]
    first_of_user = np.ones(m, dtype=bool)
    first_of_user[1:] = user[1:] != user[:-1]
    new_session = first_of_user | (rng.random(m) < 1.0 / cfg.session_length)
    session = np.cumsum(new_session) - 1
    n_sessions = int(session[-1]) + 1 if m else 0
    sess_user = user[new_session]
    gap = rng.exponential(1.0, size=n_sessions)
    cum_gap = np.cumsum(gap)
    first_sess = np.ones(n_sessions, dtype=bool)
    first_sess[1:] = sess_user[1:] != sess_user[:-1]
    sess_first_idx = np.flatnonzero(first_sess)
    base = np.repeat(cum_gap[sess_first_idx] - gap[sess_first_idx],
                     np.diff(np.append(sess_first_idx, n_sessions)))
    within = cum_gap - base                                   # cumulative gap inside the user
    # room after the last session, so the last one does not always end the span
    total = np.bincount(sess_user, weights=gap, minlength=U)[sess_user] + rng.exponential(1.0, size=n_sessions)
    span = cfg.time_span_days * 86400.0
    if cfg.join_spread or cfg.churn_rate:  # each user's sessions spread over their active time
        start, stop = truth.alive()
        frac = within / total if n_sessions else np.zeros(0)
        sess_offset = np.floor(start[sess_user] + np.maximum(stop - start, 0.0)[sess_user] * frac).astype(np.int64)
    else:
        sess_offset = np.floor(span * within / total).astype(np.int64) if n_sessions else np.zeros(0, np.int64)
    user_start = np.flatnonzero(first_of_user)
    pos_in_user = np.arange(m) - np.repeat(user_start, np.diff(np.append(user_start, m)))
    ts = cfg.start_timestamp + sess_offset[session] + 60 * pos_in_user
    click_ts = ts + rng.integers(1, 30, size=m)
    buy_ts = ts + rng.integers(30, 60, size=m)
    rate_ts = buy_ts + rng.integers(86400, 30 * 86400, size=m)
    log = _Log(user, item, session, ts.astype(np.int64), clicked, bought, quantity, rated, review,
               stars, click_ts, buy_ts, rate_ts)
    if cfg.new_item_share:
        _launch(truth, log, rate_draw[keep][order], review_draw[order], noise[order], streams["lifecycle"])
    return log


def _launch(truth: SyntheticTruth, log: _Log, rate_draw: np.ndarray, review_draw: np.ndarray,
            noise: np.ndarray, rng: np.random.Generator) -> None:
    """Products are on sale from their launch: an impression of a product before its launch
    is redrawn by popularity among the products launched by then (rejection, 50 tries,
    then the most popular product on sale from the start), and its funnel drawn anew
    (in place; ``rate_draw``, ``review_draw`` and ``noise`` are the rows' rating draws)."""
    cfg = truth.config
    I = len(truth.item_ids)
    at = log.ts - cfg.start_timestamp
    moved = np.flatnonzero(truth.item_launch[log.item] > at)
    bad = moved
    cum = np.cumsum(truth.item_popularity)
    for _ in range(50):
        if not len(bad):
            break
        log.item[bad] = np.minimum(np.searchsorted(cum, rng.random(len(bad)), side="right"), I - 1)
        bad = bad[truth.item_launch[log.item[bad]] > at[bad]]
    if len(bad):
        old = np.flatnonzero(truth.item_launch == 0)
        log.item[bad] = old[np.argmax(truth.item_popularity[old])] if len(old) else int(np.argmin(truth.item_launch))
    u, i = log.user[moved], log.item[moved]
    taste = truth.taste(u, i)
    log.clicked[moved] = rng.random(len(moved)) < truth.p_click(u, i, taste)
    log.bought[moved] = log.clicked[moved] & (rng.random(len(moved)) < truth.p_buy(u, i, taste))
    log.stars[moved] = np.clip(np.round(truth.rating_mean(u, i, taste) + noise[moved]), 1, 5)
    # only the first purchase of a (user, item) pair may be rated (keeps keys unique)
    first = np.zeros(len(log.user), dtype=bool)
    b_idx = np.flatnonzero(log.bought)
    if len(b_idx):
        _, first_pos = np.unique(log.user[b_idx].astype(np.int64) * I + log.item[b_idx], return_index=True)
        first[b_idx[first_pos]] = True
    log.rated[:] = rate_draw & log.bought & first
    log.review[:] = review_draw & log.rated


def _interactions_table(truth: SyntheticTruth, log: _Log) -> pd.DataFrame:
    parts = [
        (np.ones(len(log.user), bool), 0, np.ones(len(log.user)), log.ts),
        (log.clicked, 1, np.ones(len(log.user)), log.click_ts),
        (log.bought, 2, log.quantity.astype(np.float64), log.buy_ts),
        (log.rated & ~log.review, 3, log.stars, log.rate_ts),
        (log.review, 4, log.stars, log.rate_ts),
    ]
    user = np.concatenate([log.user[m] for m, *_ in parts])
    item = np.concatenate([log.item[m] for m, *_ in parts])
    event = np.concatenate([np.full(int(m.sum()), code, dtype=np.int64) for m, code, *_ in parts])
    value = np.concatenate([v[m] for m, _, v, _ in parts])
    ts = np.concatenate([t[m] for m, _, _, t in parts])
    order = np.lexsort((event, ts, user))
    return make_table("interactions", pd.DataFrame({
        "user_id": _take_str(truth.user_ids, user[order]),
        "item_id": _take_str(truth.item_ids, item[order]),
        "event": _take_str(EVENT_CODES, event[order]),
        "value": value[order],
        "timestamp": ts[order],
        "split": _take_str([""], np.zeros(len(order), dtype=np.int64)),
    }))


def _reviews_table(truth: SyntheticTruth, log: _Log, rng: np.random.Generator) -> pd.DataFrame:
    idx = np.flatnonzero(log.review)
    idx = idx[np.lexsort((log.rate_ts[idx], log.user[idx]))]
    n = len(idx)
    u, i = log.user[idx], log.item[idx]
    level = log.stars[idx].astype(np.int64) - 1
    taste = truth.taste(u, i)
    pick = rng.integers(0, 2, size=(n, 2))
    nouns = np.asarray(truth.subcategory_nouns, dtype=object)[truth.item_subcategory[i]]
    brands = np.asarray(truth.brand_names, dtype=object)[truth.item_brand[i]]
    # taste remark: > 0.5 loves the category, < 0.1 does not
    taste_level = np.where(taste > 0.5, 2, np.where(taste < 0.1, 0, 1))
    summary = STAR_ADJECTIVES[level, pick[:, 0]] + " " + nouns
    text = (STAR_SENTENCES[level, pick[:, 1]] + " The " + brands + " " + nouns + " "
            + QUALITY_REMARKS[quality_band(truth.item_quality[i])] + " "
            + PRICE_REMARKS[price_band(truth.item_price_z[i])] + " "
            + TASTE_REMARKS[taste_level])
    text = pd.Series(text, dtype="str").str.rstrip()
    return make_table("reviews", {
        "review_id": _take_str(ids("r", n), np.arange(n)) if n else pd.Series([], dtype="str"),
        "user_id": _take_str(truth.user_ids, u),
        "item_id": _take_str(truth.item_ids, i),
        "rating": log.stars[idx].astype(np.float64),
        "summary": pd.Series(summary, dtype="str"),
        "text": text,
        "timestamp": log.rate_ts[idx],
    })


# --------------------------------------------------------------------------- links

def _pairs(group: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered (a, b) item pairs, a != b, within each group; (src, dst) codes."""
    if len(group) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(group, kind="stable")
    group, item = group[order], item[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.append(starts, len(group)))
    row_size = np.repeat(sizes, sizes)
    row_start = np.repeat(starts, sizes)
    a = np.repeat(np.arange(len(group)), row_size)
    offset = np.arange(len(a)) - np.repeat(np.cumsum(row_size) - row_size, row_size)
    b = np.repeat(row_start, row_size) + offset
    src, dst = item[a], item[b]
    ok = src != dst
    return src[ok], dst[ok]


def _top_pairs(src: np.ndarray, dst: np.ndarray, n_items: int, k: int, min_count: int) -> pd.DataFrame:
    if len(src) == 0 or k == 0:
        return pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64)})
    key, count = np.unique(src.astype(np.int64) * n_items + dst, return_counts=True)
    keep = count >= min_count
    key, count = key[keep], count[keep]
    s, d = key // n_items, key % n_items
    order = np.lexsort((d, -count, s))
    s, d = s[order], d[order]
    rank = np.arange(len(s)) - np.searchsorted(s, s, side="left")
    keep = rank < k
    return pd.DataFrame({"src": s[keep], "dst": d[keep]})


def _popular_in(truth: SyntheticTruth, groups: np.ndarray, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """For each item, ``k`` draws from the items of subcategory ``groups[item]``, biased to popular."""
    I, S = len(truth.item_ids), truth.config.n_subcategories
    order, start, count = group_index(truth.item_subcategory, S, order_by=-truth.item_popularity)
    src = np.repeat(np.arange(I), k)
    g = np.repeat(groups, k)
    pos = np.floor(rng.random(len(src)) ** 2 * count[g]).astype(np.int64)
    dst = order[start[g] + np.minimum(pos, count[g] - 1)]
    ok = src != dst
    return pd.DataFrame({"src": src[ok], "dst": dst[ok]})


def _links_table(truth: SyntheticTruth, log: _Log, rng: np.random.Generator) -> pd.DataFrame:
    cfg = truth.config
    I, K, S = cfg.n_items, cfg.n_categories, cfg.n_subcategories
    frames = []
    # also_buy: co-purchased by the same users (each user's first 50 distinct purchases)
    if cfg.n_also_buy:
        b = np.flatnonzero(log.bought)
        pair = log.user[b].astype(np.int64) * I + log.item[b]
        _, first = np.unique(pair, return_index=True)
        first = np.sort(first)
        bu, bi = log.user[b][first], log.item[b][first]
        rank = np.arange(len(bu)) - np.searchsorted(bu, bu, side="left")  # bu is sorted
        cap = rank < 50
        co = _top_pairs(*_pairs(bu[cap], bi[cap]), I, cfg.n_also_buy, min_count=2)
        subs_per_cat = np.bincount(truth.subcategory_category, minlength=K)
        s = np.arange(S)
        complement = s % K + K * ((s // K + 1) % subs_per_cat[s % K])
        fill = _popular_in(truth, complement[truth.item_subcategory], cfg.n_also_buy, rng)
        both = pd.concat([co, fill], ignore_index=True).drop_duplicates()
        both = both[both.groupby("src").cumcount() < cfg.n_also_buy]
        frames.append(both.assign(rel=0))
    if cfg.n_also_view:
        view = _popular_in(truth, truth.item_subcategory, cfg.n_also_view, rng).drop_duplicates()
        frames.append(view.assign(rel=1))
    if cfg.n_bought_together:
        b = log.bought
        together = _top_pairs(*_pairs(log.session[b], log.item[b]), I, cfg.n_bought_together, min_count=1)
        frames.append(together.assign(rel=2))
    if not frames:
        return make_table("item_links")
    links = pd.concat(frames, ignore_index=True).sort_values(["rel", "src", "dst"], kind="stable")
    return make_table("item_links", pd.DataFrame({
        "src_item": _take_str(truth.item_ids, links["src"].to_numpy()),
        "dst_item": _take_str(truth.item_ids, links["dst"].to_numpy()),
        "relation": _take_str(["also_buy", "also_view", "bought_together"], links["rel"].to_numpy()),
    }))


# --------------------------------------------------------------------------- KG

def _kg_tables(truth: SyntheticTruth) -> tuple[pd.DataFrame, pd.DataFrame]:
    cat = [f"category:{slug(n)}" for n in truth.category_names]
    sub = [f"subcategory:{slug(n)}" for n in truth.subcategory_names]
    mat = [f"material:{slug(n)}" for n in truth.material_names]
    sty = [f"style:{slug(n)}" for n in truth.style_names]
    des = [f"designer:{slug(n)}" for n in truth.designer_names]
    brand = [f"brand:{slug(n)}" for n in truth.brand_names]
    triples = [(sub[s], "subcategory_of", cat[truth.subcategory_category[s]]) for s in range(len(sub))]
    triples += [(mat[m], "used_for", sub[s]) for s in range(len(sub)) for m in truth.subcategory_materials[s]]
    triples += [(sty[t], "popular_in", cat[c]) for c in range(len(cat)) for t in truth.category_styles[c]]
    triples += [(des[d], "works_for", brand[truth.designer_brand[d]]) for d in range(len(des))]
    triples += [(des[d], "known_for", sty[truth.designer_style[d]]) for d in range(len(des))]
    triples_df = make_table("triples", pd.DataFrame(triples, columns=["head", "relation", "tail"]).drop_duplicates())
    I = len(truth.item_ids)
    has_designer = truth.item_designer >= 0
    item = np.concatenate([np.arange(I), np.arange(I), np.flatnonzero(has_designer)])
    entity_names = np.asarray(mat + sty + des, dtype=object)
    entity = np.concatenate([truth.item_material, len(mat) + truth.item_style,
                             len(mat) + len(sty) + truth.item_designer[has_designer]])
    order = np.argsort(item, kind="stable")
    entities_df = make_table("item_entities", pd.DataFrame({
        "item_id": _take_str(truth.item_ids, item[order]),
        "entity_id": _take_str(entity_names, entity[order]),
    }))
    return triples_df, entities_df


# --------------------------------------------------------------------------- search

def _judgements_table(truth: SyntheticTruth, rng: np.random.Generator) -> pd.DataFrame:
    cfg = truth.config
    I, S, K = cfg.n_items, cfg.n_subcategories, cfg.n_categories
    m = cfg.judgements_per_grade
    if cfg.n_queries == 0 or m == 0:
        return make_table("judgements")
    sub_order, sub_start, sub_count = group_index(truth.item_subcategory, S)
    cat_order, cat_start, cat_count = group_index(truth.item_category, K)
    queries: list[str] = []
    seen: set[str] = set()
    q_col, i_col, r_col = [], [], []
    attempts = 0
    while len(queries) < cfg.n_queries and attempts < 20 * cfg.n_queries + 100:
        attempts += 1
        anchor = int(rng.choice(I, p=truth.item_popularity))
        s, b = truth.item_subcategory[anchor], truth.item_brand[anchor]
        c = truth.item_category[anchor]
        noun = truth.subcategory_nouns[s]
        words = [truth.brand_names[b].lower()]
        if rng.random() < 0.5:
            words.append(truth.subcategory_descriptors[s][int(rng.integers(0, 3))])
        words.append(noun)
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        queries.append(text)
        in_sub = sub_order[sub_start[s]: sub_start[s] + sub_count[s]]
        in_cat = cat_order[cat_start[c]: cat_start[c] + cat_count[c]]
        same_brand = truth.item_brand[in_sub] == b
        graded = {
            3: in_sub[same_brand],
            2: in_sub[~same_brand],
            1: in_cat[truth.item_subcategory[in_cat] != s],
        }
        for grade, pool in graded.items():
            chosen = pool if len(pool) <= m else rng.choice(pool, size=m, replace=False)
            q_col += [text] * len(chosen)
            i_col.append(np.asarray(chosen, dtype=np.int64))
            r_col += [grade] * len(chosen)
        if K > 1:
            # irrelevant: random items of other top categories (rejection sampling)
            cand = rng.choice(I, size=min(I, 4 * m + 8), replace=False)
            cand = cand[truth.item_category[cand] != c][:m]
            q_col += [text] * len(cand)
            i_col.append(cand.astype(np.int64))
            r_col += [0] * len(cand)
    items = np.concatenate(i_col) if i_col else np.zeros(0, np.int64)
    return make_table("judgements", pd.DataFrame({
        "query": pd.Series(q_col, dtype="str"),
        "item_id": _take_str(truth.item_ids, items),
        "relevance": np.asarray(r_col, dtype=np.int64),
    }))


# --------------------------------------------------------------------------- all tables

def build_tables(truth: SyntheticTruth, streams: dict[str, np.random.Generator]) -> dict[str, pd.DataFrame]:
    """Simulate the events of ``truth`` and build every table of the Dataset, keyed by
    :class:`~loaders.dataset.Dataset` field; ``streams`` are the generator's random streams."""
    log = _simulate(truth, streams)
    users = make_table("users", {
        "user_id": pd.Series(truth.user_ids, dtype="str"),
        "name": pd.Series(["user " + uid[1:] for uid in truth.user_ids], dtype="str"),
    })
    if truth.config.kg:
        triples, item_entities = _kg_tables(truth)
    else:
        triples, item_entities = make_table("triples"), make_table("item_entities")
    return {
        "users": users,
        "items": _items_table(truth, streams["text"]),
        "interactions": _interactions_table(truth, log),
        "reviews": _reviews_table(truth, log, streams["reviews"]),
        "item_links": _links_table(truth, log, streams["links"]),
        "triples": triples,
        "item_entities": item_entities,
        "judgements": _judgements_table(truth, streams["queries"]),
    }
