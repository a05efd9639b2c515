"""Shared fixtures: the real data sets in ../shared/data and the Neo4j test server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KGREC_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dataset(name: str) -> Path:
    """Path of a real data set in ../shared/data; skip (fail in CI) where it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        if IN_CI:
            pytest.fail(f"CI needs the shared data set {path}, and it is missing")
        pytest.skip(f"shared data set {path} is absent (a user's clone has no ../shared)")
    return path


@pytest.fixture
def gift_cards_dir() -> Path:
    return shared_dataset("amazon2018-gift-cards")


@pytest.fixture
def ml100k_dir() -> Path:
    return shared_dataset("ml-100k-kg")


@pytest.fixture
def amazon_book_dir() -> Path:
    return shared_dataset("amazon-book-kgat")
