"""Opening raw data files the same way in every reader: compression and text encoding.

* Compression is decided by the content (the gzip magic bytes), not by the name. A file
  whose name ends in ``.gz`` but whose content is plain text is one error reject, at
  line 1, counted under the pseudo-file ``"<file>#gzip"`` (so ``read == kept + rejected``
  still holds for the file's own lines): strict mode raises :class:`LoadError`; lenient
  mode reads the content as the plain text it is.
* A gzip stream that ends early or is corrupt loses everything after the last complete
  line: that is one error reject for the lost tail, at the line after the last good one,
  whose reason names that line (:func:`reject_lost_tail`).
* Text is UTF-8. :func:`bad_utf8_lines` finds the lines that are not, so that a reader can
  reject exactly those records (with their line numbers) and keep the rest.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

from loaders.report import LoadReport

GZIP_MAGIC = b"\x1f\x8b"
#: what a broken gzip stream raises while it is read
GZIP_ERRORS = (EOFError, OSError, zlib.error)
#: compressed bytes decompressed at a time by :func:`read_bytes` (at most this much of a
#: corrupt stream's good part can be lost with it)
CHUNK = 1 << 16


def is_gzip(path: str | Path, report: LoadReport | None = None) -> bool:
    """Whether ``path`` is gzip-compressed, by its first two bytes.

    When the name ends in ``.gz`` and the content is not gzip, ``report`` (if given)
    gets an error reject for line 1 (raised in strict mode); the file is then plain text.
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(64)
    if head[:2] == GZIP_MAGIC:
        return True
    if path.suffix == ".gz" and head and report is not None:
        file = str(path)
        report.read(f"{file}#gzip")
        report.reject(file, 1, None,
                      f"not gzip-compressed although the name ends in .gz: the file starts "
                      f"with {head[:24]!r}; read as plain text (rename it without .gz, or "
                      f"compress it)", head[:24], account=f"{file}#gzip")
    return False


def open_binary(path: str | Path, report: LoadReport | None = None) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing when it is gzip (see :func:`is_gzip`)."""
    return gzip.open(path, "rb") if is_gzip(path, report) else Path(path).open("rb")


def reject_lost_tail(report: LoadReport, file: str | Path, last_good_line: int,
                     exc: BaseException) -> None:
    """Count and reject the unreadable rest of a broken gzip file as one record."""
    report.read(file)
    report.reject(file, last_good_line + 1, None,
                  f"truncated or corrupt gzip stream: everything after line {last_good_line} "
                  f"(the last good line) is lost ({type(exc).__name__}: {exc})")


def read_bytes(path: str | Path, report: LoadReport) -> tuple[bytes, BaseException | None]:
    """The (decompressed) content of ``path`` and the error that ended it early, if any.

    A gzip stream is decompressed piece by piece, so a file cut short keeps everything
    up to the cut; when it breaks, the content is cut after its last complete line and
    the error is returned -- the caller reports it with :func:`reject_lost_tail` once it
    knows the line count.
    """
    if not is_gzip(path, report):
        return Path(path).read_bytes(), None
    with Path(path).open("rb") as fh:
        data, exc = _gunzip(fh)
    if exc is not None:
        data = data[: data.rfind(b"\n") + 1]
    return data, exc


def _gunzip(fh: IO[bytes]) -> tuple[bytes, BaseException | None]:
    """Decompress every gzip member of ``fh``; on a break, what came before and the error."""
    out: list[bytes] = []
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    while True:
        chunk = pending or fh.read(CHUNK)
        pending = b""
        if not chunk:
            break
        if d.eof:  # the previous member ended: another one (or zero padding, as gzip allows) follows
            chunk = chunk.lstrip(b"\x00")
            if not chunk:
                continue
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(d.decompress(chunk))
        except zlib.error as exc:
            return b"".join(out), exc
        if d.eof:
            pending = d.unused_data
    if not d.eof:
        return b"".join(out), EOFError("compressed file ended before the end-of-stream marker was reached")
    return b"".join(out), None


def bad_utf8_lines(data: bytes) -> list[int]:
    """The 1-based physical line numbers of ``data`` that are not valid UTF-8 ([] if all are)."""
    try:
        data.decode("utf-8")
        return []
    except UnicodeDecodeError:
        pass
    bad = []
    for n, line in enumerate(data.split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(n)
    return bad
