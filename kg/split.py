"""Train / validation / test splits of user–item interactions.

Positives are the (user, product) pairs of the chosen interaction types, one per
pair (the earliest time). Three ways to split them:

* ``leave_last_out`` -- per user, by time: the last item is test, the one before
  validation (users with fewer than 3 items keep everything in train);
* ``time`` -- a global cut: the last ``test_fraction`` of the timeline is test,
  the ``valid_fraction`` before it validation;
* ``given`` -- the source's own split (KGAT ``train``/``test``); a random
  ``valid_fraction`` of train becomes validation (seeded).

All vectorised (numpy lexsort), fine for millions of interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kg.errors import ConfigError, DataError

POSITIVE_TYPES = ("purchased", "rated", "reviewed")  # default positives
FALLBACK_TYPES = ("added_to_cart", "clicked", "viewed")  # used when none of the above exist


@dataclass(frozen=True)
class Split:
    """Index pairs (users [N], items [N], int64) per part, plus the catalogue sizes."""

    num_users: int
    num_items: int
    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train[0]), "valid": len(self.valid[0]), "test": len(self.test[0])}


def positives(data, types: tuple[str, ...] | None = None):
    """(users, items, time, split) of the distinct positive pairs, earliest time per pair."""
    present = [t for (s, t, d) in data.edge_types if s == "user" and d == "product"]
    chosen = [t for t in (types or POSITIVE_TYPES) if t in present]
    if not chosen and types is None:
        chosen = [t for t in FALLBACK_TYPES if t in present]
    if not chosen:
        raise DataError(f"no interactions of types {types or POSITIVE_TYPES} in the graph (it has {present})")
    parts = [data["user", t, "product"] for t in chosen]
    users = np.concatenate([p.edge_index[0].numpy() for p in parts])
    items = np.concatenate([p.edge_index[1].numpy() for p in parts])
    time = np.concatenate([p.time.numpy() for p in parts])
    split = np.concatenate([p.split.numpy() for p in parts])
    order = np.lexsort((time, items, users))  # by pair, earliest first
    users, items, time, split = users[order], items[order], time[order], split[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return users[first], items[first], time[first], split[first]


def split_interactions(data, method: str = "leave_last_out", types: tuple[str, ...] | None = None,
                       valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split the positives of a ``HeteroData`` export (see module docstring)."""
    users, items, time, given = positives(data, types)
    n_users, n_items = data["user"].num_nodes, data["product"].num_nodes
    part = np.zeros(len(users), dtype=np.int8)  # 0 train, 1 valid, 2 test
    if method == "leave_last_out":
        order = np.lexsort((items, time, users))  # per user by time (ties by item)
        u = users[order]
        last = np.ones(len(u), dtype=bool)
        last[:-1] = u[1:] != u[:-1]
        start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        count = np.diff(np.r_[start, len(u)])
        enough = np.repeat(count >= 3, count)
        second = np.zeros(len(u), dtype=bool)
        second[:-1] = last[1:] & ~last[:-1]
        part[order[last & enough]] = 2
        part[order[second & enough]] = 1
    elif method == "time":
        cut_test = np.quantile(time, 1 - test_fraction)
        cut_valid = np.quantile(time, 1 - test_fraction - valid_fraction)
        part[time > cut_valid] = 1
        part[time > cut_test] = 2
    elif method == "given":
        if not (given == 2).any():
            raise DataError("method 'given' needs a source split (interactions with split='test')")
        part[given == 2] = 2
        train = np.flatnonzero(part == 0)
        rng = np.random.default_rng(seed)
        part[rng.choice(train, size=int(len(train) * valid_fraction), replace=False)] = 1
    else:
        raise ConfigError(f"unknown split method {method!r} (leave_last_out, time, given)")
    pick = lambda k: (users[part == k], items[part == k])  # noqa: E731
    return Split(n_users, n_items, pick(0), pick(1), pick(2))
