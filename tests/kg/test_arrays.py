"""kg.arrays gives np.unique's and np.isin's answers (by sorting instead of hashing)."""

import numpy as np
import pytest

from kg.arrays import contains, distinct


@pytest.mark.parametrize("n, high", [(0, 10), (1, 10), (2_000, 50), (5_000, 10**12)])
def test_distinct_and_contains_match_numpy(n, high):
    rng = np.random.default_rng(n)
    a = rng.integers(0, high, n)
    b = rng.integers(0, high, n // 2 + 3)
    assert np.array_equal(distinct(a), np.unique(a))
    assert distinct(a).dtype == a.dtype
    assert np.array_equal(contains(b, a), np.isin(b, a))
    assert np.array_equal(contains(b, distinct(a), within_sorted=True), np.isin(b, a))
    assert np.array_equal(contains(a, np.zeros(0, np.int64)), np.zeros(n, dtype=bool))


def test_distinct_of_strings():
    words = np.array(["b", "a", "b", "c", "a"], dtype=object)
    assert list(distinct(words)) == ["a", "b", "c"]
    assert list(contains(np.array(["a", "z"], dtype=object), words)) == [True, False]
