"""Accounting for every row a loader reads: kept, rejected (and why), never lost.

Every reader counts, per source file, the records it *read* and the records it
*kept*; every record it does not keep is a :class:`Reject` naming the file, the
line (1-based) and the field. ``read == kept + rejected`` is checked by
:meth:`LoadReport.check` before a reader returns.

Two kinds of rejects:

* **errors** -- malformed input (bad JSON, a missing required field, a
  non-numeric rating, an interaction naming an unknown item …). In strict mode
  the first one raises :class:`LoadError`; in lenient mode it is recorded.
* **filtered** -- well-formed records that are left out on purpose (a second
  copy of an id already read, an ``also_buy`` link to a product outside the
  catalogue). They never raise, but they are counted and reported just the same.

A reason is written ``"<kind>"`` or ``"<kind>: <detail>"`` (``"duplicate review: same as
line 12, that one is kept"``). The detail (line numbers, values) stays in each
:class:`Reject` and in the CSV of :meth:`LoadReport.write_rejects`; :meth:`LoadReport.reasons`
and :meth:`LoadReport.summary` count per *kind*, so a large file gives a short summary.
In strict mode the :class:`LoadError` of an error reject ends with :data:`LENIENT_HINT`.

Besides rejects, a report counts what a reader *repaired or completed* (not rejects:
the records are kept): products reviewed but absent from the metadata (kept as id-only
items), titles cleaned of HTML markup, and titles replaced by a fallback display name --
and records merged into another (a repeat purchase at the same time, its quantity summed into
the first row: :mod:`loaders.tabular`), which count as kept since what they hold is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from loaders.errors import LENIENT_HINT, LoadError


@dataclass(frozen=True)
class Reject:
    """One record that was not kept."""

    file: str
    line: int | None
    field: str | None
    reason: str
    value: str = ""
    error: bool = True  # False for a deliberate filter (duplicate, out-of-catalogue link)

    @property
    def kind(self) -> str:
        """The reason without its record-specific detail (see :func:`reason_kind`)."""
        return reason_kind(self.reason)


def reason_kind(reason: str) -> str:
    """The kind of a reason: the text before its first ``": "`` (the whole reason if none)."""
    return reason.split(": ", 1)[0].strip()


def printable(value: object, limit: int = 200) -> str:
    """``str(value)`` cut to ``limit`` characters and safe to write as UTF-8 (a lone
    surrogate, e.g. from a JSON ``"\\ud83d"`` escape, becomes the text ``\\ud83d``)."""
    text = str(value)[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass
class FileCount:
    file: str
    read: int = 0
    kept: int = 0
    rejected: int = 0


@dataclass
class LoadReport:
    """Counts per source file and the rejected records, for one load."""

    strict: bool = True
    files: dict[str, FileCount] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    #: products that have reviews but no metadata line; kept as id-only items
    products_without_metadata: int = 0
    #: kept reviews of those products
    reviews_without_metadata: int = 0
    #: product titles that held HTML markup (tags, an unclosed tag fragment) and were cleaned
    titles_cleaned: int = 0
    #: product titles with nothing meaningful (after cleaning) replaced by a fallback name
    titles_fallback: int = 0
    #: other repairs and guesses a reader made on kept records, by readable label (:meth:`note`)
    other_notes: dict[str, int] = field(default_factory=dict)

    def _file(self, file: str | Path) -> FileCount:
        key = str(file)
        if key not in self.files:
            self.files[key] = FileCount(key)
        return self.files[key]

    def read(self, file: str | Path, n: int = 1) -> None:
        self._file(file).read += n

    def keep(self, file: str | Path, n: int = 1) -> None:
        self._file(file).kept += n

    def note(self, label: str, n: int = 1) -> None:
        """Count ``n`` kept records that a reader repaired, completed or read by a guess
        (``"prices not understood (kept as unknown)"``); shown by :meth:`notes` and the
        summary. Zero counts are not recorded."""
        if n:
            self.other_notes[label] = self.other_notes.get(label, 0) + int(n)

    def reject(
        self,
        file: str | Path,
        line: int | None,
        field: str | None,
        reason: str,
        value: object = "",
        *,
        error: bool = True,
        account: str | Path | None = None,
    ) -> None:
        """Record a rejected record; in strict mode an *error* raises instead.

        The strict-mode :class:`LoadError` ends with :data:`LENIENT_HINT`, since a lenient
        load would have skipped the record. ``account`` is the file whose counts the reject
        goes to when that is not ``file`` itself (a pseudo-record such as a file's wrong
        compression, counted apart from the file's lines).
        """
        if error and self.strict:
            raise LoadError(str(file), line, field, reason, hint=LENIENT_HINT)
        self.rejects.append(Reject(str(file), line, field, reason, printable(value), error))
        self._file(file if account is None else account).rejected += 1

    @property
    def total_read(self) -> int:
        return sum(f.read for f in self.files.values())

    @property
    def total_kept(self) -> int:
        return sum(f.kept for f in self.files.values())

    @property
    def total_rejected(self) -> int:
        return sum(f.rejected for f in self.files.values())

    def reasons(self) -> dict[str, int]:
        """How many records were rejected for each kind of reason (:attr:`Reject.kind`),
        most frequent first; the per-record detail is in :attr:`rejects`."""
        out: dict[str, int] = {}
        for r in self.rejects:
            out[r.kind] = out.get(r.kind, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def notes(self) -> dict[str, int]:
        """The non-zero counts of records kept after a repair or completion (not rejects),
        by a readable label: products without metadata, cleaned and fallen-back titles, and
        whatever else a reader counted with :meth:`note`."""
        labels = {
            "products without metadata (kept as id-only items)": self.products_without_metadata,
            "reviews of products without metadata (kept)": self.reviews_without_metadata,
            "titles cleaned of HTML markup": self.titles_cleaned,
            "titles replaced by a fallback name (brand — category, description or id)":
                self.titles_fallback,
        }
        return {**{label: n for label, n in labels.items() if n}, **self.other_notes}

    def check(self) -> None:
        """Raise if any file's counts do not add up (a bug in a reader)."""
        for f in self.files.values():
            if f.read != f.kept + f.rejected:
                raise AssertionError(
                    f"{f.file}: read {f.read} != kept {f.kept} + rejected {f.rejected}"
                )

    def merge(self, other: LoadReport) -> None:
        for f in other.files.values():
            mine = self._file(f.file)
            mine.read += f.read
            mine.kept += f.kept
            mine.rejected += f.rejected
        self.rejects.extend(other.rejects)
        for name in ("products_without_metadata", "reviews_without_metadata", "titles_cleaned",
                     "titles_fallback"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for label, n in other.other_notes.items():
            self.note(label, n)

    def write_rejects(self, path: str | Path) -> Path:
        """Write the reject report as CSV (file, line, field, reason, value, error, kind),
        one row per rejected record with its full reason."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "line", "field", "reason", "value", "error", "kind"])
            for r in self.rejects:
                w.writerow([r.file, r.line if r.line is not None else "", r.field or "",
                            printable(r.reason, 1000), r.value, int(r.error), r.kind])
        return path

    def summary(self, rejects_path: str | Path | None = None) -> str:
        """A small table: one line per file, one line per *kind* of reject reason with its
        count (``(filtered)`` when none of them is an error), the notes (:meth:`notes`), and,
        when there are rejects, where their rows are (``rejects_path`` if given)."""
        lines = [f"{'file':<50} {'read':>10} {'kept':>10} {'rejected':>10}"]
        for f in self.files.values():
            name = f.file if len(f.file) <= 50 else "…" + f.file[-49:]
            lines.append(f"{name:<50} {f.read:>10,} {f.kept:>10,} {f.rejected:>10,}")
        errors = {r.kind for r in self.rejects if r.error}
        for kind, n in self.reasons().items():
            lines.append(f"  rejected {n:,}: {kind}" + ("" if kind in errors else " (filtered)"))
        for label, n in self.notes().items():
            lines.append(f"  {label}: {n:,}")
        if self.rejects:
            where = str(rejects_path) if rejects_path else "the reject CSV (LoadReport.write_rejects)"
            lines.append(f"  each rejected row, with its line, field and value, is in {where}")
        return "\n".join(lines)
