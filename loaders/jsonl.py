"""Reading JSON-lines files (plain or gzipped) with full accounting in a LoadReport.

:func:`iter_records` yields ``(line_no, record)`` for every line that is a JSON object;
the caller must then ``report.keep`` or ``report.reject`` each one. Lines that are
not (bad JSON, JSON nested deeper than Python can parse, not UTF-8, not an object) are
rejected here as errors. Compression is decided by content (:mod:`loaders.files`): a
``.json.gz`` that is plain text is one error reject (strict: :class:`LoadError`; lenient:
read as plain text). A gzip file that ends early or is corrupt (``EOFError`` /
``gzip.BadGzipFile`` / ``zlib.error``) becomes one error reject for the lost tail, naming
the last good line. Blank lines are not records and are not counted. A string holding a
lone UTF-16 surrogate (a JSON ``"\\ud83d"`` escape without its pair: half of a broken
emoji) cannot be stored as text; it becomes U+FFFD, the Unicode replacement character.

A line that is not JSON but starts with ``{'`` is tried as a Python literal
(``ast.literal_eval``: literals only, nothing is run), as McAuley's 2014 Amazon metadata
is written (``{'asin': '0000031852', 'title': …}``); a dict of JSON-like values is
accepted and counted (per line yielded) in the notes ("lines read as Python literals (the
2014 format)"); anything else stays a "malformed JSON" reject.

Field helpers: :func:`to_number` / :func:`to_int` return ``None`` for a bad value;
:func:`require`, :func:`require_ids` (an id also must hold no control character),
:func:`number_field`, :func:`int_field` and :func:`timestamp_field` raise
:class:`FieldError` (field name, reason, value), which a reader turns into an error reject
for that line.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Iterator

from loaders.dataset import TIMESTAMP_RANGE, control_problem, escaped, timestamps_ok
from loaders.errors import FieldError
from loaders.files import GZIP_ERRORS, open_binary, reject_lost_tail
from loaders.report import LoadReport

#: a JSON \\uD800-\\uDFFF escape: the line may hold a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def iter_records(path: str | Path, report: LoadReport) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, record)`` (1-based line numbers) for each JSON object line."""
    file = str(path)
    line_no = 0
    with open_binary(path, report) as fh:
        lines = iter(fh)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except GZIP_ERRORS as exc:
                reject_lost_tail(report, file, line_no, exc)
                return
            line_no += 1
            if not raw.strip():
                continue
            report.read(file)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.reject(file, line_no, None, f"not valid UTF-8: {exc.reason} at byte {exc.start}",
                              raw[:200])
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                record = _python_literal(text)
                if record is None:
                    report.reject(file, line_no, None,
                                  f"malformed JSON: {exc.msg} at column {exc.colno}", text.strip())
                    continue
                report.note(PYTHON_LITERAL_NOTE)
            except RecursionError:
                report.reject(file, line_no, None,
                              "JSON nested too deeply: more levels than Python can parse", text[:200])
                continue
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                report.reject(file, line_no, None, f"malformed JSON: {exc}", text[:200])
                continue
            if not isinstance(record, dict):
                report.reject(file, line_no, None,
                              f"not a JSON object but {type(record).__name__}", text.strip())
                continue
            if _SURROGATE_ESCAPE.search(text):
                record = _without_lone_surrogates(record)
            yield line_no, record


#: the note counting lines read by :func:`_python_literal`
PYTHON_LITERAL_NOTE = "lines read as Python literals (the 2014 format)"


def _python_literal(text: str) -> dict | None:
    """A line of the 2014 Amazon format (``{'asin': …}``, written by Python's ``repr``) as a
    JSON-like dict (tuples become lists); ``None`` when it is not one."""
    if not text.lstrip().startswith("{'"):
        return None
    try:
        value = ast.literal_eval(text.strip())
        # round trip: only what JSON can hold (no sets, bytes, complex numbers)
        record = json.loads(json.dumps(value))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _without_lone_surrogates(record: dict) -> dict:
    """``record`` with every lone surrogate in its strings replaced by U+FFFD."""
    dumped = json.dumps(record, ensure_ascii=False)
    try:
        dumped.encode("utf-8")
        return record
    except UnicodeEncodeError:
        return json.loads(dumped.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def first_missing(record: dict, fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` that is absent, null or an empty string, else ``None``."""
    for name in fields:
        if is_missing(record.get(name)):
            return name
    return None


def to_number(value: object) -> float | None:
    """A finite float from a number or numeric string; ``None`` otherwise (bools too)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            v = float(value)
        elif isinstance(value, str):
            v = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # not numeric; an int beyond float range
        return None
    return v if math.isfinite(v) else None


def to_int(value: object) -> int | None:
    """An int from an integral number or numeric string; ``None`` otherwise."""
    v = to_number(value)
    if v is None or v != int(v):
        return None
    return int(v)


def require(record: dict, fields: tuple[str, ...]) -> None:
    """Raise :class:`FieldError` for the first of ``fields`` that is missing or empty."""
    name = first_missing(record, fields)
    if name is not None:
        raise FieldError(name, "missing required field", record.get(name, ""))


def require_ids(record: dict, fields: tuple[str, ...]) -> None:
    """:func:`require` for id fields: also a :class:`FieldError` for the first of ``fields``
    whose value, stripped as ids are stored, holds a control character
    (:data:`loaders.dataset.CONTROL_CHARACTERS`; reason :data:`loaders.dataset.CONTROL_IN_ID`)."""
    require(record, fields)
    for name in fields:
        value = str(record[name]).strip()
        problem = control_problem(value)
        if problem is not None:
            raise FieldError(name, problem, escaped(value))


def number_field(record: dict, name: str, *, default: float | None = None) -> float:
    """``record[name]`` as a float; ``default`` when missing (FieldError if no default)."""
    value = record.get(name)
    if is_missing(value):
        if default is None:
            raise FieldError(name, "missing required field", "" if value is None else value)
        return default
    v = to_number(value)
    if v is None:
        raise FieldError(name, f"not a number: {value!r}", value)
    return v


def int_field(record: dict, name: str, *, default: int = 0) -> int:
    """``record[name]`` as an int; ``default`` when missing; FieldError when not integral."""
    value = record.get(name)
    if is_missing(value):
        return default
    v = to_int(value)
    if v is None:
        raise FieldError(name, f"not an integer: {value!r}", value)
    return v


def timestamp_field(record: dict, name: str, *, per_second: int = 1) -> int:
    """``record[name]`` as Unix seconds: a whole number in units of ``1 / per_second``
    seconds (``per_second=1000`` for milliseconds, floored to the second); 0 when missing.

    Raises :class:`FieldError` when it is not an integer or the seconds are outside
    [MIN_TIMESTAMP, MAX_TIMESTAMP) (see :mod:`loaders.dataset`).
    """
    value = record.get(name)
    if is_missing(value):
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        v = value  # exact, however large
    else:
        v = to_int(value)
        if v is None:
            raise FieldError(name, f"not an integer: {value!r}", value)
    seconds = v // per_second
    if not timestamps_ok(seconds if abs(seconds) < 2**63 else math.inf):
        raise FieldError(name, f"{TIMESTAMP_RANGE}: {value!r}", value)
    return seconds
