"""The base of every error kgrec raises on purpose, and the errors of reading data.

Every deliberate error of kgrec is a :class:`KgrecError`, so a caller (the ``kgrec``
command line, a service) can tell "the input or the setting is wrong, here is what to
do" from a bug. Each subclass keeps the built-in class it refines as a second base
(``ValueError``, ``KeyError``, ``FileNotFoundError`` …), so ``except ValueError`` still
catches what it caught before.

The base lives here, in the lowest layer (``kg`` and ``fusion`` build on ``loaders``);
:mod:`kg.errors` re-exports it beside the errors of the graph, the run folder and serving.
"""

from __future__ import annotations


class KgrecError(Exception):
    """Base of every error kgrec raises on purpose; the message says what to do."""


class ConfigError(KgrecError, ValueError):
    """A setting, option or argument that is not valid; the message names it."""


class LoadError(KgrecError, ValueError):
    """Bad input, with the file, line and field that are wrong.

    ``hint`` (optional) is appended to the message in parentheses: what the user can do,
    e.g. that a lenient load would skip such records (see :data:`LENIENT_HINT`). It is kept
    apart from ``reason``, which stays the plain description of the problem.
    """

    def __init__(self, file: str, line: int | None, field: str | None, reason: str,
                 hint: str = ""):
        self.file, self.line, self.field, self.reason = str(file), line, field, reason
        self.hint = hint
        where = self.file + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}" + (f" ({hint})" if hint else ""))


#: appended to a strict-mode LoadError for a record that a lenient load would have skipped
LENIENT_HINT = "run with --lenient (strict=False) to skip such records and get a reject report"


class DatasetError(KgrecError, ValueError):
    """A Dataset breaks the canonical schema; the message names table and column."""


class FieldError(KgrecError):
    """A record's field is missing or unusable; a reader turns it into a :class:`LoadError`
    (strict) or a reject (lenient), with the file and line it knows."""

    def __init__(self, field: str, reason: str, value: object = ""):
        super().__init__(f"field '{field}': {reason}")
        self.field, self.reason, self.value = field, reason, value
