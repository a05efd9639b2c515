"""The knobs of the synthetic generator: :class:`SyntheticConfig`, its validation and its
conversion from loader options (strings from a command line included)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from loaders.errors import ConfigError


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator; the :mod:`loaders.synthetic` docstring gives the formulas they enter."""

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
    # lifecycle (the value truth; all off by default, and then the tables are exactly those
    # of a config without these fields: each draw comes from its own "lifecycle" stream)
    join_spread: float = 0.0     #: users join uniformly within the first join_spread of the span (0: at the start)
    churn_rate: float = 0.0      #: mean churn hazard per span (0: nobody churns); see the module docstring
    spend_sigma: float = 0.0     #: sigma of the lognormal spend level that scales each user's extra quantity
    new_item_share: float = 0.0  #: share of products launched after the start
    launch_from: float = 0.5     #: new products launch uniformly within [launch_from, 1] of the span
    # randomness and time
    seed: int = 0
    start_timestamp: int = 1_577_836_800  #: 2020-01-01 UTC
    time_span_days: float = 365.0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"SyntheticConfig: {msg}")

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
                     "review_share", "join_spread", "new_item_share", "launch_from"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        need(self.impression_popularity + self.impression_targeted <= 1.0,
             "impression_popularity + impression_targeted must be <= 1")
        need(-1.0 <= self.price_quality_corr <= 1.0, "price_quality_corr must be in [-1, 1]")
        need(self.taste_concentration > 0, "taste_concentration must be > 0")
        need(self.session_length >= 1, "session_length must be >= 1")
        need(self.price_sigma > 0, "price_sigma must be > 0")
        need(self.activity_sigma >= 0 and self.rating_noise >= 0, "sigmas must be >= 0")
        need(self.time_span_days >= 0, "time_span_days must be >= 0")
        need(self.churn_rate >= 0 and self.spend_sigma >= 0, "churn_rate and spend_sigma must be >= 0")

    @property
    def lifecycle(self) -> bool:
        """Whether any lifecycle knob is on (joins, churn, spend levels or launches)."""
        return bool(self.join_spread or self.churn_rate or self.spend_sigma or self.new_item_share)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, options: dict) -> SyntheticConfig:
        """Build a config from options; strings (e.g. from a command line) are converted."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown synthetic option(s) {unknown}; valid: {', '.join(known)}")
        out = {}
        for name, value in options.items():
            kind = str(known[name])
            if kind == "bool" and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ConfigError(f"option {name}: not a boolean: {value!r}")
                value = low in ("1", "true", "yes")
            elif kind == "int" and not isinstance(value, bool):
                as_float = float(value)
                if as_float != int(as_float):
                    raise ConfigError(f"option {name}: not an integer: {value!r}")
                value = int(as_float)
            elif kind == "float":
                value = float(value)
            out[name] = value
        return cls(**out)
