"""Synthetic e-commerce data with *planted* structure, for demos and for tests that
check a model learns what was planted.

Usage::

    from loaders.synthetic import SyntheticConfig, generate, ground_truth
    ds = generate(SyntheticConfig(n_users=500, n_items=200, n_interactions=20_000))
    ds, truth = generate(config, return_truth=True)
    loaders.load("synthetic", None, n_users=500, seed=3)        # same thing via the registry

Everything is numpy-vectorised and seeded: the same :class:`SyntheticConfig` gives
identical DataFrames. One million interaction rows take a few seconds.

What is planted
===============

Catalogue (``K = n_categories`` top categories, ``S = n_subcategories``)

* Subcategory ``s`` belongs to top category ``s mod K``; every subcategory has at
  least one item, the rest of the items are spread by a Dirichlet(3) draw. The first
  8 x 6 (top, sub) slots have real names ("Electronics > Headphones"), beyond that
  names are generated pseudo-words. ``items.categories == ["Top > Sub"]``.
* Brand ``b`` has home top category ``b mod K``; an item takes a home brand of its
  top category with probability ``brand_focus``, otherwise any brand.
* Quality ``q_i = beta_b(i) + eps_i`` with brand prestige ``beta_b ~ N(0, 0.5^2)``
  and ``eps_i ~ N(0, 1)``.
* Price, lognormal per subcategory: ``mu_s = mu_c(s) + N(0, 0.4^2)``, ``mu_c =
  log U(8, 300)``; ``log price_i = mu_s + price_sigma * (rho * q_i / sd(q) +
  sqrt(1 - rho^2) * eta_i)`` with ``rho = price_quality_corr``; the price is rounded
  to ``N.99``. The *price z-score* used below is ``z_i = (log price_i - mu_s(i)) /
  price_sigma`` (so "cheap" means cheap for its subcategory).
* Popularity (impression weight) ``pi_i ~ rank_i ** -popularity_exponent`` where
  items are ranked by ``q_i + N(0, 1)``.
* Entities: each subcategory prefers 2 materials, each top category 2 styles; an
  item's material is one of its subcategory's preferred ones with prob. 0.8
  (else any), its style one of its top category's with prob. 0.7; designers work for
  one brand and half of the items whose brand has designers get one of them.

Users

* Category taste ``theta_u ~ Dirichlet(taste_concentration * 1_K)`` (small =
  users concentrate on one or two top categories).
* Brand preference ``psi_u ~ N(0, 1)^n_brands``.
* Activity ``w_u ~ LogNormal(0, activity_sigma)``.
* ``users.name`` is ``"user <number>"``; every user is listed, also one without events.

Affinity::

    taste(u, i) = theta[u, c(i)] + brand_weight * psi[u, b(i)]

Events (one row each in ``interactions``; ``value`` in brackets)

* **impression** [1]: ``n`` impressions are drawn i.i.d.: user ``u ~ w``, then the
  item from popularity ``pi`` with prob. ``impression_popularity``, from the user's
  taste (top category ``c ~ theta_u``, then uniformly within ``c``) with prob.
  ``impression_targeted``, uniformly otherwise.
* **click** [1], given an impression, with probability::

    p_click(u, i) = sigmoid(click_taste * taste(u, i) + click_quality * q_i + click_bias)

* **purchase** [quantity 1/2/3 with prob. 0.75/0.18/0.07], given a click::

    p_buy(u, i) = sigmoid(buy_taste * taste(u, i) + buy_quality * q_i
                          - buy_price * z_i + buy_bias)

* **rating** / **review** [stars]: after the *first* purchase of an item by a user,
  with prob. ``rating_rate``; it is a ``review`` (with a row in ``reviews``) with
  prob. ``review_share``, else a bare ``rating``::

    stars = clip(round(rating_bias + rating_taste * taste(u, i)
                       + rating_quality * q_i + N(0, rating_noise^2)), 1, 5)

``n_interactions`` is the number of interaction rows of *all* events together: the
impression stream is cut as soon as the next impression and its funnel would
overshoot, so ``n_interactions - 3 <= len(interactions) <= n_interactions``.

Time: each user's impressions are grouped in sessions (a new session starts with
prob. ``1 / session_length``); sessions are spread over ``time_span_days`` from
``start_timestamp``, impressions in a session are 60 s apart, a click follows its
impression by 1-29 s, a purchase by 30-59 s, a rating/review the purchase by 1-30
days. So timestamps strictly increase along a user's impressions and every
``(user, item, event, timestamp)`` is unique; ``interactions`` is sorted by user,
then time.

Text: title ``"<Brand> <adjective> <subcategory noun> <model>"`` (adjective drawn
from a pool for the item's quality band); the description names the subcategory's
descriptor words, the brand, a price-band word (budget / affordable / mid-range /
premium / luxury from ``z_i``), a quality-band sentence, material, style and top
category; 2-4 feature bullets (descriptors, material, then maybe style, warranty
years by quality, designer). Reviews: summary ``"<adjective for stars> <noun>"``,
text with a sentiment sentence for the stars, a quality remark, a price remark and
a taste remark.

Lifecycle (the value truth; every knob 0 by default, and then nothing below happens and
the tables are exactly those of a config without these knobs). Its draws come from a
stream of their own, all made whatever the knobs, so one knob never moves another's:

* users join at ``join_u ~ U(0, join_spread * span)`` and churn at ``join_u + life_u``,
  ``life_u ~ Exp(1) * span / (churn_rate * h_u)``, ``h_u ~ LogNormal(0, 0.5)``; ``w_u``
  is then a rate: an impression is user ``u``'s with probability proportional to ``w_u``
  times their active time (join to churn, within the span), and their sessions spread
  over that time only;
* spend level ``s_u ~ LogNormal(-spend_sigma^2 / 2, spend_sigma)`` (mean 1): a purchase's
  quantity is ``1 + Poisson(0.32 * s_u)`` (mean 1.32 as without it);
* a share ``new_item_share`` of the products launch at a time ``~ U(launch_from, 1) *
  span``: an impression of a product before its launch is redrawn by popularity among
  the products on sale, and its funnel drawn anew (so ``len(interactions)`` may differ
  from ``n_interactions`` by a little);
* brand affinity is ``psi_u`` above (``brand_weight`` sets how much it sways purchases).

:func:`planted_value` gives the planted value of a time window: per user the expected
purchases, spend and P(active), whether they are still active, their purchase rate and
spend level; per product the expected units and value, its launch and its appeal.

Item links: ``also_buy`` = the items most often co-purchased by the same users
(count >= 2, over each user's first 50 distinct purchases), topped up to
``n_also_buy`` with popular items of the complementary subcategory (the next
subcategory of the same top category); ``also_view`` =
``n_also_view`` popular items of the same subcategory; ``bought_together`` = items
purchased in the same session.

Knowledge graph (``kg=True``): entities ``material:*``, ``style:*``, ``designer:*``
(linked to items in ``item_entities``) and ``category:*``, ``subcategory:*``,
``brand:*``; triples ``subcategory_of``, ``used_for`` (material -> subcategory),
``popular_in`` (style -> category), ``works_for`` (designer -> brand),
``known_for`` (designer -> style).

Search (``n_queries > 0``): each query is ``"<brand> [<descriptor>] <subcategory
noun>"`` for a (subcategory, brand) pair present in the catalogue; judgements per
query: up to ``judgements_per_grade`` items of each grade, 3 = same subcategory and
brand, 2 = same subcategory other brand, 1 = same top category other subcategory,
0 = another top category.

Ground truth: ``generate(config, return_truth=True)`` or ``ground_truth(config or
dataset)`` (a generated Dataset carries its config as the attribute
``meta['synthetic_config']``) gives a :class:`SyntheticTruth` with the latent arrays and the
``taste`` / ``p_click`` / ``p_buy`` / ``rating_mean`` / ``expected_stars`` functions;
:func:`funnel_expectation` compares a dataset's clicks and purchases with their
planted expectation.

Config fields (:class:`SyntheticConfig`, defaults in brackets)
=============================================================

Sizes: ``n_users`` [1000], ``n_items`` [500, >= n_subcategories], ``n_categories``
[6, top categories K], ``n_subcategories`` [24, in total, >= K], ``n_brands`` [30],
``n_interactions`` [50,000, rows of all events], ``n_queries`` [50, 0 = no
judgements], ``judgements_per_grade`` [5].
Users: ``taste_concentration`` [0.3, Dirichlet alpha of theta], ``brand_weight``
[0.15], ``activity_sigma`` [1.0].
Catalogue: ``brand_focus`` [0.8], ``price_sigma`` [0.5], ``price_quality_corr``
[0.3], ``popularity_exponent`` [0.8].
Impressions: ``impression_popularity`` [0.4], ``impression_targeted`` [0.3],
``session_length`` [8, mean impressions per session].
Funnel: ``click_taste`` [3.0], ``click_quality`` [0.5], ``click_bias`` [-3.0],
``buy_taste`` [2.0], ``buy_quality`` [0.5], ``buy_price`` [0.7], ``buy_bias``
[-1.5], ``rating_rate`` [0.3], ``review_share`` [0.5], ``rating_bias`` [3.0],
``rating_taste`` [1.5], ``rating_quality`` [0.8], ``rating_noise`` [0.6].
Links: ``n_also_buy`` [5], ``n_also_view`` [5], ``n_bought_together`` [3, per item].
KG: ``kg`` [True], ``n_materials`` [12], ``n_styles`` [8], ``n_designers`` [20].
Lifecycle: ``join_spread`` [0], ``churn_rate`` [0], ``spend_sigma`` [0],
``new_item_share`` [0], ``launch_from`` [0.5].
Randomness and time: ``seed`` [0], ``start_timestamp`` [1577836800 = 2020-01-01],
``time_span_days`` [365].

With the defaults about 16 % of impressions are clicked and about 42 % of clicks
bought; about two thirds of purchases fall in the buyer's favourite top category.

The dataset's ``report`` has one pseudo-file ``"synthetic"`` whose read and kept
counts are the total number of rows generated over all tables, with 0 rejected.
"""

# Layout: config (SyntheticConfig) <- vocabulary (words, names, text bands) and arrays
# (random streams, vectorised helpers) <- truth (SyntheticTruth, make_truth) <- simulation
# (events and tables) <- this module (generate, read, ground_truth, funnel_expectation).

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loaders.dataset import Dataset
from loaders.errors import ConfigError
from loaders.report import LoadReport
from loaders.synthetic.arrays import streams
from loaders.synthetic.config import SyntheticConfig
from loaders.synthetic.simulation import build_tables
from loaders.synthetic.truth import SyntheticTruth, make_truth
from loaders.synthetic.vocabulary import slug

__all__ = [
    "SyntheticConfig", "SyntheticTruth", "generate", "read", "ground_truth", "funnel_expectation", "planted_value",
    "REPORT_FILE", "slug",
]

REPORT_FILE = "synthetic"


def generate(config: SyntheticConfig | None = None, *, return_truth: bool = False,
             strict: bool = True) -> Dataset | tuple[Dataset, SyntheticTruth]:
    """Generate a synthetic Dataset (and its :class:`SyntheticTruth` when asked)."""
    config = config or SyntheticConfig()
    rngs = streams(config.seed)
    truth = make_truth(config)
    dataset = Dataset(name="synthetic", **build_tables(truth, rngs), report=LoadReport(strict=strict))
    total = sum(dataset.sizes().values())
    dataset.report.read(REPORT_FILE, total)
    dataset.report.keep(REPORT_FILE, total)
    dataset.meta["synthetic_config"] = config.to_dict()  # lets ground_truth(dataset) rebuild the truth
    return (dataset, truth) if return_truth else dataset


def read(path: str | Path | None = None, *, strict: bool = True, **options) -> Dataset:
    """Loader entry point: ``path`` is ignored; ``options`` are :class:`SyntheticConfig` fields.

    ``config=SyntheticConfig(...)`` may be passed instead of (or as a base for) the fields.
    """
    base = options.pop("config", None)
    if base is not None and not isinstance(base, SyntheticConfig):
        raise TypeError("config must be a SyntheticConfig")
    config = SyntheticConfig.from_dict({**(base.to_dict() if base else {}), **options})
    return generate(config, strict=strict)


def ground_truth(source: SyntheticConfig | Dataset) -> SyntheticTruth:
    """The planted truth of a config, or of a Dataset made by :func:`generate`/:func:`read`."""
    if isinstance(source, SyntheticConfig):
        return make_truth(source)
    config = source.meta.get("synthetic_config")
    if config is None:
        raise ConfigError("this Dataset was not made by loaders.synthetic (no synthetic_config)")
    return make_truth(SyntheticConfig.from_dict(config))


def planted_value(dataset: Dataset, t0: int, t1: int, truth: SyntheticTruth | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The planted value of the window (t0, t1] (Unix seconds within the span) for a dataset
    made by :func:`generate`: what a model that knew the latent variables would predict.

    Returns ``(users, items)``. ``users``: ``user_id``, ``expected_purchases``,
    ``expected_spend`` (sum over products of expected purchases x E[quantity] x price),
    ``p_active`` (1 - exp(-expected purchases): purchases are close to Poisson),
    ``alive`` (joined by t0 and not churned by then), ``purchase_rate`` (expected
    purchases per day while active), ``spend_level`` (s_u), ``churn`` (Unix seconds, inf =
    never). ``items``: ``item_id``, ``expected_units``, ``expected_value`` (units x
    price), ``launch`` (Unix seconds), ``launched`` (on sale by t0), ``appeal`` (expected
    units per day over the whole span when on sale from the start).
    """
    truth = truth or ground_truth(dataset)
    start = truth.config.start_timestamp
    n_imp = int((dataset.interactions["event"] == "impression").sum())
    a, b = float(t0 - start), float(t1 - start)
    # a user's impressions are 60 s apart on top of their session times, so the last events may
    # fall a day or two after the span: a week's grace (the planted rates end with the span)
    if not (0 <= a < b <= truth.span + 7 * 86400):
        raise ConfigError(f"planted_value: the window ({t0}, {t1}] is not inside the span "
                          f"[{start}, {start + int(truth.span)}]")
    b = min(b, truth.span)
    purchases = truth.expected_purchases(n_imp, a, b)                         # (U, I)
    qty = truth.expected_quantity()
    units = purchases * qty[:, None]
    per_user = purchases.sum(axis=1)
    join, stop = truth.alive()
    days = np.maximum(stop - join, 1.0) / 86400.0
    whole = truth.expected_purchases(n_imp, 0.0, truth.span)
    always_on = (truth.expected_purchases(n_imp, 0.0, truth.span, all_on_sale=True) * qty[:, None]).sum(axis=0)
    users = pd.DataFrame({
        "user_id": truth.user_ids.astype(str), "expected_purchases": per_user,
        "expected_spend": (units * truth.item_price[None, :]).sum(axis=1),
        "p_active": 1.0 - np.exp(-per_user), "alive": (join <= a) & (truth.user_churn > a),
        "purchase_rate": whole.sum(axis=1) / days, "spend_level": truth.user_spend,
        "churn": start + truth.user_churn,
    })
    items = pd.DataFrame({
        "item_id": truth.item_ids.astype(str), "expected_units": units.sum(axis=0),
        "expected_value": units.sum(axis=0) * truth.item_price, "launch": start + truth.item_launch,
        "launched": truth.item_launch <= a, "appeal": always_on / (truth.span / 86400.0 or 1.0),
    })
    return users, items


def funnel_expectation(dataset: Dataset, truth: SyntheticTruth | None = None) -> dict[str, float]:
    """Observed clicks/purchases against their planted expectation.

    ``expected_clicks`` = sum of p_click over impression rows; ``expected_purchases``
    = sum of p_buy over click rows; ``*_sd`` are the binomial standard deviations.
    """
    truth = truth or ground_truth(dataset)
    inter = dataset.interactions
    out: dict[str, float] = {}
    for event, prob, given in (("click", truth.p_click, "impression"), ("purchase", truth.p_buy, "click")):
        rows = inter[inter["event"] == given]
        p = prob(truth.user_index(rows["user_id"]), truth.item_index(rows["item_id"]))
        out[f"{given}s"] = float(len(rows))
        out[f"expected_{event}s"] = float(p.sum())
        out[f"expected_{event}s_sd"] = float(np.sqrt((p * (1 - p)).sum()))
    out["clicks"] = float((inter["event"] == "click").sum())
    out["purchases"] = float((inter["event"] == "purchase").sum())
    return out
