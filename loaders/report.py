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
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from loaders.errors import LoadError


@dataclass(frozen=True)
class Reject:
    """One record that was not kept."""

    file: str
    line: int | None
    field: str | None
    reason: str
    value: str = ""
    error: bool = True  # False for a deliberate filter (duplicate, out-of-catalogue link)


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

    def _file(self, file: str | Path) -> FileCount:
        key = str(file)
        if key not in self.files:
            self.files[key] = FileCount(key)
        return self.files[key]

    def read(self, file: str | Path, n: int = 1) -> None:
        self._file(file).read += n

    def keep(self, file: str | Path, n: int = 1) -> None:
        self._file(file).kept += n

    def reject(
        self,
        file: str | Path,
        line: int | None,
        field: str | None,
        reason: str,
        value: object = "",
        *,
        error: bool = True,
    ) -> None:
        """Record a rejected record; in strict mode an *error* raises instead."""
        if error and self.strict:
            raise LoadError(str(file), line, field, reason)
        text = str(value)
        self.rejects.append(Reject(str(file), line, field, reason, text[:200], error))
        self._file(file).rejected += 1

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
        """How many records were rejected for each reason."""
        out: dict[str, int] = {}
        for r in self.rejects:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out

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

    def write_rejects(self, path: str | Path) -> Path:
        """Write the reject report as CSV (file, line, field, reason, value, error)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "line", "field", "reason", "value", "error"])
            for r in self.rejects:
                w.writerow([r.file, r.line if r.line is not None else "", r.field or "",
                            r.reason, r.value, int(r.error)])
        return path

    def summary(self) -> str:
        """A small table: one line per file, then the reject reasons."""
        lines = [f"{'file':<50} {'read':>10} {'kept':>10} {'rejected':>10}"]
        for f in self.files.values():
            name = f.file if len(f.file) <= 50 else "…" + f.file[-49:]
            lines.append(f"{name:<50} {f.read:>10,} {f.kept:>10,} {f.rejected:>10,}")
        for reason, n in sorted(self.reasons().items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {n:,}: {reason}")
        return "\n".join(lines)
