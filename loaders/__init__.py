"""Readers that turn raw data into the canonical :class:`~loaders.dataset.Dataset`.

One module per source format; each exposes ``read(path, *, strict=True, **options)
-> Dataset``. :func:`load` picks the module by source name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from loaders.dataset import EVENTS, TABLES, Dataset, make_table
from loaders.errors import ConfigError, DatasetError, KgrecError, LoadError
from loaders.report import LoadReport, Reject

#: source name -> module implementing ``read``
SOURCES: dict[str, str] = {
    "amazon2018": "loaders.amazon2018",
    "amazon2023": "loaders.amazon2023",
    "recbole": "loaders.recbole",
    "kgat": "loaders.kgat",
    "csv": "loaders.tabular",
    "synthetic": "loaders.synthetic",
}


def load(source: str, path: str | Path | None = None, *, strict: bool = True, **options) -> Dataset:
    """Read ``source`` data at ``path`` (a file or folder) into a validated Dataset.

    ``strict=True`` raises :class:`LoadError` at the first malformed record;
    ``strict=False`` keeps going and lists rejects in ``dataset.report``.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    module = importlib.import_module(SOURCES[source])
    dataset = module.read(path, strict=strict, **options)
    dataset.report.check()
    return dataset.validate()


__all__ = ["EVENTS", "TABLES", "ConfigError", "Dataset", "DatasetError", "KgrecError", "LoadError", "LoadReport",
           "Reject", "SOURCES", "load", "make_table"]
