"""Words of the synthetic shop: the taxonomy, brand, material, style and person names,
the phrases of titles, descriptions and reviews, and the helpers that make names
(pseudo-words, slugs) and map quality / price to their text band."""

from __future__ import annotations

import re

import numpy as np

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


def slug(text: str) -> str:
    """``text`` lower-cased, runs of other characters than ``a-z0-9`` turned into ``-``
    (the name part of the knowledge-graph entity ids, e.g. ``material:recycled-paper``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def unique_names(builtin: list[str], n: int, salt: int, capitalize: bool = True) -> list[str]:
    """``n`` names, case-insensitively distinct: the first of ``builtin``, then pseudo-words."""
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


def taxonomy_names(n_categories: int, n_subcategories: int
                   ) -> tuple[list[str], list[str], list[str], list[tuple[str, str, str]]]:
    """Names of the top categories and subcategories: (category names, subcategory
    names, subcategory nouns, subcategory descriptors).

    Subcategory ``s`` is slot ``s // K`` of top category ``s mod K``; slots beyond
    :data:`TAXONOMY` get pseudo-words.
    """
    K, S = n_categories, n_subcategories
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
    return cat_names, sub_names, sub_nouns, sub_desc


def quality_band(q: np.ndarray) -> np.ndarray:
    """Quality ``q`` -> band 0..4 (cut at :data:`QUALITY_CUTS`)."""
    return np.searchsorted(QUALITY_CUTS, q)


def price_band(z: np.ndarray) -> np.ndarray:
    """Price z-score ``z`` -> band 0..4 (cut at :data:`PRICE_CUTS`)."""
    return np.searchsorted(PRICE_CUTS, z)
