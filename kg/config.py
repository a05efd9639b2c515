"""Small helpers shared by kgrec's configuration dataclasses."""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any, Iterator

from kg.errors import ConfigError


def checked_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` unchanged, after checking every key is a field of dataclass ``cls``."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return values


def resolve_device(name: str):
    """``"auto"`` -> cuda when available, else cpu; anything else as ``torch.device(name)``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_threads(threads: int | str | None) -> int | None:
    """Torch CPU threads to use: an int as given; ``"auto"`` the cores not kept busy by
    other processes now (``os.cpu_count()`` minus the 1-minute load average of the others,
    at least 1) -- on a busy 2-core machine a second thread that waits for a descheduled
    core makes every parallel op slower (the KG model took 17-20 s an epoch instead of
    ~1 s); ``None``: leave torch's setting."""
    import os

    if threads is None or isinstance(threads, int):
        return threads
    if threads != "auto":
        raise ConfigError(f"threads must be a number or 'auto', not {threads!r}")
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(round(cores - busy + 0.5))))


@contextlib.contextmanager
def torch_threads(threads: int | str | None) -> Iterator[int]:
    """Torch CPU threads set to :func:`resolve_threads` (``threads``) inside the block only;
    yields the number in use."""
    import torch

    previous = torch.get_num_threads()
    n = resolve_threads(threads)
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
