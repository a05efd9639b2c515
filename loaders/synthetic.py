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
Randomness and time: ``seed`` [0], ``start_timestamp`` [1577836800 = 2020-01-01],
``time_span_days`` [365].

With the defaults about 16 % of impressions are clicked and about 42 % of clicks
bought; about two thirds of purchases fall in the buyer's favourite top category.

The dataset's ``report`` has one pseudo-file ``"synthetic"`` whose read and kept
counts are the total number of rows generated over all tables, with 0 rejected.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from loaders.dataset import CATEGORY_SEP, Dataset, make_table
from loaders.report import LoadReport

__all__ = [
    "SyntheticConfig", "SyntheticTruth", "generate", "read", "ground_truth", "funnel_expectation",
]

REPORT_FILE = "synthetic"


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator; the module docstring gives the formulas they enter."""

    # sizes
    n_users: int = 1000            #: users (all appear in ``users``; inactive ones may have no events)
    n_items: int = 500             #: items; must be >= n_subcategories
    n_categories: int = 6          #: top-level categories (K)
    n_subcategories: int = 24      #: subcategories in total (S >= K); sub s is under top s mod K
    n_brands: int = 30             #: brands
    n_interactions: int = 50_000   #: interaction rows of all events together (see docstring)
    n_queries: int = 50            #: search queries with judgements (0 = none)
    judgements_per_grade: int = 5  #: judged items per relevance grade and query (at most)
    # users
    taste_concentration: float = 0.3  #: Dirichlet concentration of theta_u (small = peaked tastes)
    brand_weight: float = 0.15        #: weight of psi_u[b] in taste(u, i)
    activity_sigma: float = 1.0       #: sigma of the lognormal user activity
    # catalogue
    brand_focus: float = 0.8          #: prob. an item's brand is a home brand of its top category
    price_sigma: float = 0.5          #: sigma of log price within a subcategory
    price_quality_corr: float = 0.3   #: correlation of price z-score and quality
    popularity_exponent: float = 0.8  #: Zipf exponent of the impression popularity
    # impressions
    impression_popularity: float = 0.4  #: share of impressions drawn by popularity
    impression_targeted: float = 0.3    #: share drawn from the user's taste (rest: uniform)
    session_length: float = 8.0         #: mean impressions per session
    # click / purchase
    click_taste: float = 3.0
    click_quality: float = 0.5
    click_bias: float = -3.0
    buy_taste: float = 2.0
    buy_quality: float = 0.5
    buy_price: float = 0.7
    buy_bias: float = -1.5
    # ratings / reviews
    rating_rate: float = 0.3     #: prob. a (first) purchase is rated
    review_share: float = 0.5    #: prob. a rating comes with a written review
    rating_bias: float = 3.0
    rating_taste: float = 1.5
    rating_quality: float = 0.8
    rating_noise: float = 0.6
    # links
    n_also_buy: int = 5
    n_also_view: int = 5
    n_bought_together: int = 3
    # external knowledge graph
    kg: bool = True              #: emit ``triples`` and ``item_entities``
    n_materials: int = 12
    n_styles: int = 8
    n_designers: int = 20
    # randomness and time
    seed: int = 0
    start_timestamp: int = 1_577_836_800  #: 2020-01-01 UTC
    time_span_days: float = 365.0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticConfig: {msg}")

        need(self.n_users >= 1, "n_users must be >= 1")
        need(self.n_categories >= 1, "n_categories must be >= 1")
        need(self.n_subcategories >= self.n_categories, "n_subcategories must be >= n_categories")
        need(self.n_items >= self.n_subcategories, "n_items must be >= n_subcategories")
        need(self.n_brands >= 1, "n_brands must be >= 1")
        for name in ("n_interactions", "n_queries", "judgements_per_grade", "n_also_buy",
                     "n_also_view", "n_bought_together", "start_timestamp"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0")
        for name in ("n_materials", "n_styles", "n_designers"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1")
        for name in ("brand_focus", "impression_popularity", "impression_targeted", "rating_rate",
                     "review_share"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        need(self.impression_popularity + self.impression_targeted <= 1.0,
             "impression_popularity + impression_targeted must be <= 1")
        need(-1.0 <= self.price_quality_corr <= 1.0, "price_quality_corr must be in [-1, 1]")
        need(self.taste_concentration > 0, "taste_concentration must be > 0")
        need(self.session_length >= 1, "session_length must be >= 1")
        need(self.price_sigma > 0, "price_sigma must be > 0")
        need(self.activity_sigma >= 0 and self.rating_noise >= 0, "sigmas must be >= 0")
        need(self.time_span_days >= 0, "time_span_days must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, options: dict) -> SyntheticConfig:
        """Build a config from options; strings (e.g. from a command line) are converted."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown synthetic option(s) {unknown}; valid: {', '.join(known)}")
        out = {}
        for name, value in options.items():
            kind = str(known[name])
            if kind == "bool" and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(f"option {name}: not a boolean: {value!r}")
                value = low in ("1", "true", "yes")
            elif kind == "int" and not isinstance(value, bool):
                as_float = float(value)
                if as_float != int(as_float):
                    raise ValueError(f"option {name}: not an integer: {value!r}")
                value = int(as_float)
            elif kind == "float":
                value = float(value)
            out[name] = value
        return cls(**out)


# --------------------------------------------------------------------------- vocabulary

# (top category, [(subcategory name, noun, (3 descriptors)), ...])
TAXONOMY: list[tuple[str, list[tuple[str, str, tuple[str, str, str]]]]] = [
    ("Electronics", [
        ("Headphones", "headphones", ("wireless", "bass", "noise-cancelling")),
        ("Speakers", "speaker", ("bluetooth", "portable", "waterproof")),
        ("Cameras", "camera", ("mirrorless", "zoom", "megapixel")),
        ("Smartwatches", "smartwatch", ("fitness", "heart-rate", "gps")),
        ("Chargers", "charger", ("fast-charging", "usb-c", "wall")),
        ("Keyboards", "keyboard", ("mechanical", "backlit", "ergonomic")),
    ]),
    ("Home & Kitchen", [
        ("Cookware", "frying pan", ("nonstick", "induction", "skillet")),
        ("Coffee Makers", "coffee maker", ("espresso", "drip", "programmable")),
        ("Bedding", "duvet", ("breathable", "queen", "hypoallergenic")),
        ("Knives", "chef knife", ("stainless", "forged", "razor-sharp")),
        ("Lamps", "desk lamp", ("dimmable", "led", "adjustable")),
        ("Storage", "storage box", ("stackable", "airtight", "organizer")),
    ]),
    ("Sports & Outdoors", [
        ("Running Shoes", "running shoes", ("cushioned", "lightweight", "trail")),
        ("Tents", "tent", ("weatherproof", "two-person", "camping")),
        ("Yoga", "yoga mat", ("non-slip", "thick", "eco-friendly")),
        ("Bikes", "bicycle", ("mountain", "gears", "suspension")),
        ("Water Bottles", "water bottle", ("insulated", "leakproof", "bpa-free")),
        ("Backpacks", "hiking backpack", ("hydration", "daypack", "rain-cover")),
    ]),
    ("Beauty", [
        ("Skincare", "moisturizer", ("hydrating", "spf", "sensitive-skin")),
        ("Fragrance", "perfume", ("floral", "musky", "citrus")),
        ("Haircare", "shampoo", ("sulfate-free", "volumizing", "argan")),
        ("Makeup", "lipstick", ("matte", "long-lasting", "nude")),
        ("Nails", "nail polish", ("glossy", "quick-dry", "gel")),
        ("Shaving", "razor", ("precision", "five-blade", "trimmer")),
    ]),
    ("Toys & Games", [
        ("Board Games", "board game", ("strategy", "family", "cooperative")),
        ("Puzzles", "jigsaw puzzle", ("1000-piece", "landscape", "challenging")),
        ("Building Sets", "building blocks", ("creative", "bricks", "stem")),
        ("Dolls", "doll", ("dress-up", "collectible", "posable")),
        ("RC Vehicles", "rc car", ("remote-control", "racing", "rechargeable")),
        ("Plush", "plush toy", ("soft", "cuddly", "huggable")),
    ]),
    ("Books", [
        ("Fiction", "novel", ("thriller", "mystery", "bestselling")),
        ("Cookbooks", "cookbook", ("recipes", "vegan", "baking")),
        ("Children's Books", "picture book", ("bedtime", "illustrated", "rhyming")),
        ("Science", "science book", ("physics", "astronomy", "popular-science")),
        ("History", "history book", ("biography", "wartime", "ancient")),
        ("Self-Help", "self-help book", ("productivity", "mindfulness", "habits")),
    ]),
    ("Clothing", [
        ("T-Shirts", "t-shirt", ("crew-neck", "graphic", "slim-fit")),
        ("Jeans", "jeans", ("denim", "stretch", "bootcut")),
        ("Jackets", "jacket", ("windproof", "puffer", "hooded")),
        ("Dresses", "dress", ("maxi", "floral-print", "evening")),
        ("Sneakers", "sneakers", ("canvas", "low-top", "retro")),
        ("Socks", "socks", ("ankle", "merino", "padded")),
    ]),
    ("Pet Supplies", [
        ("Dog Food", "dog food", ("grain-free", "kibble", "high-protein")),
        ("Cat Toys", "cat toy", ("feather", "catnip", "interactive")),
        ("Leashes", "leash", ("retractable", "reflective", "padded-handle")),
        ("Aquarium", "aquarium filter", ("submersible", "quiet", "tank")),
        ("Pet Beds", "pet bed", ("orthopedic", "washable", "cozy")),
        ("Litter", "cat litter", ("clumping", "odor-control", "unscented")),
    ]),
]

BRANDS = [
    "Acme", "Nordika", "Veltro", "Lumina", "Kestrel", "Orbix", "Zentro", "Halcyon", "Brightway",
    "Corvus", "Delmar", "Everly", "Fjordan", "Granite", "Hexa", "Ironwood", "Jovian", "Kinetic",
    "Larkspur", "Meridian", "Novato", "Oakridge", "Pinnacle", "Quasar", "Redfern", "Solace",
    "Tidewater", "Umbra", "Vantage", "Willow", "Xylo", "Yarrow", "Zephyr", "Aurora", "Bastion",
    "Cobalt", "Driftwood", "Ember", "Falcon", "Glacier",
]
MATERIALS = ["cotton", "wool", "leather", "steel", "aluminum", "bamboo", "glass", "ceramic",
             "silicone", "nylon", "polyester", "oak", "linen", "rubber", "titanium", "recycled paper"]
STYLES = ["minimalist", "vintage", "modern", "rustic", "sporty", "classic", "industrial",
          "bohemian", "scandinavian", "playful"]
FIRST_NAMES = ["Ada", "Bruno", "Clara", "Dario", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas"]
LAST_NAMES = ["Moreau", "Lindqvist", "Okafor", "Tanaka", "Rossi", "Novak", "Alvarez", "Brennan",
              "Schmidt", "Kowalski"]

QUALITY_CUTS = np.array([-1.2, -0.4, 0.4, 1.2])   # q -> band 0..4
PRICE_CUTS = np.array([-1.0, -0.35, 0.35, 1.0])    # z -> band 0..4
PRICE_WORDS = np.array(["budget", "affordable", "mid-range", "premium", "luxury"], dtype=object)
TITLE_ADJECTIVES = [  # per quality band
    ["Basic", "Lite", "Simple"],
    ["Everyday", "Compact", "Standard"],
    ["Classic", "Plus", "Select"],
    ["Pro", "Advanced", "Deluxe"],
    ["Elite", "Ultimate", "Signature"],
]
QUALITY_SENTENCES = [
    ["Basic build, fine for occasional use.", "Flimsy but functional."],
    ["Simple, no-frills construction.", "Decent for the price."],
    ["Solid everyday quality.", "Reliable and well finished."],
    ["Well made and durable.", "Sturdy construction with quality parts."],
    ["Outstanding craftsmanship and top-rated durability.", "Professional-grade, built to last."],
]
STAR_ADJECTIVES = np.array([
    ["Terrible", "Awful"], ["Disappointing", "Mediocre"], ["Okay", "Decent"],
    ["Good", "Solid"], ["Excellent", "Fantastic"],
], dtype=object)
STAR_SENTENCES = np.array([
    ["Really unhappy, I returned it.", "A waste of money, it broke quickly."],
    ["Not great, I expected more.", "Somewhat disappointed overall."],
    ["It is okay, nothing special.", "Average, does the job."],
    ["Pretty good, I am happy with it.", "Works well, would recommend."],
    ["Absolutely love it, perfect!", "Excellent, exceeded my expectations."],
], dtype=object)
QUALITY_REMARKS = np.array([
    "feels cheap and flimsy.", "is a bit basic.", "is solidly made.", "is sturdy and well built.",
    "has superb build quality.",
], dtype=object)
PRICE_REMARKS = np.array([
    "Great value for a budget price.", "Affordable.", "Fairly priced.", "A bit pricey.",
    "Very expensive.",
], dtype=object)
TASTE_REMARKS = np.array(["Not really my style.", "", "Exactly my style."], dtype=object)

EVENT_CODES = ("impression", "click", "purchase", "rating", "review")
_SYLLABLES = ["ka", "lo", "mi", "ra", "ve", "zu", "to", "ni", "sa", "qu",
              "do", "re", "fi", "ba", "xe", "po", "lu", "ga", "ne", "vi"]


def _pseudo_word(i: int, salt: int) -> str:
    """A pronounceable word, injective in ``i`` for a fixed salt."""
    n = salt + i * 7919
    parts = []
    while n > 0 or len(parts) < 3:
        n, r = divmod(n, len(_SYLLABLES))
        parts.append(_SYLLABLES[r])
    return "".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _unique_names(builtin: list[str], n: int, salt: int, capitalize: bool = True) -> list[str]:
    out, seen, i = [], set(), 0
    for name in builtin[:n]:
        out.append(name)
        seen.add(name.lower())
    while len(out) < n:
        word = _pseudo_word(i, salt)
        word = word.capitalize() if capitalize else word
        i += 1
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(len(str(max(n - 1, 0))), 1)
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _take_str(values, codes: np.ndarray) -> pd.Series:
    """A pandas string Series ``values[codes]`` without a per-row Python loop."""
    base = pd.array(np.asarray(values, dtype=object), dtype="str")
    return pd.Series(base.take(np.asarray(codes, dtype=np.int64)))


def _streams(seed: int) -> dict[str, np.random.Generator]:
    names = ["truth", "impressions", "funnel", "time", "text", "links", "queries", "reviews"]
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def _group_index(keys: np.ndarray, n_groups: int, order_by: np.ndarray | None = None):
    """Members of each group: (order, start, count) with ``order[start[g]:start[g]+count[g]]``."""
    if order_by is None:
        order = np.argsort(keys, kind="stable")
    else:
        order = np.lexsort((order_by, keys))
    count = np.bincount(keys, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return order, start, count


# --------------------------------------------------------------------------- truth

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

    def p_click_matrix(self, users=None) -> np.ndarray:
        """p_click for the given users (default: all) against every item, (len(users), I)."""
        users = np.arange(len(self.user_ids)) if users is None else np.asarray(users)
        return self.p_click(users[:, None], np.arange(len(self.item_ids))[None, :])


def _make_truth(config: SyntheticConfig) -> SyntheticTruth:
    rng = _streams(config.seed)["truth"]
    U, I, K, S, B = (config.n_users, config.n_items, config.n_categories,
                     config.n_subcategories, config.n_brands)

    # names
    cat_names, sub_names, sub_nouns, sub_desc = [], [], [], []
    for c in range(K):
        cat_names.append(TAXONOMY[c][0] if c < len(TAXONOMY) else _pseudo_word(c, 11).capitalize())
    for s in range(S):
        c, j = s % K, s // K
        if c < len(TAXONOMY) and j < len(TAXONOMY[c][1]):
            name, noun, desc = TAXONOMY[c][1][j]
        else:
            noun = _pseudo_word(s, 23)
            name = noun.capitalize()
            desc = tuple(_pseudo_word(3 * s + k, 37) for k in range(3))
        sub_names.append(name)
        sub_nouns.append(noun)
        sub_desc.append(desc)
    sub_cat = np.arange(S) % K
    brand_names = _unique_names(BRANDS, B, 53)
    material_names = _unique_names(MATERIALS, config.n_materials, 71, capitalize=False)
    style_names = _unique_names(STYLES, config.n_styles, 89, capitalize=False)
    designer_builtin = [f"{f} {l}" for l in LAST_NAMES for f in FIRST_NAMES]
    designer_names = _unique_names(designer_builtin, config.n_designers, 97)

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
    d_order, d_start, d_count = _group_index(designer_brand, B)
    has = (d_count[item_brand] > 0) & (rng.random(I) < 0.5)
    slot = np.floor(rng.random(I) * np.maximum(d_count[item_brand], 1)).astype(np.int64)
    item_designer = np.where(has, d_order[np.minimum(d_start[item_brand] + slot, D - 1)], -1)

    return SyntheticTruth(
        config=config, user_ids=_ids("u", U), item_ids=_ids("i", I),
        category_names=cat_names, subcategory_names=sub_names, subcategory_nouns=sub_nouns,
        subcategory_descriptors=sub_desc, subcategory_category=sub_cat, brand_names=brand_names,
        material_names=material_names, style_names=style_names, designer_names=designer_names,
        user_taste=theta, user_brand=psi, user_activity=activity,
        item_category=item_cat, item_subcategory=item_sub, item_brand=item_brand,
        item_quality=quality, item_price=price, item_price_z=price_z, item_popularity=popularity,
        item_material=item_material, item_style=item_style, item_designer=item_designer,
        subcategory_materials=sub_materials, category_styles=cat_styles,
        designer_brand=designer_brand, designer_style=designer_style,
    )


# --------------------------------------------------------------------------- items

def _quality_band(q: np.ndarray) -> np.ndarray:
    return np.searchsorted(QUALITY_CUTS, q)


def _price_band(z: np.ndarray) -> np.ndarray:
    return np.searchsorted(PRICE_CUTS, z)


def _items_table(truth: SyntheticTruth, rng: np.random.Generator) -> pd.DataFrame:
    I = len(truth.item_ids)
    qb = _quality_band(truth.item_quality)
    pb = _price_band(truth.item_price_z)
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
    user = rng.choice(U, size=n, p=truth.user_activity)
    mode = rng.random(n)
    u1, u2 = rng.random(n), rng.random(n)
    item = np.floor(u1 * I).astype(np.int64)                       # uniform
    pop = mode < cfg.impression_popularity
    item[pop] = np.minimum(np.searchsorted(np.cumsum(truth.item_popularity), u1[pop], side="right"), I - 1)
    tgt = (~pop) & (mode < cfg.impression_popularity + cfg.impression_targeted)
    if tgt.any():
        cum = np.cumsum(truth.user_taste, axis=1)
        cat = np.minimum((cum[user[tgt]] < u1[tgt, None]).sum(axis=1), K - 1)
        order, start, count = _group_index(truth.item_category, K)
        item[tgt] = order[start[cat] + np.minimum(np.floor(u2[tgt] * count[cat]).astype(np.int64), count[cat] - 1)]

    # -- funnel
    rng = streams["funnel"]
    taste = truth.taste(user, item)
    clicked = rng.random(n) < truth.p_click(user, item, taste)
    bought = clicked & (rng.random(n) < truth.p_buy(user, item, taste))
    uq = rng.random(n)
    quantity = 1 + (uq > 0.75).astype(np.int64) + (uq > 0.93)
    want_rate = bought & (rng.random(n) < cfg.rating_rate)
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
    sess_offset = np.floor(span * within / total).astype(np.int64) if n_sessions else np.zeros(0, np.int64)
    user_start = np.flatnonzero(first_of_user)
    pos_in_user = np.arange(m) - np.repeat(user_start, np.diff(np.append(user_start, m)))
    ts = cfg.start_timestamp + sess_offset[session] + 60 * pos_in_user
    click_ts = ts + rng.integers(1, 30, size=m)
    buy_ts = ts + rng.integers(30, 60, size=m)
    rate_ts = buy_ts + rng.integers(86400, 30 * 86400, size=m)
    return _Log(user, item, session, ts.astype(np.int64), clicked, bought, quantity, rated, review,
                stars, click_ts, buy_ts, rate_ts)


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
            + QUALITY_REMARKS[_quality_band(truth.item_quality[i])] + " "
            + PRICE_REMARKS[_price_band(truth.item_price_z[i])] + " "
            + TASTE_REMARKS[taste_level])
    text = pd.Series(text, dtype="str").str.rstrip()
    return make_table("reviews", {
        "review_id": _take_str(_ids("r", n), np.arange(n)) if n else pd.Series([], dtype="str"),
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
    order, start, count = _group_index(truth.item_subcategory, S, order_by=-truth.item_popularity)
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
    cat = [f"category:{_slug(n)}" for n in truth.category_names]
    sub = [f"subcategory:{_slug(n)}" for n in truth.subcategory_names]
    mat = [f"material:{_slug(n)}" for n in truth.material_names]
    sty = [f"style:{_slug(n)}" for n in truth.style_names]
    des = [f"designer:{_slug(n)}" for n in truth.designer_names]
    brand = [f"brand:{_slug(n)}" for n in truth.brand_names]
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
    sub_order, sub_start, sub_count = _group_index(truth.item_subcategory, S)
    cat_order, cat_start, cat_count = _group_index(truth.item_category, K)
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


# --------------------------------------------------------------------------- API

def generate(config: SyntheticConfig | None = None, *, return_truth: bool = False,
             strict: bool = True) -> Dataset | tuple[Dataset, SyntheticTruth]:
    """Generate a synthetic Dataset (and its :class:`SyntheticTruth` when asked)."""
    config = config or SyntheticConfig()
    streams = _streams(config.seed)
    truth = _make_truth(config)
    log = _simulate(truth, streams)
    users = make_table("users", {
        "user_id": pd.Series(truth.user_ids, dtype="str"),
        "name": pd.Series(["user " + uid[1:] for uid in truth.user_ids], dtype="str"),
    })
    if config.kg:
        triples, item_entities = _kg_tables(truth)
    else:
        triples, item_entities = make_table("triples"), make_table("item_entities")
    dataset = Dataset(
        name="synthetic",
        users=users,
        items=_items_table(truth, streams["text"]),
        interactions=_interactions_table(truth, log),
        reviews=_reviews_table(truth, log, streams["reviews"]),
        item_links=_links_table(truth, log, streams["links"]),
        triples=triples,
        item_entities=item_entities,
        judgements=_judgements_table(truth, streams["queries"]),
        report=LoadReport(strict=strict),
    )
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
        return _make_truth(source)
    config = source.meta.get("synthetic_config")
    if config is None:
        raise ValueError("this Dataset was not made by loaders.synthetic (no synthetic_config)")
    return _make_truth(SyntheticConfig.from_dict(config))


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
