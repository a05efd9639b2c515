"""Reading JSON-lines files (plain or gzipped) with full accounting in a LoadReport.

:func:`iter_records` yields ``(line_no, record)`` for every line that is a JSON object;
the caller must then ``report.keep`` or ``report.reject`` each one. Lines that are
not (bad JSON, not UTF-8, not an object) are rejected here as errors. A gzip file that
ends early or is corrupt (``EOFError`` / ``gzip.BadGzipFile`` / ``zlib.error``) becomes
one error reject for the lost tail, naming the last good line: in strict mode that is a
:class:`~loaders.report.LoadError`. Blank lines are not records and are not counted.

Field helpers: :func:`to_number` / :func:`to_int` return ``None`` for a bad value;
:func:`require`, :func:`number_field` and :func:`int_field` raise :class:`FieldError`
(field name, reason, value), which a reader turns into an error reject for that line.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from pathlib import Path
from typing import IO, Iterator

from loaders.errors import FieldError
from loaders.report import LoadReport

_GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str | Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing when it is gzip (by magic bytes)."""
    path = Path(path)
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC or path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_records(path: str | Path, report: LoadReport) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, record)`` (1-based line numbers) for each JSON object line."""
    file = str(path)
    line_no = 0
    with open_binary(path) as fh:
        lines = iter(fh)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (EOFError, OSError, zlib.error) as exc:
                report.read(file)
                report.reject(
                    file, line_no + 1, None,
                    f"truncated or corrupt gzip stream: everything after line {line_no} "
                    f"(the last good line) is lost ({type(exc).__name__}: {exc})",
                )
                return
            line_no += 1
            if not raw.strip():
                continue
            report.read(file)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.reject(file, line_no, None, f"not valid UTF-8 ({exc.reason})", raw[:200])
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                report.reject(file, line_no, None,
                              f"malformed JSON: {exc.msg} at column {exc.colno}", text.strip())
                continue
            if not isinstance(record, dict):
                report.reject(file, line_no, None,
                              f"not a JSON object but {type(record).__name__}", text.strip())
                continue
            yield line_no, record


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
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            return None
    else:
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
