"""Vectorised helpers shared by the truth and the simulation: the seeded random
streams, zero-padded row ids and group indexes."""

from __future__ import annotations

import numpy as np


def ids(prefix: str, n: int) -> np.ndarray:
    """``n`` ids ``prefix`` + zero-padded number, all of one width (``u0``..``u9``, ``u00``..)."""
    width = max(len(str(max(n - 1, 0))), 1)
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per concern (truth, impressions, funnel, ...), all from ``seed``."""
    # appended names never change the earlier streams (child i of the SeedSequence is fixed)
    names = ["truth", "impressions", "funnel", "time", "text", "links", "queries", "reviews", "lifecycle"]
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def group_index(keys: np.ndarray, n_groups: int, order_by: np.ndarray | None = None):
    """Members of each group: (order, start, count) with ``order[start[g]:start[g]+count[g]]``."""
    if order_by is None:
        order = np.argsort(keys, kind="stable")
    else:
        order = np.lexsort((order_by, keys))
    count = np.bincount(keys, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return order, start, count
