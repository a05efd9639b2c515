"""The planted truth: :class:`SyntheticTruth` (the latent variables and the planted
probabilities) and :func:`make_truth`, which draws it from a config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loaders.synthetic.arrays import group_index, ids, streams
from loaders.synthetic.config import SyntheticConfig
from loaders.synthetic.vocabulary import (
    BRANDS,
    FIRST_NAMES,
    LAST_NAMES,
    MATERIALS,
    STYLES,
    taxonomy_names,
    unique_names,
)


#: mean extra quantity of a purchase (quantity 1/2/3 with prob. 0.75/0.18/0.07: 1 + 0.32 on average)
EXTRA_QUANTITY = 0.32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(eq=False)
class SyntheticTruth:
    """The latent variables of one generated dataset and the planted probabilities.

    Index arrays refer to row positions: user ``k`` is ``user_ids[k]`` (also row ``k``
    of ``dataset.users``), item ``j`` is ``item_ids[j]`` (row ``j`` of ``dataset.items``).
    """

    config: SyntheticConfig
    user_ids: np.ndarray          # (U,) str
    item_ids: np.ndarray          # (I,) str
    category_names: list[str]     # (K,)
    subcategory_names: list[str]  # (S,)
    subcategory_nouns: list[str]  # (S,)
    subcategory_descriptors: list[tuple[str, str, str]]
    subcategory_category: np.ndarray  # (S,) top category of each subcategory
    brand_names: list[str]        # (B,)
    material_names: list[str]
    style_names: list[str]
    designer_names: list[str]
    user_taste: np.ndarray        # (U, K) theta, rows sum to 1
    user_brand: np.ndarray        # (U, B) psi (float32)
    user_activity: np.ndarray     # (U,) normalised w
    item_category: np.ndarray     # (I,) top category c(i)
    item_subcategory: np.ndarray  # (I,)
    item_brand: np.ndarray        # (I,)
    item_quality: np.ndarray      # (I,) q
    item_price: np.ndarray        # (I,) price as published
    item_price_z: np.ndarray      # (I,) z = (log price - mu_s) / price_sigma
    item_popularity: np.ndarray   # (I,) impression weights pi (sum 1)
    item_material: np.ndarray     # (I,)
    item_style: np.ndarray        # (I,)
    item_designer: np.ndarray     # (I,) -1 = none
    subcategory_materials: np.ndarray  # (S, 2) preferred materials
    category_styles: np.ndarray        # (K, 2) preferred styles
    designer_brand: np.ndarray         # (n_designers,)
    designer_style: np.ndarray         # (n_designers,)
    # lifecycle (seconds from config.start_timestamp; see the package docstring)
    user_join: np.ndarray | None = None    # (U,) when the user joins (0 without join_spread)
    user_churn: np.ndarray | None = None   # (U,) when the user churns (inf: never)
    user_spend: np.ndarray | None = None   # (U,) spend level s_u (1 without spend_sigma)
    item_launch: np.ndarray | None = None  # (I,) when the product goes on sale (0: at the start)

    def __post_init__(self) -> None:
        U, I = len(self.user_ids), len(self.item_ids)
        if self.user_join is None:
            self.user_join = np.zeros(U)
        if self.user_churn is None:
            self.user_churn = np.full(U, np.inf)
        if self.user_spend is None:
            self.user_spend = np.ones(U)
        if self.item_launch is None:
            self.item_launch = np.zeros(I)

    # -- lookups
    def user_index(self, ids) -> np.ndarray:
        idx = pd.Index(self.user_ids).get_indexer(pd.Index(np.asarray(ids, dtype=object)))
        if (idx < 0).any():
            raise KeyError("unknown user id(s)")
        return idx

    def item_index(self, ids) -> np.ndarray:
        idx = pd.Index(self.item_ids).get_indexer(pd.Index(np.asarray(ids, dtype=object)))
        if (idx < 0).any():
            raise KeyError("unknown item id(s)")
        return idx

    @property
    def favourite_category(self) -> np.ndarray:
        """argmax_c theta[u, c] per user."""
        return self.user_taste.argmax(axis=1)

    # -- planted functions (u, i: integer index arrays of equal shape)
    def taste(self, u, i) -> np.ndarray:
        u, i = np.asarray(u), np.asarray(i)
        return (self.user_taste[u, self.item_category[i]]
                + self.config.brand_weight * self.user_brand[u, self.item_brand[i]].astype(np.float64))

    def p_click(self, u, i, taste: np.ndarray | None = None) -> np.ndarray:
        c = self.config
        t = self.taste(u, i) if taste is None else taste
        return _sigmoid(c.click_taste * t + c.click_quality * self.item_quality[i] + c.click_bias)

    def p_buy(self, u, i, taste: np.ndarray | None = None) -> np.ndarray:
        """P(purchase | click)."""
        c = self.config
        t = self.taste(u, i) if taste is None else taste
        return _sigmoid(c.buy_taste * t + c.buy_quality * self.item_quality[i]
                        - c.buy_price * self.item_price_z[i] + c.buy_bias)

    def rating_mean(self, u, i, taste: np.ndarray | None = None) -> np.ndarray:
        """The latent rating before noise, rounding and clipping."""
        c = self.config
        t = self.taste(u, i) if taste is None else taste
        return c.rating_bias + c.rating_taste * t + c.rating_quality * self.item_quality[i]

    def expected_stars(self, u, i) -> np.ndarray:
        """E[stars] = E[clip(round(mean + N(0, noise^2)), 1, 5)], computed exactly."""
        mu = self.rating_mean(u, i)
        sd = self.config.rating_noise
        if sd == 0:
            return np.clip(np.round(mu), 1, 5)
        from math import erf, sqrt
        cdf = np.vectorize(lambda x: 0.5 * (1 + erf(x / sqrt(2))))
        # P(stars >= k) for k = 2..5 is P(mu + e >= k - 0.5)
        return 1.0 + sum(1.0 - cdf((k - 0.5 - mu) / sd) for k in range(2, 6))

    # -- lifecycle and the planted value (times are seconds from config.start_timestamp)
    @property
    def span(self) -> float:
        return self.config.time_span_days * 86400.0

    def alive(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) of each user's active time within the span: join to churn."""
        return self.user_join, np.minimum(self.user_churn, self.span)

    def impression_user_weights(self) -> np.ndarray:
        """P(an impression is user u's): activity w_u, times the active time when users
        join or churn (w_u is then a rate per unit of time)."""
        if not (self.config.join_spread or self.config.churn_rate):
            return self.user_activity
        start, stop = self.alive()
        w = self.user_activity * np.maximum(stop - start, 0.0)
        return w / w.sum()

    def expected_quantity(self) -> np.ndarray:
        """E[quantity of a purchase] per user: 1.32 (1/2/3 with 0.75/0.18/0.07), or
        ``1 + 0.32 * s_u`` (1 + Poisson) with spend levels."""
        if self.config.spend_sigma:
            return 1.0 + EXTRA_QUANTITY * self.user_spend
        return np.full(len(self.user_ids), 1.0 + EXTRA_QUANTITY)

    def impression_items(self, users, t: float | None) -> np.ndarray:
        """P(item | an impression of user u at time t), (len(users), I): the popularity /
        taste / uniform mixture, an impression of a product not yet launched redrawn by
        popularity among the launched ones (``t=None``: every product on sale)."""
        c = self.config
        users = np.asarray(users)
        I, K = len(self.item_ids), c.n_categories
        in_cat = np.bincount(self.item_category, minlength=K).astype(np.float64)
        p = (c.impression_popularity * self.item_popularity[None, :]
             + c.impression_targeted * self.user_taste[users][:, self.item_category] / in_cat[self.item_category][None, :]
             + (1 - c.impression_popularity - c.impression_targeted) / I)
        on = self.item_launch <= (np.inf if t is None else t)
        if on.all():
            return p
        pop_on = np.where(on, self.item_popularity, 0.0)
        missed = p[:, ~on].sum(axis=1, keepdims=True)
        return np.where(on[None, :], p, 0.0) + missed * pop_on[None, :] / max(pop_on.sum(), 1e-300)

    def expected_purchases(self, n_impressions: int, t0: float, t1: float, grid: int = 8,
                           all_on_sale: bool = False) -> np.ndarray:
        """Expected purchase events of each (user, item) in the window (t0, t1] of the span,
        (U, I), for a log of ``n_impressions`` impressions: the user's impressions in the
        window (spread evenly over their active time) x P(item | impression) at ``grid``
        times of the window x p_click x p_buy (``all_on_sale``: as if every product had been
        launched at the start)."""
        U = len(self.user_ids)
        start, stop = self.alive()
        overlap = np.clip(np.minimum(stop, t1) - np.maximum(start, t0), 0.0, None)
        length = np.maximum(stop - start, 1e-9)
        imps = n_impressions * self.impression_user_weights() * overlap / length          # (U,)
        users = np.arange(U)
        items = np.arange(len(self.item_ids))
        conv = self.p_click(users[:, None], items[None, :]) * self.p_buy(users[:, None], items[None, :])
        times = t0 + (np.arange(grid) + 0.5) * (t1 - t0) / grid
        mix = (self.impression_items(users, None) if all_on_sale
               else sum(self.impression_items(users, t) for t in times) / grid)
        return imps[:, None] * mix * conv

    def p_click_matrix(self, users=None) -> np.ndarray:
        """p_click for the given users (default: all) against every item, (len(users), I)."""
        users = np.arange(len(self.user_ids)) if users is None else np.asarray(users)
        return self.p_click(users[:, None], np.arange(len(self.item_ids))[None, :])


def make_truth(config: SyntheticConfig) -> SyntheticTruth:
    """Draw the latent variables of ``config`` (its own random stream: the same config,
    the same truth)."""
    rng = streams(config.seed)["truth"]
    U, I, K, S, B = (config.n_users, config.n_items, config.n_categories,
                     config.n_subcategories, config.n_brands)

    # names
    cat_names, sub_names, sub_nouns, sub_desc = taxonomy_names(K, S)
    sub_cat = np.arange(S) % K
    brand_names = unique_names(BRANDS, B, 53)
    material_names = unique_names(MATERIALS, config.n_materials, 71, capitalize=False)
    style_names = unique_names(STYLES, config.n_styles, 89, capitalize=False)
    designer_builtin = [f"{f} {l}" for l in LAST_NAMES for f in FIRST_NAMES]
    designer_names = unique_names(designer_builtin, config.n_designers, 97)

    # users
    theta = rng.dirichlet(np.full(K, config.taste_concentration), size=U)
    theta = np.nan_to_num(theta, nan=1.0 / K)
    psi = rng.standard_normal((U, B), dtype=np.float32)
    activity = rng.lognormal(0.0, config.activity_sigma, size=U)
    activity /= activity.sum()

    # items: every subcategory at least once, the rest by a Dirichlet draw; then shuffle
    sub_weights = rng.dirichlet(np.full(S, 3.0))
    item_sub = np.concatenate([np.arange(S), rng.choice(S, size=I - S, p=sub_weights)])
    item_sub = item_sub[rng.permutation(I)]
    item_cat = sub_cat[item_sub]
    home_count = np.bincount(np.arange(B) % K, minlength=K)  # home brands of c: c, c+K, ...
    u_brand = rng.random(I)
    focused = (rng.random(I) < config.brand_focus) & (home_count[item_cat] > 0)
    item_brand = np.where(
        focused,
        item_cat + K * np.floor(u_brand * home_count[item_cat]).astype(np.int64),
        np.floor(u_brand * B).astype(np.int64),
    )
    item_brand = np.minimum(item_brand, B - 1)
    prestige = rng.normal(0.0, 0.5, size=B)
    quality = prestige[item_brand] + rng.standard_normal(I)
    sd_q = np.sqrt(1.25)
    mu_cat = np.log(rng.uniform(8.0, 300.0, size=K))
    mu_sub = mu_cat[sub_cat] + rng.normal(0.0, 0.4, size=S)
    rho = config.price_quality_corr
    z_raw = rho * quality / sd_q + np.sqrt(1 - rho**2) * rng.standard_normal(I)
    price = np.maximum(np.round(np.exp(mu_sub[item_sub] + config.price_sigma * z_raw)), 1.0) - 0.01
    price_z = (np.log(price) - mu_sub[item_sub]) / config.price_sigma
    pop_score = quality + rng.standard_normal(I)
    rank = np.empty(I, dtype=np.int64)
    rank[np.argsort(-pop_score, kind="stable")] = np.arange(1, I + 1)
    popularity = rank.astype(np.float64) ** -config.popularity_exponent
    popularity /= popularity.sum()

    # entities
    M, T, D = config.n_materials, config.n_styles, config.n_designers
    sub_materials = np.argsort(rng.random((S, M)), axis=1)[:, : min(2, M)]
    cat_styles = np.argsort(rng.random((K, T)), axis=1)[:, : min(2, T)]
    pick = rng.integers(0, 2, size=I) % sub_materials.shape[1]
    item_material = np.where(rng.random(I) < 0.8, sub_materials[item_sub, pick], rng.integers(0, M, size=I))
    pick = rng.integers(0, 2, size=I) % cat_styles.shape[1]
    item_style = np.where(rng.random(I) < 0.7, cat_styles[item_cat, pick], rng.integers(0, T, size=I))
    designer_brand = rng.integers(0, B, size=D)
    designer_style = rng.integers(0, T, size=D)
    d_order, d_start, d_count = group_index(designer_brand, B)
    has = (d_count[item_brand] > 0) & (rng.random(I) < 0.5)
    slot = np.floor(rng.random(I) * np.maximum(d_count[item_brand], 1)).astype(np.int64)
    item_designer = np.where(has, d_order[np.minimum(d_start[item_brand] + slot, D - 1)], -1)

    # lifecycle: its own stream, every draw made whatever the knobs (one knob never moves another's)
    lc = streams(config.seed)["lifecycle"]
    span = config.time_span_days * 86400.0
    join_u, churn_u, spend_z = lc.random(U), lc.exponential(1.0, U), lc.standard_normal(U)
    hazard_z = lc.lognormal(0.0, 0.5, U)
    new_u, launch_u = lc.random(I), lc.random(I)
    join = join_u * config.join_spread * span
    churn = (join + churn_u * span / (config.churn_rate * hazard_z)) if config.churn_rate else np.full(U, np.inf)
    s = config.spend_sigma
    spend = np.exp(s * spend_z - s * s / 2)  # mean 1
    launch = np.where(new_u < config.new_item_share,
                      (config.launch_from + (1 - config.launch_from) * launch_u) * span, 0.0)

    return SyntheticTruth(
        config=config, user_ids=ids("u", U), item_ids=ids("i", I),
        category_names=cat_names, subcategory_names=sub_names, subcategory_nouns=sub_nouns,
        subcategory_descriptors=sub_desc, subcategory_category=sub_cat, brand_names=brand_names,
        material_names=material_names, style_names=style_names, designer_names=designer_names,
        user_taste=theta, user_brand=psi, user_activity=activity,
        item_category=item_cat, item_subcategory=item_sub, item_brand=item_brand,
        item_quality=quality, item_price=price, item_price_z=price_z, item_popularity=popularity,
        item_material=item_material, item_style=item_style, item_designer=item_designer,
        subcategory_materials=sub_materials, category_styles=cat_styles,
        designer_brand=designer_brand, designer_style=designer_style,
        user_join=join, user_churn=churn, user_spend=spend, item_launch=launch,
    )

