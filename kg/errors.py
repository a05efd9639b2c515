"""Every error kgrec raises on purpose, in one hierarchy (import them from here).

::

    KgrecError                                   base (loaders.errors)
    ├── ConfigError(ValueError)                  a setting, option or argument is not valid
    ├── LoadError(ValueError)                    a malformed input record: file, line, field
    ├── DatasetError(ValueError)                 canonical tables break the schema
    ├── DataError(ValueError)                    the graph lacks what a stage needs
    ├── InvalidRequestError(ValueError)          a request to the Engine is malformed (``field``)
    ├── UnknownIdError(KeyError)                 a user or item id that is not in the graph / run
    ├── RunFolderError(FileNotFoundError)        a run folder lacks a stage's output
    ├── IntegrityError(ValueError)               a run file differs from its manifest, or is unreadable
    ├── CheckpointError(FileNotFoundError)       a text-encoder checkpoint is missing or unusable
    └── StoreError                               the graph store
        ├── StoreUnavailableError(ConnectionError)   the Neo4j server cannot be reached
        ├── StoreNotFoundError(FileNotFoundError)    no embedded graph at that path
        └── ReadOnlyError(PermissionError)           a write through read-only ``cypher()``

The ``kgrec`` command line prints any :class:`KgrecError` as one line and exits with 2.
"""

from __future__ import annotations

from loaders.errors import ConfigError, DatasetError, FieldError, KgrecError, LoadError


class DataError(KgrecError, ValueError):
    """The graph (or the data derived from it) lacks what a stage needs."""


class InvalidRequestError(KgrecError, ValueError):
    """A malformed request (unknown weight or filter, empty query, k out of range);
    ``field`` names the part of the request that is wrong."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class UnknownIdError(KgrecError, KeyError):
    """A user or item id that is not in the graph (or not in the run)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunFolderError(KgrecError, FileNotFoundError):
    """A run folder lacks what a command needs; the message names the stage to run."""


class IntegrityError(KgrecError, ValueError):
    """A file of a run folder is missing, changed or unreadable (checked against the run's
    ``manifest.json``); ``path`` is the file, ``stage`` the training stage that makes it."""

    def __init__(self, message: str, path: str = "", stage: str = ""):
        super().__init__(message)
        self.path, self.stage = path, stage


class CheckpointError(KgrecError, FileNotFoundError):
    """A text-encoder checkpoint that cannot be found or used."""


class StoreError(KgrecError):
    """The graph store cannot do what was asked."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The Neo4j server cannot be reached (the message names the host, never a password)."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No embedded graph at the given path (build one first)."""


class ReadOnlyError(StoreError, PermissionError):
    """A write statement sent through ``cypher()`` without ``write=True``."""


__all__ = ["KgrecError", "ConfigError", "LoadError", "DatasetError", "FieldError", "DataError",
           "InvalidRequestError", "UnknownIdError", "RunFolderError", "IntegrityError", "CheckpointError",
           "StoreError", "StoreUnavailableError", "StoreNotFoundError", "ReadOnlyError"]
